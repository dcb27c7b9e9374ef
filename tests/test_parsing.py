"""Parsing: raw files of every supported format become titled documents of atomic blocks."""

from __future__ import annotations

import re
import tarfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.models import Document, RawDocument, Section
from indexer.parsing import SUPPORTED_SUFFIXES, decode_text, detect_format, parse_document

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
SHARED_CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
NAVIGATION = re.compile(
    r"^(?:previous|next|up|home|index|modules|table of contents|browse|search|quick search|"
    r"download:?|last update:?|previous topic|next topic)$|you are here|"
    r"django \d\.\d+(?:\.\d+)? documentation|script text|previous: |next: ",
    re.IGNORECASE,
)


def parse_fixture(relative: str, **kwargs: str) -> Document:
    raw = RawDocument(path=relative, data=(CORPUS / relative).read_bytes(), **kwargs)
    document = parse_document(raw)
    assert document is not None, f"{relative} should parse"
    return document


def parse_text(path: str, text: str, content_type: str | None = None) -> Document:
    document = parse_document(RawDocument(path=path, data=text.encode("utf-8"), content_type=content_type))
    assert document is not None
    return document


def section(document: Document, *heading_path: str) -> Section:
    for candidate in document.sections:
        if candidate.heading_path == list(heading_path):
            return candidate
    paths = [s.heading_path for s in document.sections]
    raise AssertionError(f"no section {list(heading_path)} in {paths}")


def all_blocks(document: Document) -> list[str]:
    return [block for s in document.sections for block in s.blocks]


def full_text(document: Document) -> str:
    return "\n\n".join(all_blocks(document))


def assert_well_formed(document: Document) -> None:
    """Invariants every parsed document keeps, whatever its format."""
    assert document.title
    paths = [tuple(s.heading_path) for s in document.sections]
    assert len(paths) == len(set(paths)), "heading paths are unique within a document"
    for s in document.sections:
        assert s.blocks, "empty sections are dropped"
        assert all(block.strip() for block in s.blocks)
        assert not any("¶" in heading for heading in s.heading_path)
        for block in s.blocks:
            if block.startswith("```"):
                fence = re.match(r"`+", block)
                assert fence is not None
                assert block.rstrip().endswith(fence.group(0)), "code blocks stay whole"


# ---------------------------------------------------------------------------------------------
# Format detection and decoding
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a/guide.md", "markdown"),
        ("notes.markdown", "markdown"),
        ("spec/page.mdx", "mdx"),
        ("ref/api.rst", "rst"),
        ("README.txt", "text"),
        ("notes.text", "text"),
        ("ref/page.html", "html"),
        ("OLD/PAGE.HTM", "html"),
    ],
)
def test_supported_suffixes_pick_their_reader(path: str, expected: str) -> None:
    assert detect_format(RawDocument(path=path, data=b"Some words.\n")) == expected


def test_supported_suffixes_are_exactly_the_documented_ones() -> None:
    assert {".md", ".markdown", ".mdx", ".rst", ".txt", ".text", ".html", ".htm"} == SUPPORTED_SUFFIXES


@pytest.mark.parametrize(
    "path", ["static/site.css", "static/app.js", "fonts/a.woff2", "dist/docs.zip", "img/logo.svg", "x.py"]
)
def test_assets_and_source_files_are_skipped(path: str) -> None:
    raw = RawDocument(path=path, data=b"body { color: red }\n")
    assert detect_format(raw) is None
    assert parse_document(raw) is None


def test_binary_fixture_png_is_skipped() -> None:
    raw = RawDocument(path="assets/logo.png", data=(CORPUS / "assets" / "logo.png").read_bytes())
    assert parse_document(raw) is None


def test_nul_bytes_mark_a_file_as_binary_even_with_a_document_suffix() -> None:
    assert parse_document(RawDocument(path="guide.md", data=b"# Title\n\x00\x01\x02")) is None


def test_crawled_page_without_suffix_uses_the_announced_content_type() -> None:
    raw = RawDocument(
        path="/docs/intro/", data=b"<h1>Intro</h1><p>Hello.</p>", content_type="text/html; charset=utf-8"
    )
    assert detect_format(raw) == "html"
    assert detect_format(RawDocument(path="/logo", data=b"GIF89a", content_type="image/gif")) is None


