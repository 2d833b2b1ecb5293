"""Train the recovery stage.

`python train/train_recovery.py --config configs/recovery/base.yaml [key=value ...]`.

Multi-GPU: `accelerate launch train/train_recovery.py --config ... run_dir=runs/recovery`.
"""

import sys

from hireslm.cli.train import main

if __name__ == "__main__":
    sys.exit(main("recovery"))
