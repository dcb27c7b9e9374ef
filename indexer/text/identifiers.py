"""Code identifiers and numbers in prose: the one extractor behind the index, rewrites, grounding
and the answer cache.

An identifier is kept whole (`select_related`, `__init__`, `DEFAULT_AUTO_FIELD`, `tools/call`,
`Session.delete()`, `--dry-run`, a backticked span): agents search for the exact name, and the
word analyzer would split it into common words. `identifiers` keeps the text as written (grounding
compares it with sources verbatim); `identifier_terms` is the folded form the `idents` index field
holds and a query looks up.
"""

from __future__ import annotations

import re

from indexer.text.folding import fold_text

# A citation marker: [1], [1, 2]. Not preceded by a word character, so `items[1]` is not one.
CITATION_MARKER = re.compile(r"(?<![\w])\[(\d+(?:\s*,\s*\d+)*)\]")
BACKTICK_SPAN = re.compile(r"`([^`\n]+)`")
# Words after which a period does not end a sentence, and which are never identifiers.
ABBREVIATIONS = frozenset(
    {
        "e.g",
        "i.e",
        "eg",
        "ie",
        "vs",
        "cf",
        "approx",
        "incl",
        "fig",
        "no",
        "mr",
        "mrs",
        "ms",
        "dr",
        "al",
        "resp",
    }
)

_CALL = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\(\)")
_DOTTED = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?![\w(])")
_SNAKE = re.compile(r"(?<![\w.])_*[A-Za-z][A-Za-z0-9]*(?:_+[A-Za-z0-9]+)+_*(?![\w])")
# Dunder and single-underscore names without an inner underscore: `__init__`, `_meta`.
_UNDERSCORED = re.compile(r"(?<![\w.])_+[A-Za-z][A-Za-z0-9]*_*(?![\w])")
_CAMEL = re.compile(r"(?<![\w.])(?:[a-z]+[A-Z]|[A-Z][a-z0-9]+[A-Z])[A-Za-z0-9]*(?![\w])")
_CLI_FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
# Protocol method names and API paths (`tools/list`, `notifications/cancelled`).
_METHOD_PATH = re.compile(r"(?<![\w/.])[a-z][A-Za-z_]{2,}(?:/[a-z][A-Za-z_]{2,})+(?![\w/])")
_PATTERNS = (_METHOD_PATH, _CALL, _DOTTED, _SNAKE, _UNDERSCORED, _CAMEL, _CLI_FLAG)

# In code, only API-looking names count: dotted names, calls, UPPER_CASE constants.
_CODE_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|[A-Za-z_]\w*(?=\()|\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b")
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)*)")


def identifiers(text: str) -> list[str]:
    """Code identifiers in prose, as written, in order of appearance (first occurrence).

    Backticked spans, method paths, calls, dotted names, snake/UPPER/CamelCase, dunder names and
    --flags; citation markers are not identifiers.
    """
    text = CITATION_MARKER.sub(" ", text)
    found: list[str] = [m.group(1).strip() for m in BACKTICK_SPAN.finditer(text)]
    rest = BACKTICK_SPAN.sub(" ", text)
    for pattern in _PATTERNS:
        for match in pattern.finditer(rest):
            token = match.group(0)
            if token.lower().rstrip(".") not in ABBREVIATIONS:
                found.append(token)
        rest = pattern.sub(" ", rest)
    return list(dict.fromkeys(f for f in found if f))


def code_names(code: str) -> list[str]:
    """API-looking names in a block of code (dotted names, called names, UPPER_CASE), in order."""
    return list(dict.fromkeys(_CODE_NAME.findall(code)))


def _index_form(identifier: str) -> str:
    # A call and its name are one identifier; trailing sentence punctuation is not part of it.
    return fold_text(identifier).removesuffix("()").rstrip(".,:;")


def identifier_terms(text: str) -> list[str]:
    """The identifiers of `text` as `idents` index terms: folded, whole, without a call's `()`.

    A dotted name also yields its underscored parts (`QuerySet.select_related` → `select_related`),
    so a bare mention of the method matches its qualified name. Backticked spans with spaces
    (`pip install foo`) are commands, not identifiers; their identifier-like words count.
    """
    out: list[str] = []
    for ident in identifiers(text):
        if any(c.isspace() for c in ident):
            out.extend(identifier_terms(" ".join(ident.split())))
            continue
        term = _index_form(ident)
        if len(term) < 3 or not _looks_like_code(ident):
            continue
        out.append(term)
        if "." in term:
            out.extend(part for part in term.split(".") if "_" in part and len(part) > 2)
    return list(dict.fromkeys(out))


def _looks_like_code(ident: str) -> bool:
    """A backticked plain word (`models`) is a word; the analyzer already indexes it as one."""
    return any(c in ident for c in "_./-") or any(c.isdigit() for c in ident) or ident != ident.lower()


def numbers(text: str) -> set[str]:
    """Numbers in prose (thousands separators removed); not those inside backticks or citations."""
    text = CITATION_MARKER.sub(" ", text)
    text = BACKTICK_SPAN.sub(" ", text)
    return {m.group(1).replace(",", "") for m in _NUMBER.finditer(text)}


NUMBER_WORDS = {
    word: str(i)
    for i, word in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
        ]
    )
}


def source_numbers(text: str) -> set[str]:
    """Every number a source states, backticked or spelled out (`two` → `2`): what a claim's
    numbers are checked against."""
    found = {m.group(1).replace(",", "") for m in _NUMBER.finditer(text)}
    found.update(NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in NUMBER_WORDS)
    return found
