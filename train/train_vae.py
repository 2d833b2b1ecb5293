"""Train the vae stage.

`python train/train_vae.py --config configs/vae/base.yaml [key=value ...]`.

Multi-GPU: `accelerate launch train/train_vae.py --config ... run_dir=runs/vae`.
"""

import sys

from hireslm.cli.train import main

if __name__ == "__main__":
    sys.exit(main("vae"))
