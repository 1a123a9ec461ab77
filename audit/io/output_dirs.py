"""Output directories: never the input model's, never cleared unless ours, one run at a time.

Three rules, checked before anything loads:

1. **Apart from the model.** An output directory that is, contains or lies inside the input
   model's directory (symlinks resolved) is refused: a fine-tune's final save clears
   ``OUT/model``, so ``--model X/model --out-dir X`` would replace the user's model with the
   fine-tuned one (:func:`check_apart`).
2. **Only ours is cleared.** A directory the package creates to replace later (``model/``,
   ``best/``, ``checkpoints/step-*``) carries a marker file, :data:`OWNED_MARKER`;
   :func:`remove_owned_dir` refuses a directory without it, so a directory the user put there
   is never removed (:func:`check_replaceable` says so before a run starts).
3. **One run per directory.** :func:`output_lock` holds an exclusive ``fcntl.flock`` on
   ``OUT/.audit.lock`` for the run; a second run into the same directory is refused with one
   line instead of mixing its files with the first one's. The kernel drops the lock when the
   process exits or is killed, so a crashed run never blocks the next (the file stays, unlocked).

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> mine = make_owned_dir(d / "model")
    >>> remove_owned_dir(mine); mine.exists()
    False
    >>> with output_lock(d):
    ...     try:
    ...         with output_lock(d):
    ...             pass
    ...     except OutputPathError as e:
    ...         print("another audit run" in str(e))
    True
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from .output_paths import OutputPathError

#: Marks a directory the package created and may therefore remove and rewrite.
OWNED_MARKER = ".audit-owned"
#: The lock file a run holds in its output directory.
LOCK_FILE = ".audit.lock"


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.expanduser(str(path))).resolve()


def check_apart(out_dir: str | os.PathLike, model_path: str | os.PathLike, *, out_field: str = "out_dir",
                model_field: str = "model") -> None:
    """Refuse an output directory that is, contains or lies inside the model's path (symlinks resolved).

    Raises:
        OutputPathError: one line naming both fields.
    """
    out, model = _resolved(out_dir), _resolved(model_path)
    if out == model:
        how = "is"
    elif out in model.parents:
        how = "contains"
    elif model in out.parents:
        how = "lies inside"
    else:
        return
    raise OutputPathError(f"{out_field} {out_dir}: the output directory {how} the input model's directory "
                          f"({model_field} {model_path}); writing there would replace or mix with the model: "
                          f"choose an output directory outside it")


def make_owned_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) marked as the package's, so a later run may clear it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / OWNED_MARKER).write_text("created by audit; audit may remove and rewrite this directory\n", encoding="utf-8")
    return path


def is_owned(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and (path / OWNED_MARKER).is_file()


def check_replaceable(path: str | os.PathLike, *, what: str = "directory") -> None:
    """``path`` is absent or a directory the package created (so removing it loses nothing of the user's).

    Raises:
        OutputPathError: it exists and was not created by this package.
    """
    path = Path(path)
    if not (path.exists() or path.is_symlink()) or is_owned(path):
        return
    kind = "a symlink" if path.is_symlink() else "a directory" if path.is_dir() else "a file"
    raise OutputPathError(f"{path}: {kind} audit did not create (no {OWNED_MARKER} marker) is where the {what} goes; "
                          f"audit never removes it: move it away or choose another output directory")


def remove_owned_dir(path: str | os.PathLike, *, what: str = "directory") -> None:
    """Remove ``path`` if it exists, only when the package created it (:func:`check_replaceable`)."""
    path = Path(path)
    check_replaceable(path, what=what)
    if path.exists():
        shutil.rmtree(path)


def _holder(fh) -> str:
    fh.seek(0)
    text = fh.read(200).strip()
    return f" ({text})" if text else ""


@contextlib.contextmanager
def output_lock(out_dir: str | os.PathLike, *, what: str = "output directory") -> Iterator[Path]:
    """Hold ``out_dir``'s run lock (creating the directory) for the ``with`` block.

    Raises:
        OutputPathError: another live process holds it (one line naming it and the directory).
    """
    out = Path(out_dir)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: no lock, runs are not serialised
        yield out
        return
    created = [d for d in (out, *out.parents) if not d.exists()]   # deepest first: removed again if nothing came
    out.mkdir(parents=True, exist_ok=True)
    fh = open(out / LOCK_FILE, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputPathError(f"{out}: another audit run{_holder(fh)} is writing into this {what}; wait for it "
                                  f"to finish or choose another output directory") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")   # the pid only: a command line may hold a secret (an API key)
        fh.flush()
        try:
            yield out
        finally:
            if created and [p.name for p in out.iterdir()] == [LOCK_FILE]:
                # A run that failed before writing anything leaves nothing behind, not an empty directory
                # holding a lock file ("exit 2, nothing written").
                (out / LOCK_FILE).unlink(missing_ok=True)
                for d in created:
                    try:
                        d.rmdir()
                    except OSError:
                        break
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    finally:
        fh.close()
