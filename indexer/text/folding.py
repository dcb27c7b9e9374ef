"""Folding text for matching, and the offsets that lead back to the original.

Matching folds both sides the same way before Tantivy sees them: compatibility forms (NFKC:
full-width letters, ligatures), full case folding (`Straße` → `strasse`, final sigma `ς` → `σ`) and
accents (`crème` → `creme`, `οδός` → `οδοσ`). Tantivy's own `ascii_fold` filter only knows Latin
letters, so accent folding happens here, where Greek, Cyrillic and Vietnamese get it too.

Only marks from the combining-diacritics blocks are dropped: the kana voicing marks (`が` = `か` +
U+3099) change a word, not its accent, and stay.

Folding remembers, for every folded character, which original character it came from, so a match
found in folded text can be shown in the original text. Runs of ASCII, most of any documentation,
fold in one `str.lower()` with an identity offset map; only other characters are folded one by one
(snippets fold every hit's chunk on every search, so this is on the hot path).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

# Accents and other diacritics; other combining marks (kana voicing, Indic vowel signs) carry meaning.
_DIACRITIC_RANGES = ((0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F))
# A run of ASCII characters, or one other character.
_RUNS = re.compile(r"[\x00-\x7f]+|[^\x00-\x7f]")


def _is_diacritic(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _DIACRITIC_RANGES)


@lru_cache(maxsize=65536)
def fold_char(char: str) -> str:
    """One character folded for matching; may be empty (a lone accent) or longer (`ß` → `ss`)."""
    if char.isascii():
        return char.lower()
    if 0xD800 <= ord(char) <= 0xDFFF:
        return "\ufffd"  # a lone surrogate cannot be encoded for Tantivy; it separates words instead
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", char).casefold())
    kept = "".join(c for c in decomposed if not _is_diacritic(c))
    return unicodedata.normalize("NFC", kept)


@dataclass(frozen=True)
class Folded:
    """Folded text plus, for each of its characters, the index of the original character behind it."""

    text: str
    origin: Sequence[int]  # `range` when nothing changed length (all ASCII)
    source_length: int

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        """The original-text span of folded characters [start, end): whole original characters, and
        any accents that folded away right after the span (so `cafe` + U+0301 stays one word)."""
        if start >= end:
            position = self.origin[start] if start < len(self.origin) else self.source_length
            return position, position
        first = self.origin[start]
        last = self.origin[end - 1] + 1
        following = self.origin[end] if end < len(self.origin) else self.source_length
        # Characters between `last` and the next folded character's origin folded to nothing.
        return first, max(last, following)


def fold(text: str) -> Folded:
    """`text` folded for matching (see the module docstring), with its offset map."""
    if text.isascii():
        return Folded(text.lower(), range(len(text)), len(text))
    pieces: list[str] = []
    origin: list[int] = []
    for run in _RUNS.finditer(text):
        start, end = run.span()
        piece = _fold_run(run.group())
        pieces.append(piece)
        # An ASCII run keeps its length; one other character may fold to none or several.
        origin.extend(range(start, end) if run.group().isascii() else [start] * len(piece))
    return Folded("".join(pieces), origin, len(text))


def _fold_run(run: str) -> str:
    """One `_RUNS` match folded: a run of ASCII lower-cased at once, another character by `fold_char`
    (whose cache is kept for single characters)."""
    return run.lower() if run.isascii() else fold_char(run)


def fold_text(text: str) -> str:
    """Only the folded text (no offset map): the form every query and indexed field takes."""
    if text.isascii():
        return text.lower()
    return "".join(_fold_run(run.group()) for run in _RUNS.finditer(text))


def byte_to_char_offsets(text: str, byte_offsets: list[int]) -> list[int]:
    """Character offsets in `text` of UTF-8 byte offsets (Tantivy reports highlights in bytes).

    The one place where byte offsets become character offsets; an offset inside a multi-byte
    character maps to the start of that character (decoding a prefix drops that character's
    partial bytes).
    """
    if text.isascii():
        return [min(max(offset, 0), len(text)) for offset in byte_offsets]
    encoded = text.encode("utf-8", "surrogatepass")
    return [len(encoded[: max(offset, 0)].decode("utf-8", "ignore")) for offset in byte_offsets]
