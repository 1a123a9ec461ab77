"""audit: evaluate, explain, harden and gate text-generation language models."""

__version__ = "0.1.0"
