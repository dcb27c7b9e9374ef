"""Quotable units: extractive answers quote whole statements, never fragments.

The rules are checked on hand-written chunks, then as properties over generated chunks of
paragraphs, lists (nested, with and without lead-in), colons and code blocks: whatever units the
scorer picks, the written answer is well-formed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from server.answering.grounding.claims import split_claims
from server.answering.units import Unit, blocks, cite, render, units


def words(text: str) -> int:
    return len(text.split())


def test_list_items_come_with_their_lead_in():
    text = "A receiver SHOULD:\n\n- Stop the work for the request\n- Send no reply for the cancelled request"
    [unit] = units(text, words)
    assert unit.kind == "list"
    assert unit.lead == "A receiver SHOULD:"
    answer = "\n\n".join(render([unit], 3))
    assert answer.startswith("A receiver SHOULD [3]:\n- Stop the work")
    assert answer.endswith("- Send no reply for the cancelled request")


def test_a_long_list_is_quoted_item_by_item_each_with_the_lead_in():
    items = "\n".join(f"{n}. Item {n} says " + "something quite long " * 6 for n in range(1, 6))
    text = f"The server reads these settings:\n\n{items}"
    found = units(text, words, max_list_tokens=40)
    assert [u.kind for u in found] == ["item"] * 5
    assert {u.lead for u in found} == {"The server reads these settings:"}
    answer = "\n\n".join(render([found[1], found[3]], 1))
    lead, *lines = answer.splitlines()
    assert lead == "The server reads these settings [1]:"
    # Chosen items become bullets: "2." and "4." under one lead-in would read as a gap.
    assert [line[:9] for line in lines] == ["- Item 2 ", "- Item 4 "]


def test_a_sentence_ending_in_a_colon_is_not_quoted_without_what_it_introduces():
    text = "Settings that cannot change are kept. Operators usually reload by:"
    found = units(text, words)
    assert [u.body for u in found] == ["Settings that cannot change are kept."]


def test_a_colon_sentence_before_code_comes_with_the_code_whole():
    code = "```sh\ntidewire reload --config tidewire.toml\n\nand a second line\n```"
    text = f"To apply changed settings, send the reload signal:\n\n{code}"
    [unit] = units(text, words)
    assert unit.code_required and unit.code == code
    assert (
        "\n\n".join(render([unit], 2)) == f"To apply changed settings, send the reload signal [2]:\n\n{code}"
    )
    # Too long to come along: then the sentence is not quoted at all.
    assert units(text, words, max_code_tokens=3) == []


def test_a_label_between_a_sentence_and_its_example_comes_along():
    text = 'Clients can subscribe to changes:\n\nSubscribe request:\n\n```json\n{"id": 1}\n```'
    unit = units(text, words)[0]
    assert unit.code == 'Subscribe request:\n\n```json\n{"id": 1}\n```'


def test_a_sentence_cut_by_the_chunk_boundary_is_not_quoted():
    text = "the request it refers to has finished. The sender ignores late replies."
    assert [u.body for u in units(text, words)] == ["The sender ignores late replies."]
    # A code name in lower case starts a real sentence.
    assert [u.body for u in units("select_related follows foreign keys.", words)] == [
        "select_related follows foreign keys."
    ]


def test_a_sentence_referring_back_comes_with_the_sentence_before_it():
    text = "The server sends an update notification. This might be a part of the subscribed resource."
    found = units(text, words)
    assert found[1].lead == "The server sends an update notification."
    assert "\n\n".join(render([found[1]], 1)) == (
        "The server sends an update notification. [1] This might be a part of the subscribed resource. [1]"
    )
    assert "\n\n".join(render(found, 1)).count("update notification") == 1  # not quoted twice
    # Nothing to refer back to: not quoted.
    assert units("It might be a part of the subscribed resource.", words) == []


def test_a_flattened_type_declaration_is_not_a_statement():
    text = (
        'A notification that a resource changed. method: "x/updated" params: { uri: string } '
        "Type uri: string The URI of the resource. It may be a part of the resource subscribed to."
    )
    # The sentence after the declaration refers back to it, so it goes too.
    assert [u.body for u in units(text, words)] == []
    assert [u.body for u in units(text.replace("It may", "A part may"), words)] == [
        "A part may be a part of the resource subscribed to."
    ]


def test_a_list_without_lead_in_cites_each_item_and_nested_items_stay_whole():
    text = "1. Notifications MUST only name requests that:\n   - Were sent earlier\n   - Are running\n2. The hello request MUST NOT be cancelled"
    [unit] = units(text, words)
    answer = "\n\n".join(render([unit], 1))
    assert answer.splitlines() == [
        "1. Notifications MUST only name requests that [1]:",
        "   - Were sent earlier",
        "   - Are running",
        "2. The hello request MUST NOT be cancelled [1]",
    ]


def test_grounding_gives_list_items_the_citation_of_their_lead_in():
    answer = "The caller sends a notification that carries [2]:\n- The request ID\n- An optional reason"
    claims = [c for c in split_claims(answer) if c.kind == "sentence"]
    assert [(c.text, c.citations) for c in claims] == [
        ("The caller sends a notification that carries [2]:", [2]),
        ("The request ID", [2]),
        ("An optional reason", [2]),
    ]
    # Without a cited lead-in an item has no citation to inherit.
    plain = split_claims("Some sentence [1].\n\n- An item")
    assert plain[-1].citations == []


def test_cite_puts_the_marker_before_a_closing_colon_and_ends_sentences():
    assert cite("Do this:", 1) == "Do this [1]:"
    assert cite("A table row", 2) == "A table row. [2]"
    assert cite("Done.", 3) == "Done. [3]"


# ---------------------------------------------------------------------------------------------
# Properties over generated chunks

_WORDS = ["server", "client", "request", "token", "cache", "page", "field", "model", "reply", "queue"]


@dataclass
class Doc:
    text: str
    leads: dict[str, str]  # item text → the lead-in sentence of its list ("" when none)
    codes: list[str]


def _phrase(draw: st.DrawFn, tag: str) -> str:
    body = draw(st.lists(st.sampled_from(_WORDS), min_size=3, max_size=8))
    return " ".join([tag.capitalize(), *body])


@st.composite
def docs(draw: st.DrawFn) -> Doc:
    parts: list[str] = []
    leads: dict[str, str] = {}
    codes: list[str] = []
    counter = iter(range(10_000))

    def tag(kind: str) -> str:
        return f"{kind}{next(counter)}"

    if draw(st.booleans()):  # the chunk starts inside a sentence
        parts.append(_phrase(draw, tag("tail")).lower() + ". " + _phrase(draw, tag("s")) + ".")
    for _ in range(draw(st.integers(1, 5))):
        shape = draw(st.sampled_from(["prose", "lead+list", "list", "lead+code"]))
        sentences = [_phrase(draw, tag("s")) + "." for _ in range(draw(st.integers(0, 2)))]
        if shape == "prose":
            parts.append(" ".join(sentences or [_phrase(draw, tag("s")) + "."]))
        elif shape in ("lead+list", "list"):
            lead = _phrase(draw, tag("lead")) + ":" if shape == "lead+list" else ""
            if shape == "lead+list":
                parts.append(" ".join([*sentences, lead]))
            lines: list[str] = []
            ordered = draw(st.booleans())
            for n in range(draw(st.integers(1, 5))):
                item = _phrase(draw, tag("item"))
                nested = draw(st.integers(0, 2))
                marker = f"{n + 1}." if ordered else "-"
                lines.append(f"{marker} {item}{':' if nested else ''}")
                pad = " " * (len(marker) + 1)
                lines.extend(f"{pad}- {_phrase(draw, tag('sub'))}" for _ in range(nested))
                leads[item] = lead
            parts.append("\n".join(lines))
        elif shape == "lead+code":
            parts.append(" ".join([*sentences, _phrase(draw, tag("intro")) + ":"]))
            code = f"```\n{tag('code')} = {draw(st.integers(0, 99))}\n```"
            parts.append(code)
            codes.append(code)
    if draw(st.booleans()):  # the chunk ends on a sentence introducing what the next one holds
        parts.append(_phrase(draw, tag("s")) + ". " + _phrase(draw, tag("dangling")) + " by:")
    return Doc("\n\n".join(parts), leads, codes)


def _written(doc: Doc, chosen: list[Unit]) -> str:
    return "\n\n".join(render(chosen, 1))


@settings(max_examples=100, deadline=None)
@given(doc=docs(), data=st.data())
def test_every_choice_of_units_reads_as_whole_statements(doc: Doc, data: st.DataObject):
    found = units(doc.text, words, max_list_tokens=data.draw(st.sampled_from([10, 40, 400])))
    if not found:
        return
    picks = data.draw(st.lists(st.booleans(), min_size=len(found), max_size=len(found)))
    chosen = [u for u, keep in zip(found, picks, strict=True) if keep] or found[:1]
    answer = _written(doc, chosen)
    assert answer.strip()
    # Never ends mid-thought, never starts with the tail of a cut sentence.
    assert not answer.rstrip().endswith((":", ","))
    assert not answer.lstrip()[0].islower()
    assert "tail" not in answer.lower().split()[0]
    assert " by:" not in answer and " by [1]:" not in answer
    lines = answer.splitlines()
    for index, line in enumerate(lines):
        # Whatever ends in ":" is followed by what it introduces: list lines or a code block.
        if line.rstrip().endswith(":"):
            following = lines[index + 1] if index + 1 < len(lines) else ""
            if not following.strip():
                following = lines[index + 2] if index + 2 < len(lines) else ""
            assert re.match(r"\s*(?:[-*+]|\d+[.)])\s|```", following), (line, answer)
        # Every list item quoted comes after its own list's lead-in.
        item = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", line).removesuffix(" [1]").removesuffix(":")
        item = item.removesuffix(" [1]")
        if doc.leads.get(item):
            lead = doc.leads[item].removesuffix(":")
            assert lead in "\n".join(lines[:index]), (item, answer)
    # A code block is quoted whole, right after the sentence that introduces it.
    for code in doc.codes:
        if code.splitlines()[1] in answer:
            assert code in answer
            before = answer[: answer.index(code)].rstrip()
            assert before.endswith("[1]:")


@settings(max_examples=60, deadline=None)
@given(doc=docs())
def test_blocks_keep_every_line_of_a_chunk(doc: Doc):
    """Splitting into blocks loses nothing: lists keep their nested lines, code stays whole."""
    kept = "\n".join(b.text for b in blocks(doc.text))
    assert [line for line in kept.splitlines() if line.strip()] == [
        line for line in doc.text.splitlines() if line.strip()
    ]
