"""Raw bytes → `Document`: a title and sections of atomic blocks, for Markdown, MDX, rST, HTML and text.

`parse_document()` is the one entry point. Each format has a private reader that walks its syntax
tree and feeds an `_Outline`, which turns a stream of headings and blocks into sections keyed by
heading path. Blocks are what the chunker packs: paragraphs, whole lists, tables as `a | b` rows and
fenced code blocks; a code block is never split across blocks.
"""

from __future__ import annotations

import codecs
import io
import re
import textwrap
from collections.abc import Callable, Iterable
from pathlib import PurePosixPath
from typing import Any, Literal, Protocol

import structlog
from docutils import nodes as du
from docutils.core import publish_doctree
from docutils.parsers.rst import Directive, directives, roles
from docutils.parsers.rst.languages import en as rst_en
from docutils.utils import unescape
from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode
from selectolax.lexbor import LexborHTMLParser

from indexer.models import Document, RawDocument, Section

log = structlog.get_logger(__name__)

Format = Literal["markdown", "mdx", "rst", "html", "text"]

# Bump when parsing output changes: `update` then re-parses every document instead of reusing chunks.
PARSER_VERSION = "1"

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {".md", ".markdown", ".mdx", ".rst", ".txt", ".text", ".html", ".htm"}
)

_SUFFIX_FORMATS: dict[str, Format] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "mdx",
    ".rst": "rst",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
}

_MIME_FORMATS: dict[str, Format] = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/mdx": "mdx",
    "text/x-rst": "rst",
    "text/prs.fallenstein.rst": "rst",
    "text/plain": "text",
}

_SNIFF_BYTES = 8192
_MAX_LABEL = 120

# --------------------------------------------------------------------------------------------
# Format detection and decoding
# --------------------------------------------------------------------------------------------

_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its little-endian BOM starts with the UTF-16 one.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Labels that servers and generators emit as a default rather than a claim about the bytes: when
# the data is valid UTF-8 these are almost always wrong, so they never override UTF-8.
_WEAK_CHARSETS = frozenset({"ascii", "latin-1", "iso8859-1", "iso8859-15", "cp1252"})

