"""Offline provisioning of what TextAttack needs from NLTK, and the one lazy ``import textattack``.

Measured facts this module exists for (textattack 0.3.11, nltk 3.x):

- ``import textattack`` builds a ``StopwordModification`` at import time, which reads NLTK's
  English stop words; without them the import fails.
- On first import TextAttack calls ``nltk.download`` six times (``_post_install``), and
  ``WordSwapWordNet()`` calls ``nltk.download("omw-1.4")`` on every construction.
- NLTK's WordNet reader wants a ``corpora/wordnet`` directory holding the WordNet 3.0 database and
  a ``lexnames`` file. Debian's ``wordnet-base`` + ``wordnet-sense-index`` hold the database in
  ``/usr/share/wordnet`` but not ``lexnames``.

So: stop words ship in the project (``audit/nltk_data``); WordNet is assembled once into an
NLTK_DATA tree under the user cache dir from the Debian files (or ``$AUDIT_WORDNET_DIR``) plus the
shipped ``lexnames`` table; NLTK downloads are replaced by a look-up that never touches the
network; and a missing piece raises :class:`MissingAttackDataError` naming it on one line.
A user who is online may still ``python -m nltk.downloader wordnet``: data NLTK already finds is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import AuditError, first_line
from ..io.paths import cache_dir

log = logging.getLogger("audit")

#: The project's own NLTK data (stop words, the WordNet ``lexnames`` table).
PACKAGE_NLTK_DATA = Path(__file__).resolve().parent.parent / "nltk_data"
LEXNAMES_TABLE = PACKAGE_NLTK_DATA / "wordnet-lexnames"
#: Where Debian's wordnet-base / wordnet-sense-index install WordNet 3.0.
DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
#: The WordNet database files NLTK's reader opens (``lexnames`` comes from the shipped table).
WORDNET_FILES = ("index.sense", "index.adj", "index.adv", "index.noun", "index.verb", "data.adj", "data.adv",
                 "data.noun", "data.verb", "adj.exc", "adv.exc", "noun.exc", "verb.exc", "cntlist.rev")

_HOW_TO_GET_WORDNET = ("install the Debian packages wordnet-base and wordnet-sense-index, set AUDIT_WORDNET_DIR "
                       "to a WordNet 3.0 dict directory, or run `python -m nltk.downloader wordnet` where online")


class MissingAttackDataError(AuditError):
    """Data or a package an attack needs is missing; the one-line message says which and how to get it."""


def cache_nltk_data() -> Path:
    """The NLTK_DATA tree audit assembles under the user cache dir (``$AUDIT_CACHE/nltk_data``)."""
    return cache_dir() / "nltk_data"


def wordnet_source() -> Path:
    """Where to assemble WordNet from: ``$AUDIT_WORDNET_DIR`` or Debian's ``/usr/share/wordnet``."""
    return Path(os.environ.get("AUDIT_WORDNET_DIR") or DEBIAN_WORDNET_DIR)


def configure_nltk() -> None:
    """Put the project's and the cache's NLTK data first on NLTK's search path (and in ``NLTK_DATA``).

    Idempotent. Example:
        >>> configure_nltk(); import nltk
        >>> str(PACKAGE_NLTK_DATA) in nltk.data.path
        True
    """
    import nltk

    dirs = [str(PACKAGE_NLTK_DATA), str(cache_nltk_data())]
    for d in reversed(dirs):
        if d not in nltk.data.path:
            nltk.data.path.insert(0, d)
    # Child processes (and code that re-reads the variable) see the same search path.
    env = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    os.environ["NLTK_DATA"] = os.pathsep.join(dirs + [p for p in env if p not in dirs])


def _nltk_has(resource: str) -> bool:
    import nltk

    try:
        nltk.data.find(resource)
        return True
    except LookupError:
        return False


def ensure_stopwords() -> None:
    """Check NLTK can read English stop words (shipped in ``audit/nltk_data``)."""
    configure_nltk()
    if not _nltk_has("corpora/stopwords/english"):
        raise MissingAttackDataError(
            f"NLTK English stop words not found (expected {PACKAGE_NLTK_DATA / 'corpora/stopwords/english'}, "
            f"which ships with audit); reinstall audit or run `python -m nltk.downloader stopwords`")


