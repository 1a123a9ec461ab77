"""Suite sections: one evaluator per file, registered by name in :data:`SECTIONS`."""

from __future__ import annotations

import importlib

from ..registry import Registry

# Modules that define sections; imported on first look-up so `import audit` stays light.
_SECTION_MODULES = ["quality", "diversity", "toxicity", "bias", "safety", "robustness", "consistency", "attribution"]


def _load() -> None:
    for name in _SECTION_MODULES:
        importlib.import_module(f"{__name__}.{name}")


SECTIONS: Registry = Registry("section", loader=_load)
