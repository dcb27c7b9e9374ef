"""HTML (selectolax / lexbor)."""

from __future__ import annotations

from typing import Any

from selectolax.lexbor import LexborHTMLParser

from indexer.models import Section
from indexer.parsing.outline import (
    MAX_LABEL,
    NO_LANGUAGE,
    Collector,
    Outline,
    Sink,
    clean_heading,
    fence,
    format_list,
    norm,
    words,
)

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
_CONTAINERS = words(
    """div section article main body blockquote figure details center fieldset address hgroup header dd
    li td th"""
)
_LEAVES = frozenset({"p", "summary", "figcaption", "caption", "legend"})
_SKIPPED = words(
    """img br wbr hr head meta link title base area map audio video source track canvas object embed
    picture script style template noscript"""
)
_BLOCK_SELECTOR = "p, div, section, pre, ul, ol, dl, table, h1, h2, h3, h4, h5, h6, blockquote, figure"
_TITLE_SEPARATORS = (" | ", " — ", " – ", " - ", " · ", " :: ")
_ANCHOR_ATTR = "data-docgate-anchor"


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
                    return "" if language in NO_LANGUAGE else language
    return ""


def _html_title(tree: LexborHTMLParser, root: Any, stem: str) -> str:
    h1 = root.css_first("h1")
    if h1 is not None and (text := clean_heading(_text(h1))):
        return text
    title_node = tree.css_first("title")
    if title_node is not None and (text := norm(_text(title_node))):
        for separator in _TITLE_SEPARATORS:
            if separator in text:
                first = text.split(separator, 1)[0].strip()
                if len(first) >= 3:
                    return first
        return text
    return stem


class _HtmlWalker:
    """Walks block structure; leaf blocks take their text in one C call to stay fast."""

    def __init__(self, sink: Sink, outline: Outline | None, *, anchored_labels: bool = False) -> None:
        self.sink = sink
        self.outline = outline  # set when API entries (dl/dt with ids) may become sub-headings
        # Set for HTML embedded in Markdown: a short anchored line leads the block after it.
        self.anchored_labels = anchored_labels
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
                    self.sink.block(norm(_text(child)))
            elif tag == "pre":
                self.flush()
                self.sink.block(fence(_text(child), _code_language(child)))
            elif tag in ("ul", "ol"):
                self.flush()
                self.sink.block(self._list(child))
            elif tag == "table":
                self.flush()
                self.sink.block(self._table(child))
            elif tag == "dl":
                self.flush()
                self._definitions(child)
            elif self.anchored_labels and (label := _anchored_label(child)) is not None:
                self.flush()
                self.sink.prefix(label)
            elif tag in _CONTAINERS or child.css_first(_BLOCK_SELECTOR) is not None:
                self.flush()
                self.walk(child)
                self.flush()
            else:
                self.inline.append(_text(child))

    def flush(self) -> None:
        text = norm("".join(self.inline))
        self.inline.clear()
        if text:
            self.sink.block(text)

    def _list(self, node: Any) -> str:
        items: list[list[str]] = []
        for item in node.iter():
            if item.tag != "li":
                continue
            collector = Collector()
            walker = _HtmlWalker(collector, None)
            walker.walk(item)
            walker.flush()
            items.append(collector.done())
        start = str(node.attributes.get("start") or "1")
        return format_list(items, node.tag == "ol", int(start) if start.isdigit() else 1)

    @staticmethod
    def _table(node: Any) -> str:
        rows: list[str] = []
        caption = node.css_first("caption")
        if caption is not None and (text := norm(_text(caption))):
            rows.append(text)
        for row in node.css("tr"):
            cells = [norm(_text(cell)) for cell in row.iter() if cell.tag in ("td", "th")]
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
                signature = norm(_text(term))
                if not signature:
                    continue
                if outline is None or not term.id:
                    self.sink.prefix(signature)
                    continue
                if index == 0 and has_body:
                    outline.truncate(base)
                    label = _dt_label(term) or signature[:MAX_LABEL]
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
    qualifier = norm(_text(prename)) if prename is not None else ""
    # `Field.` qualifies the name; option metavars (`--tag TAGS`) are not part of it.
    label = (qualifier if qualifier.endswith(".") else "") + _text(name)
    return clean_heading(label)[:MAX_LABEL]


def _anchored_label(node: Any) -> str | None:
    """A member's signature in a generated API reference, or None: a `div` with an `id`, no blocks
    inside and a short text that is not a sentence (`nextCursor?: string`, then its description)."""
    if node.tag != "div" or not node.id:
        return None
    if any(inner.mem_id != node.mem_id for inner in node.css(_BLOCK_SELECTOR)):  # css() holds node itself
        return None
    text = norm(_text(node))
    return text if 0 < len(text) <= MAX_LABEL and not text.endswith((".", "!", "?")) else None


def _prepare_content(root: Any, semantic_main: bool) -> None:
    """Anchors recorded, chrome dropped, line breaks kept: the content as the walker reads it."""
    _mark_heading_anchors(root)
    _drop_chrome(root, semantic_main)
    for br in root.css("br"):
        br.replace_with("\n")


def html_fragment_blocks(html: str, sink: Sink) -> None:
    """The blocks of an HTML fragment embedded in Markdown, into `sink`, as a page's would be.

    Paragraphs, lists, code and tables stay separate blocks (flattened into one line, a generated
    API reference reads "… changes. method: "resources/subscribe" Overrides Request.method …" as
    one sentence); navigation, asides and scripts are dropped as on an HTML page. A member's
    anchored signature leads its description ("nextCursor?: string: An opaque token …"), so the
    description names what it describes.
    """
    tree = LexborHTMLParser(html)
    root = tree.body or tree.root
    if root is None:
        return
    _prepare_content(root, False)
    walker = _HtmlWalker(sink, None, anchored_labels=True)
    walker.walk(root)
    walker.flush()


def read_html(text: str, stem: str) -> tuple[str, list[Section]]:
    tree = LexborHTMLParser(text)
    root, semantic_main = _main_content(tree)
    if root is None:
        return stem, []
    _prepare_content(root, semantic_main)
    title = _html_title(tree, root, stem)
    outline = Outline(title)
    walker = _HtmlWalker(outline, outline)
    walker.walk(root)
    walker.flush()
    return title, outline.sections()
