"""Fusion on hand-made ranked lists: agreement-weighted BM25, page evidence, plain RRF unchanged."""

from __future__ import annotations

import pytest

from server.retrieval.fusion import Ranked, agreement, by_page_evidence, chunk_scores, list_weights
from server.settings import RetrievalSettings


def _list(retriever: str, ids: list[str], *, primary: bool = True) -> Ranked:
    return Ranked(retriever, 0, [(cid, 1.0 / (i + 1)) for i, cid in enumerate(ids)], primary)  # type: ignore[arg-type]


ADAPTIVE = RetrievalSettings(fusion="adaptive", bm25_weight=0.5, agreement_floor=0.5, agreement_span=2.0)
PLAIN = ADAPTIVE.model_copy(update={"fusion": "plain"})


def test_agreement_is_the_share_of_the_top_ten_both_lists_hold():
    dense = _list("dense", [f"c{i}" for i in range(10)])
    assert agreement([_list("bm25", [f"c{i}" for i in range(10)]), dense]) == 1.0
    assert agreement([_list("bm25", ["c0", "c1", "x2", "x3"]), dense]) == pytest.approx(0.2)
    assert agreement([_list("bm25", ["x"]), dense]) == 0.0
    # A secondary phrasing is not the retriever's own list; one retriever alone has nothing to agree with.
    assert agreement([_list("bm25", ["c0"], primary=False), dense]) is None
    assert agreement([dense]) is None


def test_bm25_weight_falls_when_the_lists_disagree_and_rises_when_they_agree():
    dense = _list("dense", [f"c{i}" for i in range(10)])
    apart = list_weights([_list("bm25", [f"x{i}" for i in range(10)]), dense], ADAPTIVE)
    together = list_weights([_list("bm25", [f"c{i}" for i in range(10)]), dense], ADAPTIVE)
    assert apart == [pytest.approx(0.25), 1.0]  # 0.5 x floor 0.5
    assert together == [pytest.approx(1.25), 1.0]  # 0.5 x (0.5 + 2.0)
    # Plain fusion ignores agreement; a secondary phrasing keeps its discount on top.
    assert list_weights([_list("bm25", [f"x{i}" for i in range(10)]), dense], PLAIN) == [0.5, 1.0]
    secondary = list_weights([_list("bm25", ["c0"]), _list("bm25", ["c1"], primary=False), dense], PLAIN)
    assert secondary == [0.5, pytest.approx(0.5 * PLAIN.rewrite_weight), 1.0]


def test_chunk_scores_are_weighted_reciprocal_ranks():
    scores = chunk_scores([_list("bm25", ["a", "b"]), _list("dense", ["b"])], [0.5, 1.0], rrf_k=10)
    assert scores["a"] == pytest.approx(0.5 / 11)
    assert scores["b"] == pytest.approx(0.5 / 12 + 1.0 / 11)


def test_a_page_with_several_good_chunks_overtakes_a_page_with_one_slightly_better():
    order = ["solo", "p1", "p2", "p3", "other"]
    scores = {"solo": 1.0, "p1": 0.9, "p2": 0.8, "p3": 0.7, "other": 0.1}
    page_of = {"solo": "a.html", "p1": "b.html", "p2": "b.html", "p3": "b.html", "other": "c.html"}

    ranked, new = by_page_evidence(order, scores, page_of, decay=0.5)

    # b.html: 0.9 + 0.5*0.8 + 0.25*0.7 = 1.475 > a.html's 1.0; b's other chunks keep their scores,
    # so they stay below a.html instead of crowding it out.
    assert ranked == ["p1", "solo", "p2", "p3", "other"]
    assert new["p1"] == pytest.approx(1.475)
    assert (new["p2"], new["p3"], new["solo"], new["other"]) == (0.8, 0.7, 1.0, 0.1)


def test_page_evidence_without_decay_keeps_the_chunk_order():
    order = ["a1", "b1", "a2"]
    scores = {"a1": 0.9, "b1": 0.8, "a2": 0.7}
    ranked, new = by_page_evidence(order, scores, {"a1": "a", "b1": "b", "a2": "a"}, decay=0.0)
    assert ranked == order
    assert new == scores


def test_chunks_of_unknown_pages_keep_their_own_score():
    ranked, new = by_page_evidence(["x", "y"], {"x": 0.5, "y": 0.4}, {"y": "p"}, decay=0.5)
    assert ranked == ["x", "y"] and new == {"x": 0.5, "y": 0.4}
