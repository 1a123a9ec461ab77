"""Captum attribution of individual generations: which prompt (and earlier generated) tokens drove each token.

Example:
    >>> from audit.explain import explain
    >>> e = explain("builtin:micro", "The value is", max_new_tokens=4)
    >>> len(e.target_tokens)
    4
"""

from .core import ExplainError, explain, explain_many
from .explanation import Explanation, Faithfulness
from .methods import METHODS, AttributionMethod, MethodOutput
from .options import ExplainOptions
from .tokens import readable_tokens

__all__ = ["explain", "explain_many", "Explanation", "Faithfulness", "ExplainOptions", "ExplainError", "METHODS",
           "AttributionMethod", "MethodOutput", "readable_tokens"]