def test_suffixless_file_is_sniffed() -> None:
    assert (
        detect_format(RawDocument(path="page", data=b"<!DOCTYPE html><html><body>x</body></html>")) == "html"
    )
    assert detect_format(RawDocument(path="README", data=b"# Lumen\n\nText.\n")) == "markdown"
    assert detect_format(RawDocument(path="LICENSE", data=b"Permission is granted.\n")) == "text"


def test_txt_written_in_restructuredtext_is_read_as_rst() -> None:
    source = b"Title\n=====\n\n.. note:: Sphinx projects write rST in .txt files.\n"
    assert detect_format(RawDocument(path="docs/topic.txt", data=source)) == "rst"


def test_decode_honours_byte_order_marks() -> None:
    assert decode_text(b"\xef\xbb\xbfcaf\xc3\xa9") == "café"
    assert decode_text("café".encode("utf-16")) == "café"


def test_utf16_with_bom_is_text_not_binary() -> None:
    raw = RawDocument(path="notes.txt", data="Notes\n\nWide text.\n".encode("utf-16"))
    document = parse_document(raw)
    assert document is not None
    assert document.title == "Notes"


def test_decode_uses_declared_and_meta_charsets() -> None:
    assert decode_text("Straße".encode("cp1252"), "windows-1252") == "Straße"
    html = b'<meta charset="iso-8859-7"><p>' + "αβγ".encode("iso-8859-7")
    assert decode_text(html).endswith("αβγ")


def test_a_latin1_label_does_not_override_valid_utf8() -> None:
    # Servers often announce ISO-8859-1 by default; valid UTF-8 bytes are the better evidence.
    assert decode_text("naïve".encode(), "iso-8859-1") == "naïve"


def test_decode_falls_back_to_cp1252_and_latin1() -> None:
    assert decode_text(b"caf\xe9 \x93quoted\x94") == "café \u201cquoted\u201d"
    assert decode_text(b"\x81\x8d") == "\x81\x8d"


def test_decode_ignores_unknown_and_non_text_charsets() -> None:
    assert decode_text(b"plain", "no-such-charset") == "plain"
    assert decode_text(b"plain", "base64") == "plain"


@given(st.binary(max_size=300), st.sampled_from([None, "utf-8", "latin-1", "bogus", "utf-16"]))
def test_decode_never_raises(data: bytes, charset: str | None) -> None:
    assert isinstance(decode_text(data, charset), str)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=400),
    st.sampled_from(["a.md", "a.mdx", "a.rst", "a.html", "a.txt"]),
)
def test_any_text_in_any_format_parses_into_a_well_formed_document(text: str, path: str) -> None:
    document = parse_document(RawDocument(path=path, data=text.replace("\x00", "").encode("utf-8")))
    assert document is not None
    assert_well_formed(document)


# ---------------------------------------------------------------------------------------------
# The fixture corpus
# ---------------------------------------------------------------------------------------------


def test_every_fixture_document_is_well_formed() -> None:
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file())
    parsed = {
        p.relative_to(CORPUS).as_posix(): parse_fixture(p.relative_to(CORPUS).as_posix())
        for p in files
        if p.suffix in SUPPORTED_SUFFIXES
    }
    assert "guides/advanced/caching.md" in parsed, "the nested folder is part of the fixture"
    for document in parsed.values():
        assert_well_formed(document)
    total_sections = sum(len(d.sections) for d in parsed.values())
    assert 15 <= total_sections <= 40, "the fixture stays small enough to embed in integration tests"


def test_markdown_front_matter_gives_the_title_and_is_not_content() -> None:
    document = parse_fixture("index.md", url="https://lumen.example/docs/")
    assert document.title == "Lumen documentation"
    assert document.url == "https://lumen.example/docs/"
    assert len(document.content_hash) == 64
    text = full_text(document)
    assert "title:" not in text
    assert "---" not in text
    intro = section(document, "Lumen documentation")
    assert intro.blocks[0] == "Lumen turns a folder of Markdown into a fast static website."


def test_markdown_code_blocks_are_fenced_whole_with_their_language() -> None:
    quick_start = section(parse_fixture("index.md"), "Lumen documentation", "Quick start")
    assert quick_start.anchor == "quick-start"
    code = [b for b in quick_start.blocks if b.startswith("```")]
    assert code == [
        "```python\nfrom lumen import build_site\n\n"
        'report = build_site("content/", output="public/", drafts=False)\n'
        "print(report.pages_written)\n```"
    ]
    assert "call build_site() from Python or run lumen build" in quick_start.blocks[0]


