"""Train the dit stage.

`python train/train_dit.py --config configs/dit/base.yaml [key=value ...]`.

Multi-GPU: `accelerate launch train/train_dit.py --config ... run_dir=runs/dit`.
"""

import sys

from hireslm.cli.train import main

if __name__ == "__main__":
    sys.exit(main("dit"))
