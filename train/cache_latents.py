"""Precompute DiT training latents with a frozen VAE release.

`python train/cache_latents.py --config configs/dit/base.yaml --out data/latents --passes 4`
then train with `data.latent_cache=data/latents`. Each pass draws fresh degraded pairs.
"""

import argparse
import logging
import sys

from hireslm.config import load_config
from hireslm.training.latents import cache_from_config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="DiT config (names data and VAE release)")
    parser.add_argument("--out", required=True, help="cache folder to write")
    parser.add_argument("--passes", type=int, default=1, help="epochs of random pairs to encode")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("overrides", nargs="*", default=[], help="key=value config overrides")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_config(args.config, args.overrides)
    out = cache_from_config(cfg, args.out, args.passes, args.batch_size, args.device)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