def test_markdown_tables_become_rows_of_cells() -> None:
    table = section(parse_fixture("index.md"), "Lumen documentation", "Command overview").blocks[0]
    assert table.splitlines()[0] == "Command | What it does | Typical use"
    assert "lumen clean | Deletes the output folder and the build cache | After upgrading Lumen" in table


def test_markdown_lists_stay_one_block() -> None:
    next_steps = section(parse_fixture("index.md"), "Lumen documentation", "Where to go next")
    assert next_steps.blocks == [
        "- Read the configuration guide for every setting, including LUMEN_CACHE_DIR.\n"
        "- Read the theme guide to change how pages look."
    ]


def test_markdown_without_front_matter_takes_the_h1_and_keeps_indented_code() -> None:
    document = parse_fixture("guides/advanced/caching.md")
    assert document.title == "Caching in depth"
    keyed = section(document, "Caching in depth", "How fragments are keyed")
    assert "```\nlumen cache stats\nlumen cache prune --older-than 30d\n```" in keyed.blocks
    remote = section(document, "Caching in depth", "Remote caches")
    # Raw HTML is read block by block, as an HTML page would be: the summary, then what it folds.
    assert remote.blocks[0] == "Sharing a cache between CI runners"
    assert remote.blocks[1].startswith("Mount the same directory")
    assert "<details>" not in full_text(document)


def test_markdown_inline_code_is_verbatim_and_emphasis_markers_are_dropped() -> None:
    document = parse_text(
        "a.md", "# T\n\nCall `__init__` and `select_related()` on **bold** [links](x.html).\n"
    )
    assert section(document, "T").blocks == ["Call __init__ and select_related() on bold links."]


def test_markdown_heading_anchors_are_github_slugs_made_unique() -> None:
    document = parse_text("a.md", "# Top\n\n## Trust & Safety!\n\nA.\n\n## Notes\n\nB.\n\n### Notes\n\nC.\n")
    assert section(document, "Top", "Trust & Safety!").anchor == "trust--safety"
    assert section(document, "Top", "Notes").anchor == "notes"
    assert section(document, "Top", "Notes", "Notes").anchor == "notes-1"


def test_content_before_the_first_heading_belongs_to_the_title() -> None:
    document = parse_text("intro.md", "Opening words.\n\n## Details\n\nMore.\n")
    assert document.title == "Details"
    assert document.sections[0].heading_path == ["Details"]
    assert document.sections[0].blocks == ["Opening words."]


def test_title_falls_back_to_the_file_stem() -> None:
    document = parse_text("docs/getting-started.md", "Just a paragraph.\n")
    assert document.title == "getting-started"
    assert document.sections == [Section(heading_path=["getting-started"], blocks=["Just a paragraph."])]


def test_sections_returning_to_an_earlier_heading_path_are_merged() -> None:
    # Tabs repeat headings; one section per heading path keeps chunk IDs distinct.
    source = "# Guide\n\n## Setup\n\nPython way.\n\n## Setup\n\nNode way.\n"
    document = parse_text("g.md", source)
    assert section(document, "Guide", "Setup").blocks == ["Python way.", "Node way."]


def test_code_containing_fences_gets_a_longer_fence() -> None:
    document = parse_text("f.md", "# F\n\n````markdown\n```python\nx = 1\n```\n````\n")
    assert section(document, "F").blocks == ["````markdown\n```python\nx = 1\n```\n````"]


# ---------------------------------------------------------------------------------------------
# MDX
# ---------------------------------------------------------------------------------------------


def test_mdx_drops_imports_exports_comments_and_expressions() -> None:
    document = parse_fixture("guides/themes.mdx")
    assert document.title == "Themes"
    text = full_text(document.model_copy(update={"sections": document.sections[:2]}))
    for leftover in ("import", "export", "@lumen/docs-kit", "prettier", "{/*", "defaultTheme", "Rendered by"):
        assert leftover not in text
    assert "{defaultTheme}" not in full_text(document)


