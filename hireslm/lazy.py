"""Package names that load with their module on first use (PEP 562).

``hireslm.audio`` and ``hireslm.pipeline`` re-export names from their modules; importing the
package must not import torch (the mel front end, the models) for a caller that only reads a
header or plans a run, so each name is looked up in its module when first asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str],
                 namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``exports`` maps each name to the module
    defining it; a name, once loaded, is kept in ``namespace`` (the package's globals)."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value
        return value

    return __getattr__
