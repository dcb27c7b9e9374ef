"""Guards at the edges of a tool call.

* Input limits, checked before any backend work. Each validator takes whatever the client sent
  and either returns the clean value or raises `InvalidArgument` with a message that names the
  argument and the limit, so a calling model can correct itself.
* Prompt-injection screening of retrieved chunk text (`screen`, `neutralize`). Documentation is
  data, never instructions; flagged chunks are still returned, but marked and cleaned.
* PII redaction (`find_pii`, `redact`) for emails, phone numbers, card numbers, IBANs and
  API-key-like secrets: the rules live in the text core (`indexer.text.pii`), re-exported here.

The patterns aim for few false positives on ordinary docs: words such as "system" and
"instructions" are everywhere in technical writing, so a flag needs the phrasing that addresses
a model, not the words alone.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from urllib.parse import unquote

from indexer.text.pii import find_pii, iban_valid, luhn_valid, redact, shannon_entropy

__all__ = ["find_pii", "iban_valid", "luhn_valid", "redact"]

# ---------------------------------------------------------------- input limits

QUERY_MAX_CHARS = 2_000
K_MIN, K_MAX = 1, 50
MAX_TOKENS_MIN, MAX_TOKENS_MAX = 100, 20_000
NEIGHBORS_MIN, NEIGHBORS_MAX = 0, 10
COLLECTIONS_MAX = 50
PATH_PREFIX_MAX_CHARS = 512
COLLECTION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}", re.ASCII)
CHUNK_ID_RE = re.compile(r"[0-9a-f]{32}", re.ASCII)


class InvalidArgument(ValueError):
    """A tool argument is outside its documented limits; the message says which and how to fix it."""

    code = "invalid_argument"

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


def _invalid(argument: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{argument}: {problem}", argument=argument)


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _require_int(name: str, value: object, low: int, high: int) -> int:
    # bool is an int subclass; `k=true` is a client bug, not k=1.
    if type(value) is not int:
        raise _invalid(name, f"must be an integer from {low} to {high}, got {_describe(value)}")
    if not low <= value <= high:
        raise _invalid(name, f"must be from {low} to {high}, got {value}")
    return value


def _require_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise _invalid(name, f"must be a string, got {type(value).__name__}")
    return value


def _bad_char(text: str, allowed: str = "") -> str | None:
    """The first control character or lone surrogate in `text`, if any."""
    for char in text:
        if char in allowed:
            continue
        category = unicodedata.category(char)
        if category in ("Cc", "Cs"):
            return char
    return None


def validate_query(query: object) -> str:
    """A non-empty question of at most QUERY_MAX_CHARS characters; returns it stripped."""
    text = _require_str("query", query).replace("\r\n", "\n").strip()
    if not text:
        raise _invalid("query", "must not be empty; ask a question or give search keywords")
    if len(text) > QUERY_MAX_CHARS:
        raise _invalid(
            "query", f"is {len(text)} characters; the limit is {QUERY_MAX_CHARS}. Shorten it to the key terms"
        )
    bad = _bad_char(text, allowed="\n\t")
    if bad is not None:
        raise _invalid(
            "query",
            f"contains control character U+{ord(bad):04X}; send plain text (newlines and tabs are fine)",
        )
    return text


def validate_k(k: object) -> int:
    return _require_int("k", k, K_MIN, K_MAX)


def validate_max_tokens(max_tokens: object) -> int:
    """Token budget of a search or fetch result."""
    return _require_int("max_tokens", max_tokens, MAX_TOKENS_MIN, MAX_TOKENS_MAX)


def validate_neighbors(neighbors: object) -> int:
    return _require_int("neighbors", neighbors, NEIGHBORS_MIN, NEIGHBORS_MAX)


def validate_collections(collections: object) -> list[str] | None:
    """None (all granted collections) or a list of collection names."""
    if collections is None:
        return None
    if not isinstance(collections, list | tuple):
        raise _invalid("collections", "must be a list of collection names (or omitted for all)")
    if len(collections) > COLLECTIONS_MAX:
        raise _invalid(
            "collections",
            f"has {len(collections)} entries; the limit is {COLLECTIONS_MAX}. Omit it to search all",
        )
    names: list[str] = []
    for item in collections:
        if not isinstance(item, str) or not COLLECTION_RE.fullmatch(item):
            raise _invalid(
                "collections",
                f"entry {_describe(item)} is not a collection name (letters, digits, '.', '_', '-'; "
                "starts with a letter or digit; at most 64 characters). `list_collections` shows valid names",
            )
        if item not in names:
            names.append(item)
    return names


def validate_version(version: object) -> str:
    text = _require_str("version", version)
    if not VERSION_RE.fullmatch(text):
        raise _invalid(
            "version",
            f"{_describe(text)} is not a version label (letters, digits, '.', '_', '+', '-'; "
            "at most 64 characters), e.g. '5.1'",
        )
    return text


def validate_chunk_id(chunk_id: object) -> str:
    text = _require_str("chunk_id", chunk_id)
    if not CHUNK_ID_RE.fullmatch(text):
        raise _invalid(
            "chunk_id",
            f"{_describe(text)} is not a chunk ID (32 lowercase hex characters, as returned by search)",
        )
    return text


def validate_path_prefix(prefix: object) -> str:
    """A relative POSIX path prefix that cannot climb out of a collection, however it is encoded."""
    text = _require_str("path_prefix", prefix)
    if len(text) > PATH_PREFIX_MAX_CHARS:
        raise _invalid("path_prefix", f"is {len(text)} characters; the limit is {PATH_PREFIX_MAX_CHARS}")
    # Check every decoding layer (`%252e%252e` → `%2e%2e` → `..`), bounded so it always ends.
    layers = [text]
    for _ in range(3):
        decoded = unquote(layers[-1])
        if decoded == layers[-1]:
            break
        layers.append(decoded)
    else:
        if unquote(layers[-1]) != layers[-1]:
            raise _invalid("path_prefix", "is URL-encoded more than three times; send the plain path")
    for layer in layers:
        hint = "use a relative POSIX path such as 'howto/' or 'ref/models/'"
        if _bad_char(layer) is not None:
            raise _invalid("path_prefix", f"contains a control character; {hint}")
        if "\\" in layer:
            raise _invalid("path_prefix", f"contains a backslash; {hint}")
        if layer.startswith("/"):
            raise _invalid("path_prefix", f"must be relative, not start with '/'; {hint}")
        if ".." in layer.split("/"):
            raise _invalid("path_prefix", f"must not contain '..' segments; {hint}")
    return text


# ---------------------------------------------------------------- injection screening

_INSTRUCTION_RES = [
    re.compile(p, re.IGNORECASE)
    for p in (
        # "ignore all previous instructions", "disregard the prior prompt", "forget your earlier rules"
        r"\b(?:ignore|disregard|forget|override)\s+(?:all\s+|any\s+)?(?:of\s+)?(?:the\s+|your\s+|my\s+|these\s+)?"
        r"(?:previous|prior|above|earlier|preceding|original)\s+"
        r"(?:instructions?|prompts?|messages?|context|rules|directions|guidelines)\b",
        r"\bdisregard\s+(?:all\s+|everything\s+)?(?:the\s+)?(?:above|before|that\s+came\s+before)\b",
        r"\bignore\s+(?:all\s+|everything\s+)(?:above|before)\b",
        # Role reassignment needs a role noun; "you are now ready to deploy" or "you are now in
        # debug mode" is ordinary prose.
        r"\byou\s+are\s+now\s+(?:a|an|my)\s+(?:[\w-]+\s+){0,2}?"
        r"(?:assistant|ai|chatbot|bot|persona|character|language\s+model)\b",
        r"\byou\s+are\s+now\s+(?:dan|jailbroken|unrestricted|unfiltered)\b",
        # "system prompt" itself is fine (LLM library docs use it); revealing/replacing one is not.
        r"\b(?:reveal|print|output|repeat|show|leak|disclose|ignore|override|forget)\s+(?:\w+\s+){0,3}?"
        r"(?:system\s+prompt|hidden\s+instructions)\b",
        r"\b(?:your|new|updated)\s+system\s+prompt\s+(?:is|says|:)",
        r"\b(?:do\s+not|don't|never)\s+(?:tell|inform|reveal\s+to|mention\s+(?:this\s+|it\s+)?to)\s+the\s+user\b",
        r"\bas\s+an?\s+(?:ai|artificial\s+intelligence|large\s+language\s+model|language\s+model|llm)\b",
        r"\b(?:new|updated|real|actual)\s+instructions\s*:",
        # Not "model": "for each model, you must define ..." is everyday Django prose.
        r"\b(?:assistant|claude|chatgpt),?\s+(?:you\s+must|please\s+ignore|ignore)\b",
    )
]

_ROLE_MARKER_RES = [
    re.compile(r"<\|(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id|start_header_id)\|>"),
    re.compile(r"\[/?INST\]|<<\s*/?SYS\s*>>"),
    re.compile(r"^[ \t]*#{1,6}[ \t]*(?:System|Assistant|Instruction)[ \t]*:", re.M | re.I),
    re.compile(r"^[ \t]*(?:Human|Assistant)[ \t]*:", re.M),
    re.compile(r"</?\s*(?:system|system[-_]prompt|instructions)\s*>", re.I),
]

# Zero-width, bidi embedding/override/isolate and invisible operator characters, and the BOM.
_HIDDEN_CHARS = (
    "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064"
    "\u2066\u2067\u2068\u2069\ufeff"
)
_HIDDEN_RE = re.compile(f"[{_HIDDEN_CHARS}\U000e0000-\U000e007f]")
_JOINERS = "\u200c\u200d"

_MD_LINK_RE = re.compile(r"!?\[[^\]\n]{0,300}\]\(\s*<?([^\s)>]{1,4000})")
_HTML_SRC_RE = re.compile(
    r"<(?:img|a|iframe|script)\b[^>]{0,500}?\b(?:src|href)\s*=\s*[\"']?([^\s\"'>]{1,4000})", re.I
)
_TEMPLATE_RE = re.compile(r"\{[^}]{0,80}\}|\{\{|\$\{|\$\(|%7[bB]|%3[cC]")
_BASE64ISH_RE = re.compile(r"[A-Za-z0-9+/=_-]{48,}", re.ASCII)
_PERCENT_ESCAPE_RE = re.compile(r"%[0-9A-Fa-f]{2}")


def _hidden_positions(text: str) -> list[int]:
    """Indices of hidden characters, minus the harmless ones.

    A leading BOM is an encoding artefact, and ZWJ/ZWNJ between two non-ASCII characters are how
    emoji sequences and scripts such as Persian or Devanagari are written.
    """
    found: list[int] = []
    for match in _HIDDEN_RE.finditer(text):
        i = match.start()
        char = text[i]
        if char == "\ufeff" and i == 0:
            continue
        if (
            char in _JOINERS
            and 0 < i < len(text) - 1
            and ord(text[i - 1]) > 0x7F
            and ord(text[i + 1]) > 0x7F
            and not text[i - 1].isspace()
            and not text[i + 1].isspace()
        ):
            continue
        found.append(i)
    return found


def _suspicious_url(url: str) -> bool:
    lowered = url.lower()
    if lowered.startswith("data:"):
        return True
    if not lowered.startswith(("http://", "https://", "//")):
        return False
    _, sep, query = url.partition("?")
    if not sep:
        return False
    query = query.split("#", 1)[0]
    if _TEMPLATE_RE.search(query):
        return True
    return any(_encoded_payload(part.partition("=")[2]) for part in query.split("&"))


def _encoded_payload(value: str) -> bool:
    """A query value that carries data rather than a search term.

    Long base64/hex runs with high entropy, or values made mostly of percent escapes. A GitHub
    search link (`?q=is%3Aissue+label%3A%22bug%22`) has a few escapes among words and stays clean.
    """
    if _BASE64ISH_RE.fullmatch(value):
        return any(c.isdigit() for c in value) and shannon_entropy(value) >= 4.0
    return len(_PERCENT_ESCAPE_RE.findall(value)) >= 12


def screen(text: str) -> list[str]:
    """Flags for text that tries to steer a model.

    Any of "instruction", "role_marker", "hidden_text", "exfiltration_link"; empty for clean text.
    """
    return list(_screen_once(text))


@functools.lru_cache(maxsize=8192)
def _screen_once(text: str) -> tuple[str, ...]:
    """The flags of one text, computed once: chunks are immutable and the same ones recur across
    searches, answers and fetches, so every caller shares this one cache."""
    flags: list[str] = []
    if any(p.search(text) for p in _INSTRUCTION_RES):
        flags.append("instruction")
    if any(p.search(text) for p in _ROLE_MARKER_RES):
        flags.append("role_marker")
    if _hidden_positions(text):
        flags.append("hidden_text")
    urls = [m.group(1) for m in _MD_LINK_RE.finditer(text)] + [
        m.group(1) for m in _HTML_SRC_RE.finditer(text)
    ]
    if any(_suspicious_url(u) for u in urls):
        flags.append("exfiltration_link")
    return tuple(flags)


def neutralize(text: str) -> str:
    """`text` without hidden characters or terminal control codes, safe to show as quoted data."""
    hidden = set(_hidden_positions(text))
    return "".join(
        ch
        for i, ch in enumerate(text)
        if i not in hidden
        and ch != "\ufeff"
        and (ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs"))
    )