def test_mdx_keeps_text_inside_components_but_not_the_tags() -> None:
    document = parse_fixture("guides/themes.mdx")
    text = full_text(document)
    assert "Themes never change your content." in section(document, "Themes").blocks[-1]
    assert "A template that raises an error stops the whole build" in text
    for tag in ("<Note>", "</Note>", "<Tabs>", "<Tab ", "<Screenshot", "/>", "<Warning"):
        assert tag not in text.replace('<Layout title="Home">', "").replace("</Layout>", "")


def test_mdx_component_titles_become_text() -> None:
    choosing = section(parse_fixture("guides/themes.mdx"), "Themes", "Choosing a theme")
    assert choosing.blocks == [
        "Set the theme name in lumen.toml or pass it on the command line:",
        "lumen.toml",
        '```toml\n[site]\ntheme = "ink"\n```',
        "Command line",
        "```bash\nlumen build --theme ink\n```",
    ]


def test_mdx_code_fences_are_left_untouched() -> None:
    own_theme = section(parse_fixture("guides/themes.mdx"), "Themes", "Writing your own theme")
    assert own_theme.blocks[-1] == (
        "```jsx\n// Fenced code is left alone, even when it holds components:\n"
        '<Layout title="Home">\n  {children}\n</Layout>\n```'
    )


def test_mdx_raw_html_is_read_block_by_block_like_an_html_page() -> None:
    """A generated API reference embedded as HTML: its paragraphs and lists stay apart."""
    source = (
        "# Schema\n\n### `SubscribeRequest`\n\n"
        '<div class="type">\n\n'
        '<div class="sig"><span>interface</span> <span>SubscribeRequest</span> &#x7B; uri: string }</div> '
        '<div class="comment"><p>Sent to ask for updates whenever a resource changes.</p></div> '
        "<section><span>uri: string</span><svg><use/></svg> <ul><li>The URI to watch. Any scheme works.</li>"
        '<li>Required.</li></ul><aside class="sources"><p>Overrides Request.params</p></aside></section> '
        '<section><div class="member-signature" id="m-reason"><span>reason?: string</span><a href="#m-reason"></a></div>'
        "<div><p>Why the client asks.</p></div></section>\n"
        "</div>\n\nPlain *Markdown* after it.\n"
    )
    blocks = section(parse_text("schema.mdx", source), "Schema", "SubscribeRequest").blocks
    assert blocks == [
        "interface SubscribeRequest { uri: string }",
        "Sent to ask for updates whenever a resource changes.",
        "uri: string",
        "- The URI to watch. Any scheme works.\n- Required.",
        # A member's anchored signature leads its description.
        "reason?: string: Why the client asks.",
        "Plain Markdown after it.",
    ]


def test_mdx_raw_html_continuing_a_list_item_stays_in_the_item() -> None:
    source = "# C\n\n- Run the job.\n\n  <div>Then <b>check</b> its log.</div>\n\n- Stop it.\n"
    assert section(parse_text("c.mdx", source), "C").blocks == [
        "- Run the job.\n  Then check its log.\n- Stop it."
    ]


def test_mdx_inline_code_mentioning_components_is_kept() -> None:
    document = parse_text("c.mdx", "# C\n\nUse `<Note>` or `<Card />` for asides.\n")
    assert section(document, "C").blocks == ["Use <Note> or <Card /> for asides."]


def test_mdx_multiline_self_closing_tags_and_fragments_disappear() -> None:
    source = '# C\n\n<Frame style={{ textAlign: "center" }}>\n  <img\n    src="/a.png"\n  />\n</Frame>\n\n<>\nText.\n</>\n'
    assert section(parse_text("c.mdx", source), "C").blocks == ["Text."]


def test_mdx_text_directly_after_a_tag_line_is_its_own_paragraph() -> None:
    source = '# C\n\n<Steps>\n<Step title="Open settings">\nClick the menu.\n</Step>\n</Steps>\n'
    assert section(parse_text("c.mdx", source), "C").blocks == ["Open settings", "Click the menu."]


# ---------------------------------------------------------------------------------------------
# reStructuredText
# ---------------------------------------------------------------------------------------------


def test_rst_title_sections_and_docutils_ids() -> None:
    document = parse_fixture("guides/configuration.rst")
    assert document.title == "Configuration"
    assert [s.heading_path for s in document.sections] == [
        ["Configuration"],
        ["Configuration", "Project settings"],
        ["Configuration", "Build cache"],
        ["Configuration", "Build cache", "LUMEN_CACHE_DIR"],
        ["Configuration", "Drafts and scheduling"],
    ]
    assert section(document, "Configuration", "Build cache").anchor == "build-cache"
    assert "Contents" not in full_text(document), "the local table of contents is navigation"


