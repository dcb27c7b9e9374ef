"""How each known model wants its inputs marked: query and passage prefixes from the model cards.

Asymmetric retrieval models were trained with an instruction or a role word before each text, and
embed noticeably worse without it. fastembed's `query_embed`/`passage_embed` add nothing for these
models (they call the same `embed`), so the prefixes live here, and `embedding.query_prefix` /
`embedding.passage_prefix` override them for a model the table does not know.
"""

from __future__ import annotations

from pydantic import BaseModel

BGE_QUERY = "Represent this sentence for searching relevant passages: "


class InputProfile(BaseModel):
    query_prefix: str = ""
    passage_prefix: str = ""


SYMMETRIC = InputProfile()

# Keys are lower-cased model names without the organisation, matched exactly or as a family prefix.
_PROFILES: dict[str, InputProfile] = {
    # BAAI bge v1.5 and v1 (English): an instruction for queries, passages as they are.
    "bge-small-en": InputProfile(query_prefix=BGE_QUERY),
    "bge-base-en": InputProfile(query_prefix=BGE_QUERY),
    "bge-large-en": InputProfile(query_prefix=BGE_QUERY),
    # Snowflake arctic-embed v1 and mixedbread: the same instruction as BGE.
    "snowflake-arctic-embed-xs": InputProfile(query_prefix=BGE_QUERY),
    "snowflake-arctic-embed-s": InputProfile(query_prefix=BGE_QUERY),
    "snowflake-arctic-embed-m": InputProfile(query_prefix=BGE_QUERY),
    "snowflake-arctic-embed-l": InputProfile(query_prefix=BGE_QUERY),
    "mxbai-embed-large-v1": InputProfile(query_prefix=BGE_QUERY),
    # E5 (English and multilingual): a role word on both sides.
    "e5-": InputProfile(query_prefix="query: ", passage_prefix="passage: "),
    "multilingual-e5-": InputProfile(query_prefix="query: ", passage_prefix="passage: "),
    # nomic-embed-text v1 and v1.5: task prefixes on both sides.
    "nomic-embed-text-v1": InputProfile(query_prefix="search_query: ", passage_prefix="search_document: "),
}


def profile_for(model: str) -> InputProfile:
    """The prefixes `model` expects; symmetric (none) for models not listed, such as MiniLM or GTE."""
    name = model.rsplit("/", 1)[-1].lower()
    if name in _PROFILES:
        return _PROFILES[name]
    # The longest family key that the name starts with: "bge-small-en-v1.5" → "bge-small-en".
    families = sorted((key for key in _PROFILES if name.startswith(key)), key=len, reverse=True)
    return _PROFILES[families[0]] if families else SYMMETRIC
