"""Whole pages from their chunks, chunk parts, code labels and live URLs, over a real index."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from indexer.chunking import chunk_document, code_languages
from indexer.embedding import Embedder
from indexer.models import Document, Section
from indexer.settings import ChunkingSettings
from server.errors import InvalidCursor, UnknownPage
from server.mcp.gateway import CallRecord
from server.mcp.resources import PageReader, page_request
from server.retrieval import pages
from server.retrieval.links import web_path
from server.retrieval.service import Access, DocService
from server.security.guards import InvalidArgument
from tests.conftest import open_service
from tests.versioned_fixture import BASE_URL, PAGES

EVERYONE = Access(tenant="t", allowed=lambda name: True)
NOBODY = Access(tenant="n", allowed=lambda name: False)


@pytest.fixture(scope="module")
def service(shop_data_dir: Path, model_dir: Path, embedder: Embedder) -> DocService:
    return open_service(shop_data_dir, model_dir, embedder)


@pytest.fixture(scope="module")
def reader(service: DocService, embedder: Embedder) -> PageReader:
    return PageReader(service.catalog, embedder, b"k" * 32)


def read(reader: PageReader, source: str, access: Access = EVERYONE, **options):
    request = page_request(
        source,
        options.get("section"),
        options.get("max_tokens", 4000),
        options.get("cursor"),
        options.get("collection"),
    )
    return reader.read(access, request, CallRecord())


def _size(embedder: Embedder, result) -> int:
    return embedder.count_tokens(json.dumps(result.model_dump(mode="json"), ensure_ascii=False))


# ---------------------------------------------------------------- chunk parts


def _count(text: str) -> int:
    return len(text.split())


def test_merged_small_sections_keep_their_own_heading_and_anchor():
    document = Document(
        path="p.md",
        title="Page",
        sections=[
            Section(heading_path=["Page", "Tiny"], anchor="tiny", blocks=["Two words."]),
            Section(heading_path=["Page", "Next"], anchor="next", blocks=["Body of the next section " * 5]),
        ],
    )
    settings = ChunkingSettings(target_tokens=200, max_tokens=240, min_tokens=20, overlap_tokens=0)
    [chunk] = chunk_document(document, collection="c", version="1", settings=settings, count_tokens=_count)
    assert [p.anchor for p in chunk.parts] == ["tiny", "next"]
    second = chunk.parts[1]
    assert chunk.text[second.start : second.body_start].strip() == "Next"
    assert chunk.text[second.body_start :].startswith("Body of the next section")
    assert chunk.part_at(second.body_start + 3).heading_path == ["Page", "Next"]
    assert chunk.part_at(0).heading_path == ["Page", "Tiny"]


def test_continuation_of_a_merged_section_is_labelled_with_that_section():
    long_body = [f"Sentence number {n} of the long section goes on for a while." for n in range(40)]
    document = Document(
        path="p.md",
        title="Page",
        sections=[
            Section(heading_path=["Page", "Tiny"], anchor="tiny", blocks=["Two words."]),
            Section(heading_path=["Page", "Long"], anchor="long", blocks=long_body),
        ],
    )
    settings = ChunkingSettings(target_tokens=80, max_tokens=120, min_tokens=20, overlap_tokens=12)
    chunks = chunk_document(document, collection="c", version="1", settings=settings, count_tokens=_count)
    assert len(chunks) > 2
    assert chunks[0].heading_path == ["Page", "Tiny"]
    assert all(c.heading_path == ["Page", "Long"] and c.anchor == "long" for c in chunks[1:])
    for previous, chunk in itertools.pairwise(chunks):
        # The repeated tail is recorded, so a page says it once.
        assert chunk.overlap_chars > 0
        assert previous.text.endswith(chunk.text[: chunk.overlap_chars].rstrip())


def test_code_languages_come_from_fences_and_ignore_fences_inside_code():
    text = "Intro\n\n```python\nx = 1\n```\n\n````md\n```js\nnot a block\n```\n````\n\n```\nplain\n```"
    assert code_languages(text) == ["python", "md", ""]
    assert code_languages("no code here") == []


@pytest.mark.parametrize(
    ("path", "served"),
    [
        ("guides/setup.md", "guides/setup"),
        ("guides/index.mdx", "guides/"),
        ("index.rst", ""),
        ("ref/models/fields.html", "ref/models/fields.html"),
        ("notes.TXT", "notes"),
    ],
)
def test_web_paths_drop_source_suffixes_and_keep_html(path, served):
    assert web_path(path) == served


# ---------------------------------------------------------------- hits


def test_hits_carry_live_url_code_flags_and_the_label_of_their_part(service):
    hits = service.search(EVERYONE, "pip install shop", version="2.0", k=5).result.hits
    guide = next(h for h in hits if "install" in h.snippet.lower())
    assert guide.url is not None and guide.url.startswith(BASE_URL + "v2.0/guide#")
    coupons = service.search(EVERYONE, "expired coupons raise CouponExpired", version="2.0", k=3).result.hits[
        0
    ]
    assert coupons.heading_path[-1] == "Coupons"
    assert coupons.source == "v2.0/guide.md#coupons"
    assert coupons.url == BASE_URL + "v2.0/guide#coupons"


def test_a_hit_from_a_merged_part_names_that_part(service):
    # "Refunds" is merged into the chunk that starts with "Coupons": the hit on refund text must say Refunds.
    hit = service.search(EVERYONE, "refund rule original payment method", version="2.0", k=3).result.hits[0]
    assert hit.heading_path[-1] == "Refunds"
    assert hit.source.endswith("#refunds") and hit.url == BASE_URL + "v2.0/guide#refunds"


def test_code_only_search_returns_only_passages_with_code(service):
    every = service.search(EVERYONE, "checkout cart receipt total", version="2.0", k=10).result.hits
    assert any(not h.has_code for h in every)
    hits = service.search(
        EVERYONE, "checkout cart receipt total", version="2.0", k=10, code_only=True
    ).result.hits
    assert hits and all(h.has_code and h.code_languages == ["python"] for h in hits)


# ---------------------------------------------------------------- read_page


def test_a_page_reads_in_order_with_headings_code_and_toc(reader):
    result, size = read(reader, "v2.0/guide.md")
    text = result.text
    order = ["# Shop guide", "## Install", "## Checkout", "```python", "### Coupons", "## Refunds"]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert "receipt = checkout_cart(cart, *, coupons=())\nprint(receipt.total)\n```" in text
    assert text.count("Refund rule 6") == 1 and text.count("Step 8 of the checkout") == 1
    assert [(e.heading, e.level, e.anchor) for e in result.toc] == [
        ("Install", 2, "install"),
        ("Checkout", 2, "checkout"),
        ("Coupons", 3, "coupons"),
        ("Refunds", 2, "refunds"),
    ]
    assert result.version == "2.0" and result.url == BASE_URL + "v2.0/guide"
    assert result.uri == "docgate://shop/2.0/v2.0/guide.md"
    assert result.has_code and result.code_languages == ["python"]
    assert not result.truncated and result.next_cursor is None
    assert size == _size(reader.embedder, result)


def test_a_page_keeps_every_sentence_of_its_source_once(reader):
    text = read(reader, "v1.0/guide.md")[0].text
    for line in PAGES["v1.0/guide.md"].splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert line in text, line


@pytest.mark.parametrize(
    ("source", "section"),
    [
        ("v2.0/guide.md", "coupons"),
        ("v2.0/guide.md", "Coupons"),
        ("v2.0/guide.md", "Checkout › Coupons"),
        ("v2.0/guide.md#coupons", None),
        (BASE_URL + "v2.0/guide#coupons", None),
        ("docgate://shop/2.0/v2.0/guide.md#coupons", None),
    ],
)
def test_a_section_is_found_by_anchor_heading_path_url_or_uri(reader, source, section):
    result, _ = read(reader, source, section=section)
    assert result.section == ["Shop guide", "Checkout", "Coupons"]
    assert result.text.startswith("### Coupons")
    assert "Refund rule" not in result.text and "Step 1" not in result.text
    assert result.url == BASE_URL + "v2.0/guide#coupons"


def test_a_parent_section_includes_its_subsections(reader):
    result, _ = read(reader, "v2.0/guide.md", section="checkout")
    assert "### Coupons" in result.text and "```python" in result.text and "Refund" not in result.text


@pytest.mark.parametrize("budget", [450, 483, 517, 583, 650])
def test_the_cursor_walks_the_whole_page_within_max_tokens(reader, embedder, budget):
    whole = read(reader, "v2.0/guide.md")[0].text
    pieces, cursor, calls = [], None, 0
    while True:
        result, size = read(reader, "v2.0/guide.md", max_tokens=budget, cursor=cursor)
        assert size <= budget and _size(embedder, result) == size
        assert (result.toc != []) == (cursor is None)
        pieces.append(result.text)
        cursor, calls = result.next_cursor, calls + 1
        if cursor is None:
            break
        assert result.truncated
    assert calls > 1
    # Nothing lost, nothing repeated; a block too long for one response continues in the next,
    # cut between words (never "pricing" | ", taxes").
    assert " ".join(" ".join(pieces).split()) == " ".join(whole.split())


def test_a_cursor_is_bound_to_its_page_and_section(reader):
    first, _ = read(reader, "v2.0/guide.md", max_tokens=450)
    assert first.next_cursor
    with pytest.raises(InvalidCursor):
        read(reader, "v1.0/guide.md", max_tokens=450, cursor=first.next_cursor)
    with pytest.raises(InvalidCursor):
        read(reader, "v2.0/guide.md", max_tokens=450, cursor=first.next_cursor, section="checkout")
    with pytest.raises(InvalidCursor):
        read(reader, "v2.0/guide.md", max_tokens=450, cursor=first.next_cursor[:-3] + "AAA")


def test_another_tenants_page_answers_exactly_like_an_unknown_page(reader):
    with pytest.raises(UnknownPage) as hidden:
        read(reader, "v2.0/guide.md", NOBODY)
    with pytest.raises(UnknownPage) as missing:
        read(reader, "v2.0/nothing.md", NOBODY)
    assert str(hidden.value).replace("v2.0/guide.md", "X") == str(missing.value).replace(
        "v2.0/nothing.md", "X"
    )
    record = CallRecord()
    with pytest.raises(UnknownPage):
        reader.read(NOBODY, page_request("v2.0/guide.md", None, 4000, None, None), record)
    assert record.denied_reason == "page_not_granted"


@pytest.mark.parametrize(
    ("source", "options", "fragment"),
    [
        ("v2.0/guide.md", {"section": "no such heading"}, "is not a heading of this page"),
        ("v2.0/guide.md", {"max_tokens": 120}, "too small"),
        ("", {}, "source"),
        ("docgate://shop", {}, "not a page URI"),
        ("v2.0/guide.md", {"collection": "../etc"}, "collection"),
        ("v2.0/guide.md", {"max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_page_arguments_are_invalid_arguments(reader, source, options, fragment):
    with pytest.raises(InvalidArgument, match=fragment):
        read(reader, source, **options)


def test_a_uri_may_name_latest_or_a_range_for_its_version(reader):
    assert read(reader, "docgate://shop/latest/v2.0/guide.md")[0].version == "2.0"
    assert read(reader, "docgate://shop/2.x/v2.0/guide.md")[0].version == "2.0"
    with pytest.raises(UnknownPage):
        read(reader, "docgate://shop/1.0/v2.0/guide.md")


@pytest.mark.parametrize("source", ["v2.0/guide.md#shop-guide", "v2.0/guide.md#figure-3"])
def test_an_anchor_of_the_title_or_of_no_heading_reads_the_whole_page(reader, source):
    result, _ = read(reader, source)
    assert result.section is None and result.text.startswith("# Shop guide") and "## Refunds" in result.text


def test_code_only_on_an_index_without_code_labels_says_to_refresh_it(
    shop_data_dir, model_dir, embedder, tmp_path
):
    import shutil

    from indexer import generations as gens
    from server.errors import IndexUnavailable

    data_dir = tmp_path / "data"
    shutil.copytree(shop_data_dir, data_dir)
    gen_dir = gens.generation_dir(data_dir / "collections", "shop", 1)
    manifest = gens.read_manifest(gen_dir)
    old = {k: v for k, v in manifest.chunking.items() if k != "labels"}
    gens.write_manifest(gen_dir, manifest.model_copy(update={"chunking": old}))
    service = open_service(data_dir, model_dir, embedder)
    with pytest.raises(IndexUnavailable, match="indexed before code labels"):
        service.search(EVERYONE, "checkout", code_only=True)
    assert service.search(EVERYONE, "checkout").result.hits  # everything else still works


def test_a_block_cut_inside_a_line_is_cut_between_words():
    # The tokenizer may end a cut right before punctuation ("pricing" | ", taxes"); the next page
    # would then start with ", taxes" and the words around the cut could not be joined back.
    block = "Step 7 walks the cart through pricing, taxes and stock checks before payment."
    cut_before_comma = block.index(",")

    def count_batch(texts: list[str]) -> list[int]:
        return [10_000 for _ in texts]  # the one line never fits: the cut falls inside it

    def truncate(text: str, _budget: int) -> str:
        return text[:cut_before_comma]

    end = pages._cut_block(block, 50, count_batch, truncate)
    assert block[:end].rstrip().endswith("through") and block[end:].startswith("pricing,")
    # A single word longer than the budget is still cut, rather than nothing being returned.
    assert pages._at_word("abcdefgh", 0, 4) == 4
