"""A per-answer embedding memo shared by the answer writer and the grounding check."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt


def memo_embed(
    embed: Callable[[Sequence[str]], npt.NDArray[np.float32]],
) -> Callable[[list[str]], npt.NDArray[np.float32]]:
    """Per-answer embedding memo: the writer and the checker embed many of the same sentences."""
    cache: dict[str, npt.NDArray[np.float32]] = {}

    def run(texts: list[str]) -> npt.NDArray[np.float32]:
        # Sorted by length: a batch is padded to its longest text, so mixing short claims with long
        # windows wastes most of the compute.
        todo = sorted(dict.fromkeys(t for t in texts if t not in cache), key=len)
        if todo:
            cache.update(zip(todo, embed(todo), strict=True))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([cache[t] for t in texts])

    return run
