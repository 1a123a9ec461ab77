"""Settings of an explanation: one typed dataclass shared by the Python API, the CLI and the suite section."""

from __future__ import annotations

from dataclasses import dataclass

INTEGRATION_METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
BASELINE_TOKENS = ("auto", "pad", "eos", "unk", "bos")


@dataclass
class ExplainOptions:
    """How a generation is explained.

    Integrated gradients starts from 20 Gauss-Legendre points (per-token scores within ~1e-6 of a
    256-point integral on the micro model); where the scores miss f(x) - f(baseline) by more than
    1%, the panels of the path that miss are bisected and get fresh points, up to ``max_n_steps``
    points in all. An explanation still short of the tolerance is flagged (``complete = False``).
    """

    method: str = "integrated_gradients"   # a name in audit.explain.METHODS (`audit ls` lists them), or auto:
                                           # integrated gradients under 20M parameters, else feature_ablation
    max_new_tokens: int = 16               # tokens generated (greedy) when no target is given
    max_target_tokens: int | None = None   # explain at most this many target tokens (None: all)
    n_steps: int = 20                      # integrated gradients: Gauss-Legendre points (doubled as needed)
    integration: str = "gausslegendre"     # integrated gradients: quadrature rule (Captum's names)
    completeness_tolerance: float | None = 0.01  # IG: refine until every step's scores sum to
                                           # f(x) - f(baseline) within this fraction (None: the fixed
                                           # n_steps-point rule, exactly Captum's)
    max_n_steps: int = 400                 # IG: the cap on gradient points for that refinement
    baseline: str = "auto"                 # the token that stands for "absent": auto (unk, else pad, else eos)
                                           # | pad | eos | unk | bos | a token id
    internal_batch_size: int | None = None # rows per forward pass (None: about 8k tokens per forward-only
                                           # pass, and grad_memory_mb for passes that keep activations)
    grad_memory_mb: int = 512              # activation memory budget of one gradient pass (rows per pass
                                           # follow from it, not from the number of points)
    attribute_generated: bool = True       # earlier generated tokens are sources too (False: only the prompt;
                                           # they stay fixed, and ablation costs one row per prompt token)
    n_samples: int = 25                    # shapley_sampling: random permutations
    faithfulness: bool = True              # also run the deletion check (a few batched forwards)
    top_k: int = 3                         # faithfulness: sources replaced per step
    n_random: int = 8                      # faithfulness: random draws to compare with
    seed: int = 0                          # random draws (faithfulness, shapley) are seeded
    threads: int | None = None             # CPU threads while attributing (None: 1 for models under
                                           # 20M parameters, whose ops are too small to split; else torch's)

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.max_target_tokens is not None and self.max_target_tokens < 1:
            raise ValueError("max_target_tokens must be >= 1 (or null for all)")
        if self.n_steps < 1:
            raise ValueError("n_steps must be >= 1")
        if self.completeness_tolerance is not None and self.completeness_tolerance <= 0:
            raise ValueError("completeness_tolerance must be > 0 (or null to disable)")
        if self.max_n_steps < self.n_steps:
            raise ValueError("max_n_steps must be >= n_steps")
        if self.integration not in INTEGRATION_METHODS:
            raise ValueError(f"integration must be one of {', '.join(INTEGRATION_METHODS)}, got {self.integration!r}")
        if self.baseline not in BASELINE_TOKENS and not str(self.baseline).isdigit():
            raise ValueError(f"baseline must be one of {', '.join(BASELINE_TOKENS)} or a token id, got {self.baseline!r}")
        if self.internal_batch_size is not None and self.internal_batch_size < 1:
            raise ValueError("internal_batch_size must be >= 1")
        if self.grad_memory_mb < 1:
            raise ValueError("grad_memory_mb must be >= 1")
        if self.n_samples < 1:
            raise ValueError("n_samples must be >= 1")
        if self.top_k < 1:
            raise ValueError("top_k must be >= 1")
        if self.n_random < 1:
            raise ValueError("n_random must be >= 1")
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1")