def test_rst_sphinx_code_block_with_unknown_options_is_kept_as_code() -> None:
    project = section(parse_fixture("guides/configuration.rst"), "Configuration", "Project settings")
    assert project.blocks[1] == (
        '```toml\n[project]\nname = "Field notes"\nbase_url = "https://notes.example.org/"\nlanguage = "en"\n```'
    )
    assert (
        project.blocks[2]
        == "New in version 2.1. The language key sets the lang attribute of every generated page."
    )


def test_rst_unknown_directives_and_roles_keep_their_text() -> None:
    document = parse_fixture("guides/configuration.rst")
    cache = section(document, "Configuration", "Build cache")
    assert (
        "Keep the cache out of version control by adding .lumen-cache/ to your ignore file." in cache.blocks
    )
    setting = section(document, "Configuration", "Build cache", "LUMEN_CACHE_DIR")
    assert setting.blocks[0] == "LUMEN_CACHE_DIR"
    assert "run lumen clean when templates change" in setting.blocks[1]
    drafts = section(document, "Configuration", "Drafts and scheduling")
    assert "skipped unless build_site is called with drafts=True" in drafts.blocks[0]
    assert drafts.blocks[1] == "```\nlumen build --drafts --until 2030-01-01\n```"


def test_rst_never_reads_files_or_emits_raw_html() -> None:
    source = "Title\n=====\n\n.. include:: /etc/hostname\n\n.. raw:: html\n\n   <b>raw</b>\n\nBody text.\n"
    document = parse_text("r.rst", source)
    assert all_blocks(document) == ["Body text."]


def test_rst_python_objects_nest_under_their_class() -> None:
    source = (
        "API\n===\n\nFunctions\n---------\n\n"
        ".. class:: Site(root)\n\n   A site.\n\n   .. method:: render(page)\n\n      Render one page.\n"
    )
    document = parse_text("api.rst", source)
    assert section(document, "API", "Functions", "Site").blocks == ["Site(root)", "A site."]
    assert section(document, "API", "Functions", "Site", "render").blocks == [
        "render(page)",
        "Render one page.",
    ]


def test_rst_broken_markup_still_yields_text() -> None:
    source = "Title\n=====\n\n.. code-block::\n\n*unclosed emphasis and `bad role\n\n.. [#broken\n"
    document = parse_text("bad.rst", source)
    assert document.title == "Title"
    assert "unclosed emphasis" in full_text(document)


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------


def test_html_keeps_main_content_only() -> None:
    document = parse_fixture("reference/api.html")
    assert document.title == "Python API"
    for block in all_blocks(document):
        assert not NAVIGATION.search(block), block
        for chrome in ("Search the docs", "Table of contents", "Lumen docs home", "forum", "font-family"):
            assert chrome not in block


def test_html_api_entries_become_sub_headings_with_their_ids() -> None:
    document = parse_fixture("reference/api.html")
    assert [s.heading_path for s in document.sections] == [
        ["Python API"],
        ["Python API", "Functions", "lumen.build_site"],
        ["Python API", "Classes", "lumen.BuildReport"],
        ["Python API", "Errors"],
    ]
    assert document.sections[0].anchor == "python-api"
    build_site = section(document, "Python API", "Functions", "lumen.build_site")
    assert build_site.anchor == "lumen.build_site"
    assert build_site.blocks[0] == "lumen.build_site(source, output='public/', drafts=False, jobs=None)"
    assert build_site.blocks[-1] == (
        '```python\nreport = build_site("content/", jobs=2)\nif report.failed:\n    raise SystemExit(1)\n```'
    )


def test_html_tables_admonitions_and_lists_render_as_text() -> None:
    document = parse_fixture("reference/api.html")
    report = section(document, "Python API", "Classes", "lumen.BuildReport")
    assert report.blocks[-1].splitlines() == [
        "Attribute | Type | Meaning",
        "pages_written | int | Pages rendered in this build",
        "pages_skipped | int | Pages copied from the cache",
        "failed | bool | True when any page raised an error",
    ]
    errors = section(document, "Python API", "Errors")
    assert errors.anchor == "errors"
    assert errors.blocks == [
        "Warning: Template errors are raised as lumen.TemplateError after the build stops; "
        "pages already written stay on disk.",
        "- TemplateError: a template could not be rendered.\n- ConfigError: lumen.toml is missing or invalid.",
    ]