_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""<\?xml[^>]{0,200}?encoding\s*=\s*["']([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_CHARSET_PARAM = re.compile(r"charset\s*=\s*[\"']?([^\s;\"']+)", re.IGNORECASE)


def _codec_name(label: str | None) -> str | None:
    """The Python codec for a charset label, or None when unknown or not a text encoding."""
    if not label:
        return None
    try:
        info = codecs.lookup(label.strip())
    except LookupError:
        return None
    # codecs.lookup also knows bytes-to-bytes codecs such as base64; those are not charsets.
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def _has_bom(data: bytes) -> bool:
    return any(data.startswith(bom) for bom, _ in _BOMS)


def decode_text(data: bytes, declared_charset: str | None = None) -> str:
    """Decode document bytes to text; never raises.

    Order: byte-order mark, declared charset (HTTP header), `<meta>`/XML charset, UTF-8, then
    cp1252 and finally latin-1 (which accepts any byte).
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    head = data[:4096]
    meta = _META_CHARSET.search(head) or _XML_ENCODING.search(head)
    labels = [declared_charset, meta.group(1).decode("ascii", "replace") if meta else None]
    utf8_ok: bool | None = None
    for label in labels:
        codec = _codec_name(label)
        if codec is None:
            continue
        if codec in _WEAK_CHARSETS:
            if utf8_ok is None:
                utf8_ok = _is_utf8(data)
            if utf8_ok:
                break
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    for codec in ("utf-8", "cp1252"):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1", errors="replace")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _charset_of(content_type: str | None) -> str | None:
    if not content_type:
        return None
    match = _CHARSET_PARAM.search(content_type)
    return match.group(1) if match else None


def _mime_of(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _looks_binary(data: bytes) -> bool:
    # UTF-16/32 text is full of NUL bytes but announces itself with a BOM.
    return not _has_bom(data) and b"\x00" in data[:_SNIFF_BYTES]


_RST_MARKERS = re.compile(r"^\.\. (?:[\w:-]+::|_[^:\n]+:)", re.MULTILINE)
_MD_MARKERS = re.compile(r"^(?:#{1,6} \S|```|~~~)", re.MULTILINE)


def _sniff(head: str) -> Format:
    start = head.lstrip().lower()
    if start.startswith(("<!doctype html", "<html")) or "<body" in start[:2048]:
        return "html"
    if _MD_MARKERS.search(head):
        return "markdown"
    if _RST_MARKERS.search(head):
        return "rst"
    return "text"


def detect_format(raw: RawDocument) -> Format | None:
    """Which reader handles this file: by suffix, then content type, then sniffing. None = skip.

    A file with a suffix we do not read (images, CSS, JS, fonts, archives, source code) and no
    announced document type is skipped, as is anything with NUL bytes (binary).
    """
    if _looks_binary(raw.data):
        return None
    suffix = PurePosixPath(raw.path.rstrip("/")).suffix.lower()
    fmt = _SUFFIX_FORMATS.get(suffix)
    if fmt is not None:
        # Sphinx projects (Django among them) write reStructuredText in .txt files.
        if fmt == "text" and _RST_MARKERS.search(decode_text(raw.data[:_SNIFF_BYTES])):
            return "rst"
        return fmt
    mime = _mime_of(raw.content_type)
    if mime in _MIME_FORMATS:
        return _MIME_FORMATS[mime]
    if suffix or mime:
        return None
    return _sniff(decode_text(raw.data[:_SNIFF_BYTES]))


def parse_document(raw: RawDocument) -> Document | None:
    """Parse one raw file or page; None when it is not documentation."""
    fmt = detect_format(raw)
    if fmt is None:
        log.debug("parse.skipped", path=raw.path, content_type=raw.content_type)
        return None
    text = decode_text(raw.data, _charset_of(raw.content_type))
    stem = _stem(raw.path)
    title, sections = _READERS[fmt](text, stem)
    return Document(path=raw.path, title=title, sections=sections, url=raw.url, content_hash=raw.content_hash)


def _stem(path: str) -> str:
    name = PurePosixPath(path.rstrip("/")).stem
    return name or path or "untitled"


# --------------------------------------------------------------------------------------------
# Shared text helpers and the outline that turns headings + blocks into sections
# --------------------------------------------------------------------------------------------

_PERMALINK_GLYPHS = re.compile(r"[¶§🔗⚓]")
_TRAILING_HASH = re.compile(r"\s+#$")
_LIST_START = re.compile(r"^(?:[-*+•] |\d+[.)] )")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _norm(text: str) -> str:
    """Collapse runs of whitespace (including newlines and NBSP) into single spaces."""
    return " ".join(text.split())


def _clean_heading(text: str) -> str:
    text = _norm(_PERMALINK_GLYPHS.sub("", text))
    return _TRAILING_HASH.sub("", text).strip()


def _fence(code: str, language: str = "") -> str:
    """A fenced code block; the fence grows when the code itself contains ```."""
    code = code.rstrip()
    while code.startswith("\n"):
        code = code[1:]
    fence = "```"
    while fence in code:
        fence += "`"
    return f"{fence}{language}\n{code}\n{fence}"


def _join_prefix(prefix: str, text: str) -> str:
    if _LIST_START.match(text):
        return f"{prefix}\n{text}"
    if prefix.endswith((":", ".", "!", "?")):
        return f"{prefix} {text}"
    return f"{prefix}: {text}"


def _format_list(items: Iterable[list[str]], ordered: bool, start: int = 1) -> str:
    """Render list items (each a list of blocks) as one block with markers and indentation."""
    lines: list[str] = []
    number = start
    for blocks in items:
        if not blocks:
            continue
        marker = f"{number}." if ordered else "-"
        number += 1
        pad = " " * (len(marker) + 1)
        first, *rest = "\n".join(blocks).split("\n")
        lines.append(f"{marker} {first}")
        lines.extend(pad + line if line.strip() else "" for line in rest)
    return "\n".join(lines)


class _Sink(Protocol):
    """Where readers send what they find; the outline for a document, a collector for a list item."""

    def heading(self, level: int, text: str, anchor: str | None) -> None: ...
    def block(self, text: str) -> None: ...
    def prefix(self, text: str) -> None: ...


class _Outline:
    """Builds sections from a stream of headings and blocks.

    The stack starts with the title as an implicit level-1 heading, so every path begins with the
    page's top heading; a real h1 replaces it. Sections are keyed by heading path and content that
    returns to an earlier path (after an API entry, in another tab) joins that section: heading
    paths stay unique within a document, which keeps chunk IDs stable and distinct.
    """

    def __init__(self, title: str) -> None:
        self._stack: list[tuple[int, str, str | None]] = [(1, title, None)]
        self._sections: dict[tuple[str, ...], Section] = {}
        self._current: Section | None = None
        self._prefix: str | None = None

    @property
    def depth(self) -> int:
        return len(self._stack)

    @property
    def level(self) -> int:
        return self._stack[-1][0]

    @property
    def last_heading(self) -> str:
        return self._stack[-1][1]

    def heading(self, level: int, text: str, anchor: str | None) -> None:
        self._flush_prefix()
        text = _clean_heading(text)
        if not text:
            return
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, text, anchor or None))
        self._current = None

    def truncate(self, depth: int) -> None:
        """Return to an outer heading (the end of an API entry's description)."""
        self._flush_prefix()
        if len(self._stack) > depth >= 1:
            del self._stack[depth:]
            self._current = None

    def prefix(self, text: str) -> None:
        """A label (admonition title, definition term) that leads the next block."""
        self._flush_prefix()
        text = _norm(text)
        self._prefix = text or None

    def block(self, text: str) -> None:
        if not text.strip():
            return
        if self._prefix is not None:
            prefix, self._prefix = self._prefix, None
            if text.startswith("```"):
                self._append(prefix)
            else:
                text = _join_prefix(prefix, text)
        self._append(text)

    def sections(self) -> list[Section]:
        self._flush_prefix()
        return list(self._sections.values())

    def _flush_prefix(self) -> None:
        if self._prefix is not None:
            prefix, self._prefix = self._prefix, None
            self._append(prefix)

    def _append(self, text: str) -> None:
        if self._current is None:
            path = tuple(entry[1] for entry in self._stack)
            section = self._sections.get(path)
            if section is None:
                section = Section(heading_path=list(path), anchor=self._stack[-1][2])
                self._sections[path] = section
            self._current = section
        self._current.blocks.append(text)


