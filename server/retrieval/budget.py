"""The response budget: every search page and fetched passage fits the caller's `max_tokens`.

Sizes are counted in the embedding model's tokens over the JSON the client receives. The counts
are kept as small as possible: a search page is measured hit by hit in one batched tokenizer call
and never tokenized whole a second time unless the cursor did not fit (see `fit_search`).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence

from pydantic import BaseModel

from indexer.embedding import Embedder
from server.retrieval.results import FetchResult, SearchHit, SearchResult
from server.security.guards import InvalidArgument

# Room kept for the cursor added after fitting (base64 costs about one token per 2 characters).
CURSOR_ROOM = 60
# A hit that does not fit whole may still fit with its snippet cut to this many tokens.
SHORT_SNIPPET_TOKENS = 24
# A hit's JSON up to its snippet depends only on the chunk and its generation: its token count is
# kept for this many distinct chunks, so a search tokenizes only the query-dependent rest.
PREFIX_CACHE_SIZE = 8192
_SNIPPET_KEY = ', "snippet": '


def to_json(model: BaseModel) -> str:
    return json.dumps(model.model_dump(mode="json"), ensure_ascii=False)


class ResponseBudget:
    """Measures and trims results with one model's tokenizer."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._prefix_tokens: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def hit_costs(self, texts: Sequence[str]) -> list[int]:
        """Exact token counts of hits' JSON texts, in one batched tokenizer call.

        With a tokenizer that cuts at punctuation, a text cut just before the `,` that precedes
        `"snippet"` (the labels before it end in a quote, bracket or literal) counts as the sum of its
        two parts; the first part repeats from search to search, so its count comes from a cache.
        """
        if not self.embedder.splits_at_punctuation:
            return self.embedder.count_tokens_batch(texts)
        cuts = [text.find(_SNIPPET_KEY) for text in texts]
        known: list[int | None] = []
        with self._lock:
            for text, cut in zip(texts, cuts, strict=True):
                cached = self._prefix_tokens.get(text[:cut]) if cut > 0 else None
                if cached is not None:
                    self._prefix_tokens.move_to_end(text[:cut])
                known.append(cached)
        # Count the rest of every text, and the whole of those whose prefix is not known yet.
        pieces = [text if k is None else text[cut:] for text, cut, k in zip(texts, cuts, known, strict=True)]
        new_prefixes = [
            text[:cut] for text, cut, k in zip(texts, cuts, known, strict=True) if k is None and cut > 0
        ]
        counts = self.embedder.count_tokens_batch(pieces + new_prefixes)
        prefix_counts = dict(zip(new_prefixes, counts[len(pieces) :], strict=True))
        with self._lock:
            for prefix, count in prefix_counts.items():
                self._prefix_tokens[prefix] = count
            while len(self._prefix_tokens) > PREFIX_CACHE_SIZE:
                self._prefix_tokens.popitem(last=False)
        return [count + (k or 0) for count, k in zip(counts, known, strict=False)]

    def tokens(self, model: BaseModel) -> int:
        """Size of a result as the client receives it (its JSON), in model tokens."""
        return self.embedder.count_tokens(to_json(model))

    def fit_search(
        self,
        query: str,
        variants: list[str],
        hits: list[SearchHit],
        max_tokens: int,
        degraded: Sequence[str] = (),
    ) -> tuple[SearchResult, int]:
        """Keep whole hits in rank order while the response stays within `max_tokens`.

        Also returns an upper bound of the result's size in tokens (without a cursor). The tokenizer
        splits at every punctuation character, so the JSON of the result is exactly the envelope's
        tokens plus each hit's plus one per separating comma; counting two per hit bounds it.
        """
        result = SearchResult(
            query=query,
            rewritten_queries=variants,
            hits=[],
            next_cursor=None,
            truncated=False,
            degraded=bool(degraded),
            degraded_reasons=list(degraded),
        )
        budget = max_tokens - CURSOR_ROOM
        used = self.tokens(result)
        # One batched tokenizer call for every hit; +2 per hit covers the separators between them.
        costs = self.hit_costs([to_json(hit) for hit in hits])
        for hit, cost in zip(hits, costs, strict=True):
            cost += 2
            if used + cost > budget:
                # A shorter snippet may still let this hit in.
                shortened = hit.model_copy(
                    update={
                        "snippet": self.embedder.truncate_to_tokens(hit.snippet, SHORT_SNIPPET_TOKENS) + " …"
                    }
                )
                cost = self.hit_costs([to_json(shortened)])[0] + 2
                if used + cost > budget:
                    result.truncated = True
                    break
                hit = shortened
                result.truncated = True
            result.hits.append(hit)
            used += cost
        return result, used

    def fit_fetch(self, result: FetchResult, max_tokens: int) -> tuple[FetchResult, int]:
        """Drop the farthest neighbours first, then shorten the main chunk's text, to fit the budget."""
        size = self.tokens(result)
        while size > max_tokens and (result.before or result.after):
            result.truncated = True
            if len(result.before) >= len(result.after) and result.before:
                result.before.pop(0)
            else:
                result.after.pop()
            size = self.tokens(result)
        if size <= max_tokens:
            return result, size  # the usual case: one measurement
        text = result.chunk.text
        keep = self.embedder.count_tokens(text)
        # JSON escaping makes text cost slightly more than its raw token count: shrink until it fits.
        while (overflow := size - max_tokens) > 0 and keep > 0:
            keep = max(0, keep - overflow - 8)
            shortened = self.embedder.truncate_to_tokens(text, keep) + " …" if keep else ""
            result.chunk = result.chunk.model_copy(update={"text": shortened, "truncated": True})
            result.truncated = True
            size = self.tokens(result)
        if size > max_tokens:
            raise InvalidArgument(
                f"max_tokens: {max_tokens} is too small for this chunk's metadata alone; "
                f"use at least {size + 50}",
                argument="max_tokens",
            )
        return result, size
