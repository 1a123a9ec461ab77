"""The package version, in a leaf every module may import (``audit/__init__`` re-exports it)."""

__version__ = "0.1.0"
