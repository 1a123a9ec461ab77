"""Where our Hugging Face ``evaluate`` metric modules live on disk."""

from __future__ import annotations

from pathlib import Path

# Each is a directory holding <name>/<name>.py, the layout evaluate.load expects.
MODULE_NAMES = ("distinct_n", "self_bleu")

_MODULES_DIR = Path(__file__).resolve().parent / "modules"


def module_path(name: str) -> str:
    """Absolute directory of one of our ``evaluate`` metric modules.

    Pass it straight to ``evaluate.load``; loading by path needs no network
    (works with ``HF_HUB_OFFLINE=1``).

    Args:
        name: One of :data:`MODULE_NAMES`.

    Raises:
        ValueError: unknown module name.

    Example:
        >>> module_path("self_bleu").endswith("modules/self_bleu")
        True
    """
    if name not in MODULE_NAMES:
        raise ValueError(f"unknown metric module {name!r}; available: {', '.join(MODULE_NAMES)}")
    return str(_MODULES_DIR / name)