def ensure_wordnet(*, source: Path | None = None, for_what: str = "WordNet synonym swaps") -> Path:
    """Make WordNet 3.0 readable by NLTK offline; return the ``corpora/wordnet`` directory it reads.

    Order: a tree audit already assembled; else assemble one from ``source`` (default
    :func:`wordnet_source`) into :func:`cache_nltk_data`; else WordNet NLTK already finds (e.g. from
    ``nltk.download``); else :class:`MissingAttackDataError`.

    Example:
        >>> ensure_wordnet().name  # doctest: +SKIP
        'wordnet'
    """
    configure_nltk()
    target = cache_nltk_data() / "corpora" / "wordnet"
    if _complete(target):
        return target
    src = Path(source) if source is not None else wordnet_source()
    missing = [f for f in WORDNET_FILES if not (src / f).is_file()]
    if not missing:
        # NLTK's lazy loader only replaces itself after a successful load, so an earlier failed
        # look-up needs no reset: the next use searches the path again and finds this tree.
        _assemble(src, target)
        return target
    if _nltk_has("corpora/wordnet") or _nltk_has("corpora/wordnet.zip"):
        return target
    shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    raise MissingAttackDataError(f"WordNet 3.0 is missing, needed by {for_what} ({src} lacks {shown}): {_HOW_TO_GET_WORDNET}")


def _complete(tree: Path) -> bool:
    return all((tree / f).is_file() for f in WORDNET_FILES + ("lexnames",))


def _assemble(src: Path, target: Path) -> None:
    """Copy the database files and the shipped ``lexnames`` into ``target``, atomically."""
    if not LEXNAMES_TABLE.is_file():
        raise MissingAttackDataError(f"the WordNet lexnames table {LEXNAMES_TABLE} is missing; reinstall audit")
    log.info("assembling NLTK WordNet data from %s into %s (once)", src, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    try:
        for f in WORDNET_FILES:
            shutil.copyfile(src / f, tmp / f)
        shutil.copyfile(LEXNAMES_TABLE, tmp / "lexnames")
        try:
            os.replace(tmp, target)   # atomic: a concurrent run sees no tree or a whole one
        except OSError:
            if not _complete(target):  # another process won the race with a complete tree, or not
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _drop_record(record: logging.LogRecord) -> bool:
    return False


@contextlib.contextmanager
def no_nltk_downloads() -> Iterator[list[str]]:
    """Replace ``nltk.download`` with a look-up that never uses the network.

    It answers True when NLTK already has the resource and False otherwise (what ``nltk.download``
    returns on failure), recording every requested name in the yielded list.

    Example:
        >>> import nltk
        >>> with no_nltk_downloads() as asked:
        ...     nltk.download("omw-1.4") in (True, False)
        True
        >>> asked
        ['omw-1.4']
    """
    import nltk

    asked: list[str] = []
    real = nltk.download

    def offline_download(info_or_id=None, *args, **kwargs):
        name = str(info_or_id)
        asked.append(name)
        found = any(_nltk_has(f"{kind}/{name}") or _nltk_has(f"{kind}/{name}.zip")
                    for kind in ("corpora", "tokenizers", "taggers", "models"))
        log.debug("nltk.download(%r) intercepted (offline); available locally: %s", name, found)
        return found

    nltk.download = offline_download
    try:
        yield asked
    finally:
        nltk.download = real


_TEXTATTACK = None


def import_textattack():
    """``import textattack`` offline: stop words provisioned, downloads prevented, logging quiet.

    Raises:
        MissingAttackDataError: textattack is not installed or NLTK stop words are missing.

    Example:
        >>> ta = import_textattack()  # doctest: +SKIP
        >>> ta.Attack.__name__  # doctest: +SKIP
        'Attack'
    """
    global _TEXTATTACK
    if _TEXTATTACK is not None:
        return _TEXTATTACK
    ensure_stopwords()
    # textattack sets TOKENIZERS_PARALLELISM=True on import; keep the caller's choice.
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    # On its first import into an empty ~/.cache/textattack TextAttack logs "Updating TextAttack package
    # dependencies." and "Downloading NLTK required packages." (its _post_install); the downloads never
    # happen here (no_nltk_downloads), so the lines only mislead. A filter set on its logger beforehand
    # survives the dictConfig it runs at import; --debug keeps them.
    ta_log = logging.getLogger("textattack.shared.utils.install")
    quiet_import = not logging.getLogger("audit").isEnabledFor(logging.DEBUG)
    if quiet_import:
        ta_log.addFilter(_drop_record)
    try:
        with no_nltk_downloads():
            import textattack
    except ImportError as e:
        raise MissingAttackDataError(f"adversarial attacks need the textattack package ({e}); pip install textattack==0.3.11") from None
    except LookupError as e:  # an NLTK resource we did not provide
        first = next((line.strip() for line in str(e).splitlines() if "Resource" in line), first_line(e))
        raise MissingAttackDataError(f"textattack needs NLTK data that is missing: {first}") from None
    finally:
        ta_log.removeFilter(_drop_record)
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before
    # TextAttack warns on every goal function it has no compatibility entry for (all of ours); its
    # logger is "textattack.shared.utils.install" with an explicit level, so the parent's is not enough.
    if not logging.getLogger("audit").isEnabledFor(logging.DEBUG):
        textattack.shared.utils.logger.setLevel(logging.ERROR)
    _TEXTATTACK = textattack
    return textattack
