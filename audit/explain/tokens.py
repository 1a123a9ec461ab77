"""Token ids -> readable text, one string per token, with no byte-level ``Ġ``/``Ċ`` markers.

``tokenizer.convert_ids_to_tokens`` shows GPT-2's byte-to-unicode alphabet (``Ġf`` for `` f``);
decoding each id alone fixes that but turns every piece of a multi-byte character into ``�``.
For byte-level BPE we map each token back to its raw bytes and run them through one incremental
UTF-8 decoder, so a character split over two tokens appears (whole) on the token that completes
it and ``"".join(tokens)`` reproduces the decoded text exactly. Other tokenizers (SentencePiece,
WordPiece) decode each id on its own.
"""

from __future__ import annotations

import codecs
from functools import lru_cache
from typing import Sequence


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    return {c: b for b, c in bytes_to_unicode().items()}


def readable_tokens(tokenizer, ids: Sequence[int]) -> list[str]:
    """Readable text of each token in ``ids`` (a sequence decoded in order).

    Example:
        >>> from audit.models.local import LanguageModel
        >>> lm = LanguageModel.load("builtin:micro")
        >>> readable_tokens(lm.tokenizer, lm.encode("a list"))
        ['a', ' ', 'l', 'is', 't']
    """
    ids = [int(i) for i in ids]
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    pieces = tokenizer.convert_ids_to_tokens(ids)
    bd = _byte_decoder()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out: list[str] = []
    for i, piece in zip(ids, pieces):
        if i in special or piece is None:
            out.append(decoder.decode(b"", final=True) + (piece or tokenizer.decode([i])))
            decoder.reset()
        elif piece and all(c in bd for c in piece):
            # Byte-level BPE: the piece spells raw bytes in GPT-2's printable alphabet.
            out.append(decoder.decode(bytes(bd[c] for c in piece)))
        else:
            text = tokenizer.decode([i], clean_up_tokenization_spaces=False)
            if piece.startswith("\u2581") and not text.startswith(" "):
                text = " " + text  # SentencePiece drops a word's leading space when decoded alone
            out.append(text)
    tail = decoder.decode(b"", final=True)  # bytes of a character cut off at the end
    if tail and out:
        out[-1] += tail
    return out


def token_char_spans(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Character span of each readable token within ``"".join(tokens)``."""
    spans, pos = [], 0
    for t in tokens:
        spans.append((pos, pos + len(t)))
        pos += len(t)
    return spans