def test_html_title_falls_back_to_the_title_element_without_site_suffix() -> None:
    page = (
        "<html><head><title>Field types | Lumen documentation</title></head><body><p>Text.</p></body></html>"
    )
    assert parse_text("p.html", page).title == "Field types"
    page = "<html><head><title>Overview — Lumen 2.3 documentation</title></head><body><p>x</p></body></html>"
    assert parse_text("p.html", page).title == "Overview"


def test_html_without_landmarks_drops_sphinx_chrome_from_the_body() -> None:
    page = (
        '<body><div id="hd"><h1>Site name</h1></div><div class="sphinxsidebar"><h3>Navigation</h3></div>'
        '<div class="section" id="intro"><h1>Intro</h1><p>Real   text\n here.</p>'
        '<pre>  indented\n\tcode</pre></div><div id="ft">Next</div></body>'
    )
    document = parse_text("p.html", page)
    assert document.title == "Intro"
    assert document.sections == [
        Section(
            heading_path=["Intro"], anchor="intro", blocks=["Real text here.", "```\n  indented\n\tcode\n```"]
        )
    ]


def test_html_article_header_keeps_its_h1_while_page_chrome_goes() -> None:
    page = (
        "<body><nav>Docs home</nav><article><header><h1>Deploying</h1></header>"
        '<p>Copy the output folder.</p><aside class="toc">On this page</aside></article>'
        "<footer>Previous | Next</footer></body>"
    )
    document = parse_text("p.html", page)
    assert document.title == "Deploying"
    assert all_blocks(document) == ["Copy the output folder."]


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["a.md", "a.mdx", "a.rst", "a.html", "a.txt", "page"]))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes, path: str) -> None:
    document = parse_document(RawDocument(path=path, data=data))
    if b"\x00" in data and not data.startswith(
        (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
    ):
        assert document is None, "NUL bytes without a byte-order mark mean binary"
    elif document is not None:
        assert_well_formed(document)


def test_html_block_wrapped_in_inline_element_is_still_structured() -> None:
    page = '<main><h1>Cards</h1><a href="x"><h2>Card title</h2><p>Card text.</p></a></main>'
    assert section(parse_text("p.html", page), "Cards", "Card title").blocks == ["Card text."]


# ---------------------------------------------------------------------------------------------
# Plain text and encodings
# ---------------------------------------------------------------------------------------------


def test_text_underlined_headings_become_sections() -> None:
    document = parse_fixture("changelog.txt")
    assert document.title == "Lumen changelog"
    assert [s.heading_path for s in document.sections] == [
        ["Lumen changelog"],
        ["Lumen changelog", "2.3.0"],
        ["Lumen changelog", "2.2.0"],
    ]
    assert section(document, "Lumen changelog", "2.2.0").blocks[-1] == "```\nlumen clean --cache-only\n```"


def test_text_title_needs_a_short_line_without_a_full_stop() -> None:
    document = parse_text("notes.txt", "This first line is a sentence.\n\nSecond paragraph.\n")
    assert document.title == "notes"
    assert document.sections[0].blocks == ["This first line is a sentence.", "Second paragraph."]


def test_latin1_file_decodes_without_mojibake() -> None:
    document = parse_fixture("legacy/faq-latin1.txt")
    assert document.title == "Frequently asked questions"
    text = full_text(document)
    assert "café-crème/index.html" in text
    assert "naïve, Zürich and señor" in text
    assert "« like this file »" in text
    assert "\ufffd" not in text


# ---------------------------------------------------------------------------------------------
# Real documentation (../shared/corpora)
# ---------------------------------------------------------------------------------------------

DJANGO_PAGES = (
    "ref/models/fields.html",
    "topics/db/queries.html",
    "intro/tutorial01.html",
    "index.html",
    "genindex.html",
)
MCP_PAGES = (
    "specification/2025-06-18/index.mdx",
    "docs/2025-06-18/develop/build-server.mdx",
    "docs/2025-06-18/develop/connect-local-servers.mdx",
)


def extract(archive: str, destination: Path, wanted: tuple[str, ...] | None) -> Path:
    """Unpack the wanted members (all when None) and return the archive's top folder."""
    path = SHARED_CORPORA / archive
    if not path.is_file():
        pytest.skip(f"shared corpus {path} is absent")
    with tarfile.open(path) as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.isfile() and (wanted is None or any(m.name.endswith("/" + w) for w in wanted))
        ]
        tar.extractall(destination, members=members, filter="data")
    [top] = {Path(m.name).parts[0] for m in members}
    return destination / top


