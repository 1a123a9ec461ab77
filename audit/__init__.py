"""audit: evaluate, explain, harden and gate text-generation language models."""

from .version import __version__

__all__ = ["__version__", "run_suite", "load_suite", "load_model", "LanguageModel", "Model", "AuditResult",
           "SectionResult", "SampleRecord"]


def __getattr__(name):
    # Lazy public API: `import audit` stays fast; heavy modules load on first use.
    if name == "run_suite":
        from .runner import run_suite

        return run_suite
    if name == "LanguageModel":
        from .models.local import LanguageModel

        return LanguageModel
    if name == "load_model":
        from .models.load import load_model

        return load_model
    if name == "Model":
        from .models.interface import Model

        return Model
    if name in ("AuditResult", "SectionResult", "SampleRecord"):
        from . import results

        return getattr(results, name)
    if name == "load_suite":
        from .suite import load_suite

        return load_suite
    raise AttributeError(f"module 'audit' has no attribute {name!r}")
