"""Reading ``.pt``/``.ckpt`` files that came from outside: tensors and plain data only, never code.

A pickle can name any importable callable (``os.system``) and run it while loading. Every
``torch.load`` in the package goes through :func:`load_tensors`, which uses torch's
``weights_only`` unpickler: tensors, numbers, strings, lists, tuples, dicts and ``OrderedDict``
load; anything else is refused before it is called, as a one-line error naming the file.

Example:
    >>> import tempfile, torch, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.pt"); torch.save({"w": torch.ones(2)}, p)
    >>> load_tensors(p)["w"].tolist()
    [1.0, 1.0]
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

from ..errors import AuditError, first_line

# torch's refusal names the offending global as e.g. "Unsupported global: GLOBAL posix.system".
_GLOBAL = re.compile(r"(?:Unsupported global|GLOBAL)[:\s]+(?:GLOBAL\s+)?([\w.]+)")


def load_tensors(path: str | os.PathLike, *, error: type[Exception] = AuditError, what: str = "file") -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; a pickle that asks for code is ``error``, one line.

    Args:
        path: the file to read.
        error: the exception class to raise (its message names ``path``).
        what: what the file is, for the message (``"Detoxify checkpoint"``, ``"optimizer state"``).
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = _GLOBAL.search(str(e))
        named = f" (it names {m.group(1)})" if m else ""
        raise error(f"{path}: refusing to load this {what}: it holds more than tensors and plain data{named}, "
                    f"and loading it could run code") from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise error(f"{path}: cannot read this {what}: {type(e).__name__}: {first_line(e, default='')}") from None
