"""Does the question name a product the collection does not document?

"How do I configure Flask's session cookie?" asked of the Django docs retrieves Django's session
and cookie pages, which answer every word of it but the one that matters. Such a question names
something (a product, framework, protocol or tool) that none of the retrieved passages mention and
that the collection itself mentions rarely or never; documentation that covers a product names it
throughout. Both conditions must hold, so a name that the collection uses freely ("Windows" in
Git's docs) never blocks an answer because the retrieved passages happen not to repeat it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

# Possessive of a capitalised name: "Flask's", "Django’s".
_POSSESSIVE = re.compile(r"\b([A-Z][\w.+-]*[A-Za-z0-9])(?:'s|’s)\b")
# Inner capitals: "SQLAlchemy", "FastAPI", "JavaScript", "outputSchema".
_INNER_CAPS = re.compile(r"\b[A-Z]?[a-z]+[A-Z][A-Za-z0-9]*\b|\b[A-Z]{2,}[a-z]+[A-Za-z0-9]*\b")
# "Next.js", "Express.js".
_DOT_JS = re.compile(r"\b[A-Za-z]+\.js\b")
# Acronyms: "MCP", "SSE", "gRPC" is caught above.
_ACRONYM = re.compile(r"\b[A-Z][A-Z0-9]{1,5}\b")
# A capitalised word inside a sentence (not its first word): "with Kafka", "in SQLAlchemy".
_PROPER = re.compile(r"(?<=[a-z0-9,;:)] )[A-Z][a-z][A-Za-z0-9]+")
_PATTERNS = (_POSSESSIVE, _INNER_CAPS, _DOT_JS, _ACRONYM, _PROPER)
# Capitalised because English capitalises them, not because they name a product.
_NOT_PRODUCTS_TEXT = """
english french german spanish italian portuguese dutch russian chinese japanese korean arabic
hindi turkish polish swedish greek hebrew latin unicode
monday tuesday wednesday thursday friday saturday sunday january february march april may june
july august september october november december
"""
_NOT_PRODUCTS = frozenset(_NOT_PRODUCTS_TEXT.split())


def product_names(question: str) -> list[str]:
    """Names in the question that look like a product, framework, protocol or tool, in order."""
    found: list[tuple[int, str]] = []
    taken: set[int] = set()  # character positions already inside a name ("Next" of "Next.js")
    for pattern in _PATTERNS:
        for match in pattern.finditer(question):
            group = 1 if pattern is _POSSESSIVE else 0
            start, end = match.span(group)
            if pattern is _POSSESSIVE and start == 0:
                continue  # "What's …", "It's …": a contraction, not a name
            if taken.intersection(range(start, end)) or match.group(group).lower() in _NOT_PRODUCTS:
                continue
            taken.update(range(start, end))
            found.append((start, match.group(group)))
    return list(dict.fromkeys(name for _, name in sorted(found)))


def mentions(name: str, text: str) -> bool:
    """Whether `text` contains `name` as a whole word, ignoring case."""
    return re.search(r"(?<!\w)" + re.escape(name.lower()) + r"(?!\w)", text.lower()) is not None


def undocumented_products(
    question: str, passages: Iterable[str], chunks_mentioning: Callable[[str], int], rare: int
) -> list[str]:
    """The question's product names that no passage mentions and at most `rare` chunks of the
    collection contain (`chunks_mentioning` counts them, stopping above `rare` is fine)."""
    names = product_names(question)
    if not names:
        return []
    text = "\n".join(passages)
    return [n for n in names if not mentions(n, text) and chunks_mentioning(n) <= rare]