def parse_file(root: Path, relative: str) -> Document:
    document = parse_document(RawDocument(path=relative, data=(root / relative).read_bytes()))
    assert document is not None
    assert_well_formed(document)
    return document


@pytest.mark.corpus
def test_django_reference_pages_have_clean_titles_and_heading_paths(tmp_path: Path) -> None:
    root = extract("django-3.2-docs-html.tar.gz", tmp_path, DJANGO_PAGES)
    fields = parse_file(root, "ref/models/fields.html")
    assert fields.title == "Model field reference"
    date_field = section(fields, "Model field reference", "Field types", "DateField")
    assert date_field.anchor == "datefield"
    assert date_field.blocks[0] == "class DateField(auto_now=False, auto_now_add=False, **options)"
    auto_now = section(fields, "Model field reference", "Field types", "DateField", "DateField.auto_now")
    assert auto_now.anchor == "django.db.models.DateField.auto_now"
    assert any("select_related" in b for b in all_blocks(parse_file(root, "topics/db/queries.html")))

    tutorial = parse_file(root, "intro/tutorial01.html")
    assert tutorial.title == "Writing your first Django app, part 1"
    assert "```console\n$ python -m django --version\n```" in all_blocks(tutorial)
    assert ["Writing your first Django app, part 1", "Creating a project"] in [
        s.heading_path for s in tutorial.sections
    ]
    assert parse_file(root, "index.html").title == "Django documentation"
    assert parse_file(root, "genindex.html").title == "Index"


@pytest.mark.corpus
def test_django_pages_carry_no_navigation_text(tmp_path: Path) -> None:
    root = extract("django-3.2-docs-html.tar.gz", tmp_path, DJANGO_PAGES)
    for relative in DJANGO_PAGES:
        document = parse_file(root, relative)
        for s in document.sections:
            assert not any(NAVIGATION.search(h) for h in s.heading_path[1:]), s.heading_path
            for block in s.blocks:
                assert not NAVIGATION.search(block), (relative, block[:200])


@pytest.mark.corpus
def test_all_django_pages_parse_quickly(tmp_path: Path) -> None:
    root = extract("django-3.2-docs-html.tar.gz", tmp_path, None)
    raws = [
        RawDocument(path=p.relative_to(root).as_posix(), data=p.read_bytes())
        for p in sorted(root.rglob("*.html"))
    ]
    started = time.perf_counter()
    documents = [parse_document(raw) for raw in raws]
    elapsed = time.perf_counter() - started
    assert len(documents) > 500
    assert all(d is not None and d.title for d in documents)
    assert elapsed < 30, f"{len(raws)} pages took {elapsed:.1f}s"


@pytest.mark.corpus
def test_mcp_mdx_pages_lose_their_jsx_and_keep_their_code(tmp_path: Path) -> None:
    root = extract("mcp-spec-docs-md.tar.gz", tmp_path, MCP_PAGES)
    spec = parse_file(root, "specification/2025-06-18/index.mdx")
    assert spec.title == "Specification"
    assert section(spec, "Specification", "Key Details", "Base Protocol").anchor == "base-protocol"

    server = parse_file(root, "docs/2025-06-18/develop/build-server.mdx")
    assert server.title == "Build an MCP server"
    environment = section(server, "Build an MCP server", "Set up your environment")
    assert "```bash\ncurl -LsSf https://astral.sh/uv/install.sh | sh\n```" in environment.blocks
    for relative in MCP_PAGES:
        text = full_text(parse_file(root, relative))
        prose = "\n".join(b for b in text.split("\n\n") if not b.startswith("```"))
        assert not re.search(r"</?(?:Tabs?|Note|CodeGroup|Frame|Steps?|Card|CardGroup)\b", prose)
        assert "enable-section-numbers" not in text
