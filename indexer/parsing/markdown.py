"""Markdown and MDX (markdown-it-py)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from indexer.models import Section
from indexer.parsing.html import html_fragment_blocks
from indexer.parsing.outline import Collector, Outline, Sink, clean_heading, fence, format_list, norm, words

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


class _MarkdownWalker:
    def __init__(self, sink: Sink, fragments: Sequence[str] = ()) -> None:
        self.sink = sink
        self.slugs: dict[str, int] = {}
        self.fragments = fragments  # raw HTML paragraphs of an MDX page, by marker number

    def walk(self, node: SyntaxTreeNode) -> None:
        for child in node.children:
            kind = child.type
            if kind == "heading":
                text = clean_heading(_md_text(child))
                self.sink.heading(int(child.tag[1:]), text, _github_slug(text, self.slugs) if text else None)
            elif kind == "paragraph":
                text = norm(_md_text(child))
                marker = _HTML_MARKER.fullmatch(text)
                if marker is not None and int(marker.group(1)) < len(self.fragments):
                    html_fragment_blocks(self.fragments[int(marker.group(1))], self.sink)
                else:
                    self.sink.block(text)
            elif kind in ("fence", "code_block"):
                language = child.info.split()[0] if child.info.strip() else ""
                self.sink.block(fence(child.content, language))
            elif kind in ("bullet_list", "ordered_list"):
                self.sink.block(self._list(child))
            elif kind == "table":
                self.sink.block(self._table(child))
            elif kind == "html_block":
                html_fragment_blocks(child.content, self.sink)
            elif kind == "hr":
                continue
            else:  # blockquote, list items reached directly, future containers
                self.walk(child)

    def _list(self, node: SyntaxTreeNode) -> str:
        items: list[list[str]] = []
        for item in node.children:
            collector = Collector()
            walker = _MarkdownWalker(collector, self.fragments)
            walker.walk(item)
            items.append(collector.done())
        start = node.attrs.get("start", 1)
        return format_list(items, node.type == "ordered_list", int(start) if isinstance(start, int) else 1)

    @staticmethod
    def _table(node: SyntaxTreeNode) -> str:
        rows: list[str] = []
        for part in node.children:  # thead, tbody
            for row in part.children:
                cells = [norm(_md_text(cell)) for cell in row.children]
                if any(cells):
                    rows.append(" | ".join(cells).rstrip())
        return "\n".join(rows)


def _markdown_title(meta: dict[str, str], tree: SyntaxTreeNode, stem: str) -> str:
    if meta.get("title"):
        return meta["title"]
    headings = [node for node in tree.walk() if node.type == "heading"]
    for node in headings:
        if node.tag == "h1" and (text := clean_heading(_md_text(node))):
            return text
    for node in headings:
        if text := clean_heading(_md_text(node)):
            return text
    return stem


def _build_markdown(
    meta: dict[str, str], body: str, stem: str, parser: MarkdownIt, fragments: Sequence[str] = ()
) -> tuple[str, list[Section]]:
    tree = SyntaxTreeNode(parser.parse(body))
    title = _markdown_title(meta, tree, stem)
    outline = Outline(title)
    if meta.get("description"):
        outline.block(norm(meta["description"]))
    _MarkdownWalker(outline, fragments).walk(tree)
    return title, outline.sections()


def read_markdown(text: str, stem: str) -> tuple[str, list[Section]]:
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
# A paragraph that opens with an HTML block element (lowercase: MDX reads it as HTML, not JSX).
_RAW_HTML_PARAGRAPH = re.compile(
    r"^ {0,3}<(?:div|section|article|p|table|ul|ol|dl|pre|blockquote|details|figure|aside)[\s>/][^\n]*"
    r"(?:\n(?![ \t]*\n)[^\n]*)*",
    re.MULTILINE,
)
_HTML_MARKER_TEXT = "\x02{}\x02"
_HTML_MARKER = re.compile(r"\x02(\d+)\x02")
_HTML_TAGS = words(
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
    return norm(next((group for group in match.groups() if group), "")) if match else ""


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


def _stash_html(prose: str, fragments: list[str]) -> str:
    """Replace each paragraph of raw HTML with text in it (a line opening with `<div`, `<p`, …) by
    a marker paragraph; the walker reads the HTML with the HTML reader, block by block.

    Stripped as JSX tags, its paragraphs and lists would run together into one line.
    """

    def stash(match: re.Match[str]) -> str:
        html = match.group(0)
        if not _TAG_RE.sub("", html).strip():
            return html  # tags only: JSX-style wrappers, removed below
        fragments.append(html)
        indent = html[: len(html) - len(html.lstrip(" "))]  # stays inside a list item it continues
        return f"\n\n{indent}{_HTML_MARKER_TEXT.format(len(fragments) - 1)}\n\n"

    return _RAW_HTML_PARAGRAPH.sub(stash, prose)


def _clean_mdx_prose(prose: str, fragments: list[str]) -> str:
    prose = _stash_html(prose, fragments)
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


def _mdx_to_markdown(body: str, fragments: list[str]) -> str:
    parts: list[str] = []
    previous = ""
    for is_code, run in _split_fenced(body):
        if is_code:
            parts.append(_dedent_fence(run, previous))
        else:
            parts.append(_clean_mdx_prose(run, fragments))
            previous = run
    return "".join(parts)


def read_mdx(text: str, stem: str) -> tuple[str, list[Section]]:
    meta, body = _split_front_matter(text)
    fragments: list[str] = []
    markdown = _mdx_to_markdown(body, fragments)
    return _build_markdown(meta, markdown, stem, _MDX, fragments)
