"""Train the vocoder stage.

`python train/train_vocoder.py --config configs/vocoder/base.yaml [key=value ...]`.

Multi-GPU: `accelerate launch train/train_vocoder.py --config ... run_dir=runs/vocoder`.
"""

import sys

from hireslm.cli.train import main

if __name__ == "__main__":
    sys.exit(main("vocoder"))
