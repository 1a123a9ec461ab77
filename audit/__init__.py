"""audit: evaluate, explain, harden and gate text-generation language models."""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy public API: `import audit` stays fast; heavy modules load on first use.
    if name == "run_suite":
        from .runner import run_suite

        return run_suite
    if name in ("LanguageModel",):
        from .models.local import LanguageModel

        return LanguageModel
    if name in ("AuditResult", "SectionResult", "SampleRecord"):
        from . import results

        return getattr(results, name)
    if name == "load_suite":
        from .suite import load_suite

        return load_suite
    raise AttributeError(f"module 'audit' has no attribute {name!r}")
