"""One accelerate training loop (``fit``) and the stages that plug into it.

The names below are imported on first use (PEP 562): the loop pulls in accelerate, peft and
the datasets (seconds), which ``hireslm release show`` and ``combine``, also in this
package, never need.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "fit": "hireslm.training.loop",
    "NonFiniteLossError": "hireslm.training.stage",
    "Stage": "hireslm.training.stage",
    "StageBase": "hireslm.training.stage",
    "TrainingParts": "hireslm.training.stage",
}

__all__ = ["NonFiniteLossError", "Stage", "StageBase", "TrainingParts", "fit"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