class _Collector:
    """Gathers the blocks of one list item; headings inside it become plain text."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self._prefix: str | None = None

    def heading(self, level: int, text: str, anchor: str | None) -> None:
        self.block(_clean_heading(text))

    def prefix(self, text: str) -> None:
        self._prefix = _norm(text) or None

    def block(self, text: str) -> None:
        if not text.strip():
            return
        if self._prefix is not None:
            prefix, self._prefix = self._prefix, None
            if text.startswith("```"):
                self.blocks.append(prefix)
            else:
                text = _join_prefix(prefix, text)
        self.blocks.append(text)

    def done(self) -> list[str]:
        if self._prefix is not None:
            self.blocks.append(self._prefix)
            self._prefix = None
        return self.blocks


# --------------------------------------------------------------------------------------------
# Markdown and MDX (markdown-it-py)
# --------------------------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)(?:\r?\n)?^(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S | re.M)


def _front_matter_value(front: str, key: str) -> str | None:
    match = re.search(rf"^{key}\s*:\s*(.+?)\s*$", front, re.MULTILINE)
    if not match:
        return None
    value = match.group(1)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
        value = value.replace("''", "'") if match.group(1)[0] == "'" else value.replace('\\"', '"')
    return value.strip() or None


def _split_front_matter(text: str) -> tuple[dict[str, str], str]:
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    meta = {
        key: value for key in ("title", "description") if (value := _front_matter_value(match.group(1), key))
    }
    return meta, text[match.end() :]


_MD = MarkdownIt("commonmark", {"html": True}).enable("table")
# MDX has no indented code blocks: indentation inside JSX components is layout, not code.
_MDX = MarkdownIt("commonmark", {"html": True}).enable("table").disable("code")


def _github_slug(text: str, seen: dict[str, int]) -> str:
    slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
    count = seen.get(slug, 0)
    seen[slug] = count + 1
    return slug if count == 0 else f"{slug}-{count}"


def _md_inline(node: SyntaxTreeNode) -> str:
    """Plain text of inline markup: code spans verbatim, link text without URLs, no HTML tags."""
    parts: list[str] = []
    for child in node.children:
        kind = child.type
        if kind in ("text", "code_inline"):
            parts.append(child.content)
        elif kind in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif kind in ("html_inline", "image"):
            continue
        else:
            parts.append(_md_inline(child))
    return "".join(parts)


def _md_text(node: SyntaxTreeNode) -> str:
    """Inline text of a block node (paragraph, heading, table cell)."""
    return "".join(_md_inline(child) for child in node.children if child.type == "inline")


def _html_fragment_text(html: str) -> str:
    tree = LexborHTMLParser(html)
    root = tree.body or tree.root
    return _norm(root.text(deep=True, separator=" ")) if root is not None else ""


class _MarkdownWalker:
    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.slugs: dict[str, int] = {}

    def walk(self, node: SyntaxTreeNode) -> None:
        for child in node.children:
            kind = child.type
            if kind == "heading":
                text = _clean_heading(_md_text(child))
                self.sink.heading(int(child.tag[1:]), text, _github_slug(text, self.slugs) if text else None)
            elif kind == "paragraph":
                self.sink.block(_norm(_md_text(child)))
            elif kind in ("fence", "code_block"):
                language = child.info.split()[0] if child.info.strip() else ""
                self.sink.block(_fence(child.content, language))
            elif kind in ("bullet_list", "ordered_list"):
                self.sink.block(self._list(child))
            elif kind == "table":
                self.sink.block(self._table(child))
            elif kind == "html_block":
                self.sink.block(_html_fragment_text(child.content))
            elif kind == "hr":
                continue
            else:  # blockquote, list items reached directly, future containers
                self.walk(child)

    def _list(self, node: SyntaxTreeNode) -> str:
        items: list[list[str]] = []
        for item in node.children:
            collector = _Collector()
            walker = _MarkdownWalker(collector)
            walker.walk(item)
            items.append(collector.done())
        start = node.attrs.get("start", 1)
        return _format_list(items, node.type == "ordered_list", int(start) if isinstance(start, int) else 1)

    @staticmethod
    def _table(node: SyntaxTreeNode) -> str:
        rows: list[str] = []
        for part in node.children:  # thead, tbody
            for row in part.children:
                cells = [_norm(_md_text(cell)) for cell in row.children]
                if any(cells):
                    rows.append(" | ".join(cells).rstrip())
        return "\n".join(rows)


def _markdown_title(meta: dict[str, str], tree: SyntaxTreeNode, stem: str) -> str:
    if meta.get("title"):
        return meta["title"]
    headings = [node for node in tree.walk() if node.type == "heading"]
    for node in headings:
        if node.tag == "h1" and (text := _clean_heading(_md_text(node))):
            return text
    for node in headings:
        if text := _clean_heading(_md_text(node)):
            return text
    return stem


def _build_markdown(
    meta: dict[str, str], body: str, stem: str, parser: MarkdownIt
) -> tuple[str, list[Section]]:
    tree = SyntaxTreeNode(parser.parse(body))
    title = _markdown_title(meta, tree, stem)
    outline = _Outline(title)
    if meta.get("description"):
        outline.block(_norm(meta["description"]))
    _MarkdownWalker(outline).walk(tree)
    return title, outline.sections()


def _read_markdown(text: str, stem: str) -> tuple[str, list[Section]]:
    meta, body = _split_front_matter(text)
    return _build_markdown(meta, body, stem, _MD)


# MDX: JSX is removed from the prose before markdown-it sees it; code fences are left untouched.

_FENCE_OPEN = re.compile(r"^[ \t]*(`{3,}(?!.*`)|~{3,})")
_ESM = re.compile(r"^(?:import|export)\b[^\n]*(?:\n(?![ \t]*\n)[^\n]*)*", re.MULTILINE)
_BLANK_TAIL = re.compile(r"(?:\A|\n)[ \t]*\n[ \t]*\Z")
_JSX_COMMENT = re.compile(r"\{/\*.*?\*/\}", re.DOTALL)
_JSX_EXPRESSION_LINE = re.compile(r"^[ \t]*\{[^\n]*\}[ \t]*$", re.MULTILINE)
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1)(?!\n[ \t]*\n).)+?\1", re.DOTALL)
# One tag: name, then attributes where quoted strings and {…} expressions (two levels deep) may
# hold any character. Alternatives start with distinct characters, so matching stays linear.
_TAG = r"""<(?:/?[A-Za-z][\w.:-]*(?=[\s/>])(?:[^<>{}"']|"[^"]*"|'[^']*'|\{(?:[^{}]|\{[^{}]*\})*\})*|/?)>"""
_TAG_RE = re.compile(_TAG)
_TAG_LINE = re.compile(rf"^[ \t]*(?:{_TAG}[ \t]*)+$", re.MULTILINE)
_TAG_NAME = re.compile(r"</?([A-Za-z][\w.:-]*)")
_TITLE_ATTR = re.compile(r"""\btitle=(?:"([^"]*)"|'([^']*)'|\{\s*["'`]([^"'`]*)["'`]\s*\})""")
_HTML_TAGS = _words(
    """a abbr b big blockquote br center cite code col colgroup dd del details div dl dt em figcaption
    figure font h1 h2 h3 h4 h5 h6 hr i iframe img ins kbd li mark ol p picture pre q s samp section
    small source span strong sub summary sup table tbody td tfoot th thead tr u ul var video wbr"""
)


def _is_jsx_tag(tag: str) -> bool:
    match = _TAG_NAME.match(tag)
    if match is None:
        return True  # a fragment: <> or </>
    name = match.group(1)
    return name[0].isupper() or name.lower() in _HTML_TAGS


def _tag_title(tag: str) -> str:
    if tag.startswith("</"):
        return ""
    match = _TITLE_ATTR.search(tag)
    return _norm(next((group for group in match.groups() if group), "")) if match else ""


def _strip_jsx_lines(match: re.Match[str]) -> str:
    tags = _TAG_RE.findall(match.group(0))
    if not all(_is_jsx_tag(tag) for tag in tags):
        return match.group(0)
    titles = [title for tag in tags if (title := _tag_title(tag))]
    # An empty line in place of the tags keeps the content around them as separate paragraphs.
    return "\n" + "\n\n".join(titles) + "\n" if titles else ""


def _strip_jsx_inline(match: re.Match[str]) -> str:
    tag = match.group(0)
    if not _is_jsx_tag(tag):
        return tag
    title = _tag_title(tag)
    return f"{title} " if title else ""


def _strip_esm(match: re.Match[str]) -> str:
    """Drop import/export statements; like MDX, only where they start a paragraph."""
    before = match.string[max(0, match.start() - 80) : match.start()]
    at_paragraph_start = not match.string[: match.start()].strip() or _BLANK_TAIL.search(before)
    return "" if at_paragraph_start else match.group(0)


def _clean_mdx_prose(prose: str) -> str:
    prose = _ESM.sub(_strip_esm, prose)
    prose = _JSX_COMMENT.sub("", prose)
    prose = _JSX_EXPRESSION_LINE.sub("", prose)
    # Inline code may mention components (`<Tabs>`): shield it while tags are removed.
    spans: list[str] = []

    def shield(match: re.Match[str]) -> str:
        spans.append(match.group(0))
        return f"\x00{len(spans) - 1}\x00"

    prose = _INLINE_CODE.sub(shield, prose)
    prose = _TAG_LINE.sub(_strip_jsx_lines, prose)
    prose = _TAG_RE.sub(_strip_jsx_inline, prose)
    return re.sub(r"\x00(\d+)\x00", lambda match: spans[int(match.group(1))], prose)


def _split_fenced(text: str) -> list[tuple[bool, str]]:
    """Split source into (is_code, text) runs so code fences are never rewritten."""
    runs: list[tuple[bool, str]] = []
    buffer: list[str] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        if fence is None:
            match = _FENCE_OPEN.match(line)
            if match:
                runs.append((False, "".join(buffer)))
                buffer = [line]
                fence = match.group(1)
                continue
            buffer.append(line)
        else:
            buffer.append(line)
            stripped = line.strip()
            if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                runs.append((True, "".join(buffer)))
                buffer = []
                fence = None
    runs.append((fence is not None, "".join(buffer)))
    return runs


def _dedent_fence(run: str, previous: str) -> str:
    """Unindent a fence nested in JSX (`<Tab>` then an indented fence): markdown-it would not see it.

    Only fences right under a tag line are moved; deeper fences in lists keep their indentation.
    """
    indent = len(run) - len(run.lstrip(" "))
    lines = previous.rstrip().rsplit("\n", 1)
    if indent < 4 or not _TAG_LINE.fullmatch(lines[-1]):
        return run
    return "".join(
        line[min(indent, len(line) - len(line.lstrip(" "))) :] for line in run.splitlines(keepends=True)
    )


def _mdx_to_markdown(body: str) -> str:
    parts: list[str] = []
    previous = ""
    for is_code, run in _split_fenced(body):
        if is_code:
            parts.append(_dedent_fence(run, previous))
        else:
            parts.append(_clean_mdx_prose(run))
            previous = run
    return "".join(parts)


def _read_mdx(text: str, stem: str) -> tuple[str, list[Section]]:
    meta, body = _split_front_matter(text)
    return _build_markdown(meta, _mdx_to_markdown(body), stem, _MDX)


# --------------------------------------------------------------------------------------------
# HTML (selectolax / lexbor)
# --------------------------------------------------------------------------------------------

_MAIN_SELECTORS = ("main", "[role=main]", "article", "div.body", "#docs-content")
_DROP_SELECTOR = ", ".join(
    [
        "nav, header, footer, aside, script, style, noscript, form, svg, iframe, template",
        "button, input, select, textarea, label, dialog",
        ".sphinxsidebar, .related, .breadcrumbs, .headerlink, .toc, #toc, .nav, .navigation",
        ".sidebar, .footer, .header, .skip-link, .viewcode-link, .anchor, .header-anchor, .hash-link",
        "[role=navigation], [role=search], [role=banner], [role=contentinfo], [aria-hidden=true]",
        "#hd, #ft, #sidebar, #header, #footer, #searchbox",
    ]
)
_HEADING_LEVELS = {f"h{level}": level for level in range(1, 7)}
_CONTAINERS = _words(
    """div section article main body blockquote figure details center fieldset address hgroup header dd
    li td th"""
)
_LEAVES = frozenset({"p", "summary", "figcaption", "caption", "legend"})
_SKIPPED = _words(
    """img br wbr hr head meta link title base area map audio video source track canvas object embed
    picture script style template noscript"""
)
_BLOCK_SELECTOR = "p, div, section, pre, ul, ol, dl, table, h1, h2, h3, h4, h5, h6, blockquote, figure"
_TITLE_SEPARATORS = (" | ", " — ", " – ", " - ", " · ", " :: ")
_ANCHOR_ATTR = "data-docgate-anchor"
_NO_LANGUAGE = frozenset({"default", "none", "text", "plain", "nohighlight", "plaintext"})


def _classes(node: Any) -> list[str]:
    return str(node.attributes.get("class") or "").split()


def _text(node: Any) -> str:
    return str(node.text(deep=True, separator=""))


def _main_content(tree: LexborHTMLParser) -> tuple[Any, bool]:
    """The element holding the page's content, and whether a page landmark identified it."""
    for selector in _MAIN_SELECTORS:
        node = tree.css_first(selector)
        if node is not None:
            return node, True
    return tree.body or tree.root, False


def _drop_chrome(root: Any, semantic_main: bool) -> None:
    """Remove navigation, sidebars, footers, scripts and permalink glyphs from the content."""
    root_id = root.mem_id
    matches = root.css(_DROP_SELECTOR)
    doomed = {node.mem_id for node in matches}
    for node in matches:
        if node.mem_id == root_id:
            continue
        # An article's own <header> often carries its h1: keep it when a landmark chose the root.
        if semantic_main and node.tag == "header" and node.css_first("h1") is not None:
            doomed.discard(node.mem_id)
            continue
        parent = node.parent
        while parent is not None and parent.mem_id != root_id:
            if parent.mem_id in doomed:
                break
            parent = parent.parent
        else:
            node.decompose()


def _mark_heading_anchors(root: Any) -> None:
    """Record each heading's anchor before permalinks are removed: id, permalink target, section id."""
    for heading in root.css("h1, h2, h3, h4, h5, h6"):
        anchor = heading.id
        if not anchor:
            link = heading.css_first("a.headerlink, a.anchor, a.header-anchor, a.hash-link")
            href = str(link.attributes.get("href") or "") if link is not None else ""
            anchor = href[1:] if href.startswith("#") else None
        if not anchor:
            parent = heading.parent
            if parent is not None and (parent.tag == "section" or "section" in _classes(parent)):
                anchor = parent.id
        if anchor:
            heading.attrs[_ANCHOR_ATTR] = anchor


def _code_language(pre: Any) -> str:
    code = pre.css_first("code")
    parent = pre.parent
    grandparent = parent.parent if parent is not None else None
    for node in (pre, code, parent, grandparent):
        if node is None:
            continue
        for cls in _classes(node):
            for prefix in ("language-", "lang-", "highlight-"):
                if cls.startswith(prefix):
                    language = cls[len(prefix) :]
                    return "" if language in _NO_LANGUAGE else language
    return ""


def _html_title(tree: LexborHTMLParser, root: Any, stem: str) -> str:
    h1 = root.css_first("h1")
    if h1 is not None and (text := _clean_heading(_text(h1))):
        return text
    title_node = tree.css_first("title")
    if title_node is not None and (text := _norm(_text(title_node))):
        for separator in _TITLE_SEPARATORS:
            if separator in text:
                first = text.split(separator, 1)[0].strip()
                if len(first) >= 3:
                    return first
        return text
    return stem


class _HtmlWalker:
    """Walks block structure; leaf blocks take their text in one C call to stay fast."""

    def __init__(self, sink: _Sink, outline: _Outline | None) -> None:
        self.sink = sink
        self.outline = outline  # set when API entries (dl/dt with ids) may become sub-headings
        self.inline: list[str] = []

    def walk(self, node: Any) -> None:
        for child in node.iter(include_text=True):
            tag = child.tag
            if tag == "-text":
                self.inline.append(child.text_content or "")
            elif tag.startswith("-") or tag in _SKIPPED:
                continue
            elif tag in _HEADING_LEVELS:
                self.flush()
                self.sink.heading(_HEADING_LEVELS[tag], _text(child), child.attributes.get(_ANCHOR_ATTR))
            elif tag in _LEAVES:
                self.flush()
                if "admonition-title" in _classes(child):
                    self.sink.prefix(_text(child))
                else:
                    self.sink.block(_norm(_text(child)))
            elif tag == "pre":
                self.flush()
                self.sink.block(_fence(_text(child), _code_language(child)))
            elif tag in ("ul", "ol"):
                self.flush()
                self.sink.block(self._list(child))
            elif tag == "table":
                self.flush()
                self.sink.block(self._table(child))
            elif tag == "dl":
                self.flush()
                self._definitions(child)
            elif tag in _CONTAINERS or child.css_first(_BLOCK_SELECTOR) is not None:
                self.flush()
                self.walk(child)
                self.flush()
            else:
                self.inline.append(_text(child))

    def flush(self) -> None:
        text = _norm("".join(self.inline))
        self.inline.clear()
        if text:
            self.sink.block(text)

    def _list(self, node: Any) -> str:
        items: list[list[str]] = []
        for item in node.iter():
            if item.tag != "li":
                continue
            collector = _Collector()
            walker = _HtmlWalker(collector, None)
            walker.walk(item)
            walker.flush()
            items.append(collector.done())
        start = str(node.attributes.get("start") or "1")
        return _format_list(items, node.tag == "ol", int(start) if start.isdigit() else 1)

    @staticmethod
    def _table(node: Any) -> str:
        rows: list[str] = []
        caption = node.css_first("caption")
        if caption is not None and (text := _norm(_text(caption))):
            rows.append(text)
        for row in node.css("tr"):
            cells = [_norm(_text(cell)) for cell in row.iter() if cell.tag in ("td", "th")]
            if any(cells):
                rows.append(" | ".join(cells).rstrip())
        return "\n".join(rows)

    def _definitions(self, node: Any) -> None:
        """Definition lists; Sphinx API entries (dt with an id) become sub-headings of the page.

        An entry only gets its own heading when its description is not empty: Sphinx often puts an
        option's signature in an empty `dd` right under a heading of the same name.
        """
        entries: list[tuple[list[Any], Any]] = []
        for child in node.iter():
            if child.tag == "dt":
                if not entries or entries[-1][1] is not None:
                    entries.append(([], None))
                entries[-1][0].append(child)
            elif child.tag == "dd":
                if not entries or entries[-1][1] is not None:
                    entries.append(([], child))
                else:
                    entries[-1] = (entries[-1][0], child)
        outline = self.outline
        base = outline.depth if outline is not None else 0
        for terms, body in entries:
            has_body = body is not None and bool(_text(body).strip())
            for index, term in enumerate(terms):
                signature = _norm(_text(term))
                if not signature:
                    continue
                if outline is None or not term.id:
                    self.sink.prefix(signature)
                    continue
                if index == 0 and has_body:
                    outline.truncate(base)
                    label = _dt_label(term) or signature[:_MAX_LABEL]
                    if not _same_name(label, outline.last_heading):
                        outline.heading(outline.level + 1, label, term.id)
                outline.block(signature)
            if body is not None:
                self.walk(body)
                self.flush()
            if outline is not None:
                outline.truncate(base)


def _same_name(label: str, heading: str) -> bool:
    """`Field.null` documents the `null` heading it sits under; no need for a deeper level."""
    return label == heading or label.endswith("." + heading) or heading.endswith("." + label)


def _dt_label(dt: Any) -> str:
    name = dt.css_first(".sig-name, .descname")
    if name is None:
        return ""
    prename = dt.css_first(".sig-prename, .descclassname")
    qualifier = _norm(_text(prename)) if prename is not None else ""
    # `Field.` qualifies the name; option metavars (`--tag TAGS`) are not part of it.
    label = (qualifier if qualifier.endswith(".") else "") + _text(name)
    return _clean_heading(label)[:_MAX_LABEL]


def _read_html(text: str, stem: str) -> tuple[str, list[Section]]:
    tree = LexborHTMLParser(text)
    root, semantic_main = _main_content(tree)
    if root is None:
        return stem, []
    _mark_heading_anchors(root)
    _drop_chrome(root, semantic_main)
    for br in root.css("br"):
        br.replace_with("\n")
    title = _html_title(tree, root, stem)
    outline = _Outline(title)
    walker = _HtmlWalker(outline, outline)
    walker.walk(root)
    walker.flush()
    return title, outline.sections()


# --------------------------------------------------------------------------------------------
# reStructuredText (docutils)
# --------------------------------------------------------------------------------------------


class _AnyOptions(dict[str, Callable[[str | None], Any]]):
    """Accept any directive option (Sphinx adds many): values are kept as plain strings."""

    def __missing__(self, key: str) -> Callable[[str | None], Any]:
        unchanged: Callable[[str | None], Any] = directives.unchanged
        return unchanged


def _any_options() -> _AnyOptions:
    # Non-empty on purpose: docutils only parses options when the spec is truthy.
    return _AnyOptions({"name": directives.unchanged, "class": directives.class_option})


class _CodeDirective(Directive):  # type: ignore[misc]
    """Sphinx code directives (code-block, sourcecode, doctest…): content kept as a literal block."""

    optional_arguments = 1
    final_argument_whitespace = True
    has_content = True
    option_spec = _any_options()

    def run(self) -> list[Any]:
        code = "\n".join(self.content)
        node = du.literal_block(code, code)
        language = self.arguments[0].split()[0] if self.arguments else ""
        if language == "" and self.name not in ("code-block", "sourcecode", "code"):
            language = self.name  # mermaid, graphviz, …: the directive names the notation
        node["language"] = language
        return [node]


class _DroppedDirective(Directive):  # type: ignore[misc]
    """Directives that only steer the build (toctree, index, autodoc) carry no readable text."""

    optional_arguments = 1
    final_argument_whitespace = True
    has_content = True
    option_spec = _any_options()

    def run(self) -> list[Any]:
        return []


_VERSION_NOTES = {
    "versionadded": "New in version {}.",
    "versionchanged": "Changed in version {}.",
    "deprecated": "Deprecated since version {}.",
    "versionremoved": "Removed in version {}.",
}


class _VersionDirective(Directive):  # type: ignore[misc]
    """versionadded and friends: `.. versionadded:: 2.1 text` with the text on the same line or below."""

    required_arguments = 1
    optional_arguments = 1
    final_argument_whitespace = True
    has_content = True
    option_spec = _any_options()

    def run(self) -> list[Any]:
        container = du.container()
        container["docgate_prefix"] = _VERSION_NOTES[self.name].format(self.arguments[0])
        if len(self.arguments) > 1:
            inline, messages = self.state.inline_text(self.arguments[1], self.lineno)
            container += du.paragraph(self.arguments[1], "", *inline)
            container += messages
        if self.content:
            self.state.nested_parse(self.content, self.content_offset, container)
        return [container]


class _GenericDirective(Directive):  # type: ignore[misc]
    """Fallback for any other unknown directive: arguments lead, content is parsed as rST."""

    optional_arguments = 1
    final_argument_whitespace = True
    has_content = True
    option_spec = _any_options()

    def run(self) -> list[Any]:
        argument = _norm(self.arguments[0]) if self.arguments else ""
        container = du.container()
        if argument:
            container["docgate_prefix"] = argument
        elif self.name in ("seealso", "todo"):
            container["docgate_prefix"] = "See also" if self.name == "seealso" else "To do"
        if self.content:
            self.state.nested_parse(self.content, self.content_offset, container)
        return [container]


class _ObjectDirective(_GenericDirective):
    """Sphinx object descriptions (function, class, setting…): the signature becomes a sub-heading."""

    def run(self) -> list[Any]:
        [container] = super().run()
        signature = str(container.get("docgate_prefix", ""))
        container["docgate_prefix"] = ""
        container["docgate_signature"] = signature
        container["docgate_label"] = _signature_label(signature)
        return [container]


def _signature_label(signature: str) -> str:
    label = re.sub(r"^(?:(?:class|async|exception|abstract|static|classmethod|final)\s+)+", "", signature)
    return label.split("(", 1)[0].strip()[:_MAX_LABEL]


_CODE_DIRECTIVES = _words(
    """code-block sourcecode doctest testcode testoutput testsetup testcleanup ipython jupyter-execute
    console prompt code-tab mermaid graphviz digraph graph"""
)
_DROPPED_DIRECTIVES = _words(
    """toctree index highlight literalinclude tabularcolumns autosummary automodule autoclass
    autofunction autoexception autodata automethod autoattribute currentmodule module sectionauthor
    moduleauthor codeauthor todolist"""
)
_OBJECT_DIRECTIVES = _words(
    """function class method attribute data exception decorator decoratormethod classmethod
    staticmethod property setting option envvar describe object type member macro var enum
    enumerator struct django-admin django-admin-option templatetag templatefilter fieldlookup"""
)

_SPHINX_OVERRIDES = frozenset({"code", "code-block", "sourcecode", "class"})
_DIRECTIVE_USE = re.compile(r"^[ \t]*\.\.[ \t]+([\w][\w:.+-]*)[ \t]*::", re.MULTILINE)
_ROLE_USE = re.compile(r"(?<![\w`]):([A-Za-z0-9][\w.:+-]*):`")
_registered_directives: set[str] = set()
_registered_roles: set[str] = set()


def _known_directive(name: str) -> bool:
    return (
        name in _registered_directives
        or name in directives._directives
        or name in directives._directive_registry
        or name in rst_en.directives
    )


def _known_role(name: str) -> bool:
    return name in _registered_roles or name in roles._roles or name in rst_en.roles


def _plain_role(
    name: str,
    rawtext: str,
    text: str,
    lineno: int,
    inliner: Any,
    options: dict[str, Any] | None = None,
    content: list[str] | None = None,
) -> tuple[list[Any], list[Any]]:
    """Any Sphinx role (:class:, :ref:, :setting:…): show its title, or its target without ~ and !."""
    match = re.match(r"^(.*?)\s*<([^<>]+)>$", text, re.DOTALL)
    if match and match.group(1):
        shown = match.group(1)
    else:
        target = match.group(2) if match else text
        shown = target.lstrip("!")
        if shown.startswith("~"):
            shown = shown[1:].rsplit(".", 1)[-1]
    return [du.literal(rawtext, unescape(shown))], []


def _register_rst_extensions(source: str) -> None:
    """Teach docutils the Sphinx directives and roles this source uses (process-wide registry)."""
    for name in {match.lower() for match in _DIRECTIVE_USE.findall(source)}:
        base = name.rsplit(":", 1)[-1]
        if name in _registered_directives:
            continue
        # Sphinx replaces these docutils directives: its code directives take options docutils
        # rejects (:linenos:, :caption:) and `class` describes a Python class.
        if name in _SPHINX_OVERRIDES or not _known_directive(name):
            if base in _CODE_DIRECTIVES:
                directive: type[Directive] = _CodeDirective
            elif base in _DROPPED_DIRECTIVES:
                directive = _DroppedDirective
            elif base in _OBJECT_DIRECTIVES:
                directive = _ObjectDirective
            elif base in _VERSION_NOTES:
                directive = _VersionDirective
            else:
                directive = _GenericDirective
            directives.register_directive(name, directive)
            _registered_directives.add(name)
    for name in {match.lower() for match in _ROLE_USE.findall(source)}:
        if not _known_role(name):
            roles.register_local_role(name, _plain_role)
            _registered_roles.add(name)


_RST_SETTINGS: dict[str, Any] = {
    "report_level": 5,
    "halt_level": 5,
    "file_insertion_enabled": False,
    "raw_enabled": False,
    "syntax_highlight": "none",
    "smart_quotes": False,
    "_disable_config": True,
}

_RST_SKIPPED = (
    du.system_message,
    du.comment,
    du.substitution_definition,
    du.target,
    du.pending,
    du.raw,
    du.transition,
    du.decoration,
    du.meta,
    du.image,
    du.label,
)


class _RstWalker:
    def __init__(self, sink: _Sink, outline: _Outline | None) -> None:
        self.sink = sink
        self.outline = outline

    def walk(self, node: Any, level: int) -> None:
        for child in node.children:
            self.visit(child, level)

    def visit(self, node: Any, level: int) -> None:
        sink = self.sink
        if isinstance(node, (*_RST_SKIPPED, du.title, du.Text)):
            return
        if isinstance(node, du.section):
            title = node.next_node(du.title)
            ids = node.get("ids") or []
            sink.heading(level, title.astext() if title is not None else "", ids[0] if ids else None)
            self.walk(node, level + 1)
        elif isinstance(node, du.subtitle) and isinstance(node.parent, du.document):
            # docutils promotes a lone first subsection to document subtitle; its content follows
            # as the document's own, so it reads as that subsection's heading.
            ids = node.get("ids") or []
            sink.heading(level, node.astext(), ids[0] if ids else None)
        elif isinstance(node, du.literal_block | du.doctest_block | du.math_block):
            sink.block(_fence(node.astext(), self._language(node)))
        elif isinstance(node, du.bullet_list | du.enumerated_list):
            items: list[list[str]] = []
            for item in node.children:
                collector = _Collector()
                _RstWalker(collector, None).walk(item, level)
                items.append(collector.done())
            start = node.get("start", 1)
            sink.block(_format_list(items, isinstance(node, du.enumerated_list), int(start)))
        elif isinstance(node, du.table):
            rows = [
                " | ".join(_norm(entry.astext()) for entry in row.children) for row in node.findall(du.row)
            ]
            sink.block("\n".join(row for row in rows if row.strip(" |")))
        elif isinstance(node, du.definition_list_item | du.field | du.option_list_item):
            term = node.children[0] if node.children else None
            if term is not None:
                sink.prefix(term.astext())
            for child in node.children[1:]:
                self.visit(child, level)
        elif isinstance(node, du.term | du.field_name):
            sink.prefix(node.astext())
        elif isinstance(node, du.Admonition | du.topic | du.sidebar):
            if "contents" in node.get("classes", []):
                return
            title = node.next_node(du.title)
            sink.prefix(
                title.astext() if title is not None and title.parent is node else node.tagname.title()
            )
            self.walk(node, level)
        elif isinstance(node, du.container) and node.get("docgate_signature") is not None:
            self._object(node, level)
        elif isinstance(node, du.container) and node.get("docgate_prefix"):
            sink.prefix(str(node["docgate_prefix"]))
            self.walk(node, level)
        elif isinstance(node, du.line_block):
            sink.block("\n".join(_norm(line.astext()) for line in node.findall(du.line)))
        elif isinstance(node, du.TextElement):
            sink.block(_norm(node.astext()))
        elif isinstance(node, du.Element):
            self.walk(node, level)

    def _object(self, node: Any, level: int) -> None:
        outline = self.outline
        signature = str(node["docgate_signature"])
        label = str(node.get("docgate_label") or signature)
        if outline is None or not label:
            self.sink.prefix(signature)
            self.walk(node, level)
            return
        base = outline.depth
        if label != outline.last_heading:
            outline.heading(outline.level + 1, label, None)
        if signature:
            outline.block(signature)
        self.walk(node, outline.level + 1)
        outline.truncate(base)

    @staticmethod
    def _language(node: Any) -> str:
        language = str(node.get("language") or "")
        if not language:
            language = next((cls for cls in node.get("classes", []) if cls != "code"), "")
        return "" if language in _NO_LANGUAGE else language


def _read_rst(text: str, stem: str) -> tuple[str, list[Section]]:
    _register_rst_extensions(text)
    try:
        document = publish_doctree(
            text, settings_overrides={**_RST_SETTINGS, "warning_stream": io.StringIO()}
        )
    except Exception as error:  # docutils has crashed on odd input before; text is still useful
        log.warning("parse.rst_failed", error=str(error))
        return _read_text(text, stem)
    title = str(document.get("title") or "")
    has_title = bool(title)
    if not title:
        first = document.next_node(du.title)
        title = first.astext() if first is not None else stem
    title = _clean_heading(title) or stem
    outline = _Outline(title)
    if has_title:
        ids = document.get("ids") or []
        outline.heading(1, title, ids[0] if ids else None)
    _RstWalker(outline, outline).walk(document, 2 if has_title else 1)
    return title, outline.sections()


# --------------------------------------------------------------------------------------------
# Plain text
# --------------------------------------------------------------------------------------------

_UNDERLINE = re.compile(r"^[ \t]*([=\-~^*#+])\1{2,}[ \t]*$")


def _underline_char(line: str, text: str) -> str | None:
    """The adornment character when `line` underlines `text` (covering at least half of it)."""
    match = _UNDERLINE.match(line)
    if match is None or not text.strip() or _UNDERLINE.match(text):
        return None
    if len(line.strip()) < max(3, len(text.strip()) // 2):
        return None
    return match.group(1)


def _split_heading(lines: list[str]) -> tuple[list[str], str, str] | None:
    """(lines before, heading text, adornment) when a paragraph ends in an underlined heading."""
    if len(lines) < 2 or (char := _underline_char(lines[-1], lines[-2])) is None:
        return None
    before = lines[:-2]
    if before and before[-1].strip() == lines[-1].strip():
        before = before[:-1]  # overline and underline, as rST allows
    return before, _norm(lines[-2]), char


def _looks_like_title(line: str) -> bool:
    line = line.strip()
    return 0 < len(line) <= 80 and not line.endswith((".", ",", ";", ":"))


def _paragraphs(text: str) -> list[list[str]]:
    paragraphs: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.strip():
            current.append(line.rstrip())
        elif current:
            paragraphs.append(current)
            current = []
    if current:
        paragraphs.append(current)
    return paragraphs


def _read_text(text: str, stem: str) -> tuple[str, list[Section]]:
    paragraphs = _paragraphs(text)
    title = stem
    levels: dict[str, int] = {}
    if paragraphs:
        first = paragraphs[0]
        heading = _split_heading(first)
        if heading is not None and not heading[0]:
            title, levels[heading[2]] = heading[1], 1
            paragraphs = paragraphs[1:]
        elif len(first) == 1 and _looks_like_title(first[0]):
            title = _norm(first[0])
            paragraphs = paragraphs[1:]
    outline = _Outline(title)
    for lines in paragraphs:
        heading = _split_heading(lines)
        if heading is None:
            outline.block(_text_block(lines))
            continue
        before, text_, char = heading
        if before:
            outline.block(_text_block(before))
        # Like rST, adornment styles rank by first appearance.
        level = levels.setdefault(char, max(levels.values(), default=1) + 1)
        outline.heading(level, text_, None)
    return title, outline.sections()


def _text_block(lines: list[str]) -> str:
    if all(line.startswith(("    ", "\t")) for line in lines):
        return _fence(textwrap.dedent("\n".join(lines)))
    if len(lines) > 1 and _LIST_START.match(lines[0].strip()):
        return "\n".join(_norm(line) for line in lines)
    return _norm(" ".join(lines))


_READERS: dict[Format, Callable[[str, str], tuple[str, list[Section]]]] = {
    "markdown": _read_markdown,
    "mdx": _read_mdx,
    "rst": _read_rst,
    "html": _read_html,
    "text": _read_text,
}
