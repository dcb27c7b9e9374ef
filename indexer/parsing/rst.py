"""reStructuredText (docutils)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import structlog
from docutils import nodes as du
from docutils.core import publish_doctree
from docutils.parsers.rst import Directive, directives, roles
from docutils.parsers.rst.languages import en as rst_en
from docutils.utils import unescape

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
from indexer.parsing.text import read_text

log = structlog.get_logger(__name__)


class _AnyOptions(dict[str, Callable[[str | None], Any]]):
    """Accept any directive option (Sphinx adds many): values are kept as plain strings."""

    def __missing__(self, key: str) -> Callable[[str | None], Any]:
        unchanged: Callable[[str | None], Any] = directives.unchanged
        return unchanged


def _any_options() -> _AnyOptions:
    # Non-empty on purpose: docutils only parses options when the spec is truthy.
    return _AnyOptions({"name": directives.unchanged, "class": directives.class_option})


class _LenientDirective(Directive):  # type: ignore[misc]
    """Takes what Sphinx's directives take: one argument line, any options, content."""

    optional_arguments = 1
    final_argument_whitespace = True
    has_content = True
    option_spec = _any_options()


class _CodeDirective(_LenientDirective):
    """Sphinx code directives (code-block, sourcecode, doctest…): content kept as a literal block."""

    def run(self) -> list[Any]:
        code = "\n".join(self.content)
        node = du.literal_block(code, code)
        language = self.arguments[0].split()[0] if self.arguments else ""
        if language == "" and self.name not in ("code-block", "sourcecode", "code"):
            language = self.name  # mermaid, graphviz, …: the directive names the notation
        node["language"] = language
        return [node]


class _DroppedDirective(_LenientDirective):
    """Directives that only steer the build (toctree, index, autodoc) carry no readable text."""

    def run(self) -> list[Any]:
        return []


_VERSION_NOTES = {
    "versionadded": "New in version {}.",
    "versionchanged": "Changed in version {}.",
    "deprecated": "Deprecated since version {}.",
    "versionremoved": "Removed in version {}.",
}


class _VersionDirective(_LenientDirective):
    """versionadded and friends: `.. versionadded:: 2.1 text` with the text on the same line or below."""

    required_arguments = 1

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


class _GenericDirective(_LenientDirective):
    """Fallback for any other unknown directive: arguments lead, content is parsed as rST."""

    def run(self) -> list[Any]:
        argument = norm(self.arguments[0]) if self.arguments else ""
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
    return label.split("(", 1)[0].strip()[:MAX_LABEL]


_CODE_DIRECTIVES = words(
    """code-block sourcecode doctest testcode testoutput testsetup testcleanup ipython jupyter-execute
    console prompt code-tab mermaid graphviz digraph graph"""
)
_DROPPED_DIRECTIVES = words(
    """toctree index highlight literalinclude tabularcolumns autosummary automodule autoclass
    autofunction autoexception autodata automethod autoattribute currentmodule module sectionauthor
    moduleauthor codeauthor todolist"""
)
_OBJECT_DIRECTIVES = words(
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
    def __init__(self, sink: Sink, outline: Outline | None) -> None:
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
            sink.block(fence(node.astext(), self._language(node)))
        elif isinstance(node, du.bullet_list | du.enumerated_list):
            items: list[list[str]] = []
            for item in node.children:
                collector = Collector()
                _RstWalker(collector, None).walk(item, level)
                items.append(collector.done())
            start = node.get("start", 1)
            sink.block(format_list(items, isinstance(node, du.enumerated_list), int(start)))
        elif isinstance(node, du.table):
            rows = [
                " | ".join(norm(entry.astext()) for entry in row.children) for row in node.findall(du.row)
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
            sink.block("\n".join(norm(line.astext()) for line in node.findall(du.line)))
        elif isinstance(node, du.TextElement):
            sink.block(norm(node.astext()))
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
        return "" if language in NO_LANGUAGE else language


def read_rst(text: str, stem: str) -> tuple[str, list[Section]]:
    _register_rst_extensions(text)
    try:
        document = publish_doctree(
            text, settings_overrides={**_RST_SETTINGS, "warning_stream": io.StringIO()}
        )
    except Exception as error:  # docutils has crashed on odd input before; text is still useful
        log.warning("parse.rst_failed", error=str(error))
        return read_text(text, stem)
    title = str(document.get("title") or "")
    has_title = bool(title)
    if not title:
        first = document.next_node(du.title)
        title = first.astext() if first is not None else stem
    title = clean_heading(title) or stem
    outline = Outline(title)
    if has_title:
        ids = document.get("ids") or []
        outline.heading(1, title, ids[0] if ids else None)
    _RstWalker(outline, outline).walk(document, 2 if has_title else 1)
    return title, outline.sections()
