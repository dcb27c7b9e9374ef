"""The FAQ-derived eval set: questions and their linked answer pages from Sphinx FAQ HTML."""

from __future__ import annotations

import importlib.util
import json
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "faq_eval_set.py"


def _load_script() -> ModuleType:
    # scripts/ is a folder of runnable files, not a package: load the file by path.
    spec = importlib.util.spec_from_file_location("faq_eval_set", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the module's annotations through it
    spec.loader.exec_module(module)
    return module


faq_eval_set = _load_script()
collect_questions = faq_eval_set.collect_questions
main = faq_eval_set.main
normalise_link = faq_eval_set.normalise_link
questions_in_page = faq_eval_set.questions_in_page

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
DJANGO_TARBALL = CORPORA / "django-3.2-docs-html.tar.gz"

# A page shaped like Sphinx output: a site header h1 outside the article, the article in the
# section of its own h1, and a sidebar whose "Table of Contents" is an h3 full of links.
FAQ_PAGE = """<!DOCTYPE html>
<html><body>
<div id="hd"><h1><a href="../index.html">Docs</a></h1>
  <a href="../genindex.html">Index</a></div>
<div class="body">
<div class="section" id="s-faq-models">
<h1>FAQ: Models<a class="headerlink" href="#faq-models">¶</a></h1>
<p>Intro text links to <a href="../topics/db/index.html">the model layer</a>.</p>
<div class="section" id="s-raw-sql">
<h2>How can I see the <code><span>raw</span> <span>SQL</span></code>?<a class="headerlink"
  href="#raw-sql" title="Permalink to this heading">¶</a></h2>
<p>Turn on <a class="reference internal" href="../ref/settings.html#std-setting-DEBUG">DEBUG</a>
and read <a href="../ref/settings.html#std-setting-DATABASES">DATABASES</a> and
<a href="../topics/db/multi-db.html">multiple databases</a>; see also
<a href="models.html#other">another FAQ</a>, <a href="../genindex.html">the index</a>,
<a href="../search.html?q=sql">search</a>, <a href="https://example.org/sql">a blog</a>,
<a href="#raw-sql">this very answer</a> and <a href="../_modules/django/db.html">source</a>.</p>
</div>
<div class="section" id="s-no-links">
<h2>Is this question left without links?<a class="headerlink" href="#no-links">¶</a></h2>
<p>Only <a href="https://example.org/">elsewhere</a> and <a href="general.html">other FAQ</a>.</p>
</div>
<div class="section" id="s-group">
<h2>Problems with migrations<a class="headerlink" href="#group">¶</a></h2>
<div class="section" id="s-nested">
<h3>Why is my migration not applied?<a class="headerlink" href="#nested">¶</a></h3>
<p>Run <a href="../ref/django-admin.html#migrate">migrate</a>; read
<a href="../topics/migrations.html">migrations</a>.</p>
<h4>Details</h4>
<p>More in <a href="../howto/writing-migrations.html">writing migrations</a>.</p>
</div>
</div>
</div>
</div>
<div id="sidebar"><h3><a href="../contents.html">Table of Contents</a></h3>
  <a href="../ref/models/fields.html">a sidebar link</a></div>
</body></html>
"""


def test_links_resolve_relative_to_the_faq_page_without_fragment() -> None:
    assert normalise_link("../ref/settings.html#std-setting-DEBUG", "faq/models.html") == "ref/settings.html"
    assert normalise_link("../howto/deployment/", "faq/install.html") == "howto/deployment/index.html"


@pytest.mark.parametrize(
    "href",
    [
        "https://example.org/a.html",
        "//cdn.example.org/a.html",
        "mailto:someone@example.org",
        "#same-page",
        "general.html",
        "../genindex.html",
        "../search.html?q=x",
        "../_modules/django/db.html",
        "../../outside.html",
        "../_static/logo.png",
    ],
)
def test_links_that_are_not_indexed_doc_pages_are_dropped(href: str) -> None:
    assert normalise_link(href, "faq/models.html") is None


def test_each_question_keeps_only_the_doc_pages_linked_in_its_own_text() -> None:
    questions = questions_in_page(FAQ_PAGE, "faq/models.html")

    assert [(q.question, q.sources) for q in questions] == [
        ("How can I see the raw SQL?", ["ref/settings.html", "topics/db/multi-db.html"]),
        (
            "Why is my migration not applied?",
            ["ref/django-admin.html", "topics/migrations.html", "howto/writing-migrations.html"],
        ),
    ]


def test_script_writes_numbered_answerable_cases(tmp_path: Path) -> None:
    faq = tmp_path / "docs" / "faq"
    faq.mkdir(parents=True)
    (faq / "models.html").write_text(FAQ_PAGE, encoding="utf-8")
    (faq / "index.html").write_text("<html><body><h1>FAQ</h1></body></html>", encoding="utf-8")
    out = tmp_path / "faq.jsonl"

    assert main([str(tmp_path / "docs"), str(out)]) == 0

    cases = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [c["id"] for c in cases] == ["faq-001", "faq-002"]
    assert cases[0] == {
        "id": "faq-001",
        "question": "How can I see the raw SQL?",
        "expected_sources": ["ref/settings.html", "topics/db/multi-db.html"],
        "answerable": True,
        "must_mention": [],
        "version": None,
        "notes": "derived from faq/models.html",
    }


def test_script_rejects_a_root_without_faq_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), str(tmp_path / "out.jsonl")]) == 2
    assert "No faq/ folder" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.corpus
def test_real_django_faq_gives_linked_questions(tmp_path: Path) -> None:
    if not DJANGO_TARBALL.is_file():
        pytest.skip(f"Django docs corpus not found at {DJANGO_TARBALL}")

    with tarfile.open(DJANGO_TARBALL) as tar:
        members = [m for m in tar.getmembers() if "/faq/" in m.name and m.isfile()]
        tar.extractall(tmp_path, members=members, filter="data")
    roots = [p.parent for p in tmp_path.glob("*/faq")]
    assert len(roots) == 1

    questions = collect_questions(roots[0])

    # The 3.2 FAQ has 28 questions that link into the rest of the docs.
    assert 20 <= len(questions) <= 40
    assert all(q.sources for q in questions)
    assert all(not s.startswith("faq/") and "#" not in s for q in questions for s in q.sources)
    by_question = {q.question: q.sources for q in questions}
    assert "howto/legacy-databases.html" in by_question["Can I use Django with a pre-existing database?"]


# A page shaped like Asciidoc's manual pages (gitfaq): topic headings (h2), questions as the terms
# of a labelled list, answers in the definitions, and a footer heading that links the suite's page.
LIST_FAQ_PAGE = """<!DOCTYPE html>
<html><body><div id="header"><h1>gitfaq(7) Manual Page</h1></div>
<div id="content">
<div class="sect1"><h2 id="_configuration">Configuration</h2>
<div class="sectionbody"><div class="dlist"><dl>
<dt class="hdlist1" id="user-name"><a class="anchor" href="#user-name"></a>What should I put in user.name?</dt>
<dd><p>Your name; see <a href="git-config.html">git-config(1)</a> and
<a href="gitfaq.html#user-name">this answer</a>.</p></dd>
<dt class="hdlist1" id="post-buffer">What does http.postBuffer really do?</dt>
<dd><p>It sets a buffer size (no link here).</p></dd>
<dt class="hdlist1" id="editor">How do I configure a different editor?</dt>
<dd><p>Read <a href="git-var.html">git-var(1)</a>.</p></dd>
</dl></div></div></div>
<div class="sect1"><h2 id="_git">GIT</h2>
<div class="sectionbody"><p>Part of the <a href="git.html">git(1)</a> suite</p></div></div>
</div></body></html>
"""


def test_list_questions_take_the_links_of_their_own_definition() -> None:
    questions = questions_in_page(LIST_FAQ_PAGE, "gitfaq.html")

    # Topic headings and the footer are not questions; a link back to the FAQ page is no answer.
    assert [(q.question, q.sources) for q in questions] == [
        ("What should I put in user.name?", ["git-config.html"]),
        ("How do I configure a different editor?", ["git-var.html"]),
    ]


def test_script_reads_named_faq_pages_with_an_id_prefix(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "gitfaq.html").write_text(LIST_FAQ_PAGE, encoding="utf-8")
    out = tmp_path / "git.jsonl"

    assert main([str(root), str(out), "--faq", "gitfaq.html", "--prefix", "git-faq"]) == 0

    cases = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(c["id"], c["expected_sources"]) for c in cases] == [
        ("git-faq-001", ["git-config.html"]),
        ("git-faq-002", ["git-var.html"]),
    ]
    assert main([str(root), str(out), "--faq", "missing.html"]) == 2


COMMITTED = Path(__file__).resolve().parents[1] / "tests" / "evals"


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("tarball", "page", "prefix", "dataset", "count"),
    [
        ("scrapy-2.8-docs-html.tar.gz", "faq.html", "scrapy-faq", "scrapy-faq.jsonl", 29),
        ("git-2.39-docs-html.tar.gz", "gitfaq.html", "git-faq", "git-faq.jsonl", 8),
    ],
)
def test_committed_faq_sets_are_what_the_script_derives(
    tmp_path: Path, tarball: str, page: str, prefix: str, dataset: str, count: int
) -> None:
    """The derived cases in the committed sets are exactly the script's output on the real FAQ page."""
    path = CORPORA / tarball
    if not path.is_file():
        pytest.skip(f"corpus not found at {path}")
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path, filter="data")
    roots = [p.parent for p in tmp_path.rglob(page)]
    assert len(roots) == 1
    out = tmp_path / "derived.jsonl"

    assert main([str(roots[0]), str(out), "--faq", page, "--prefix", prefix]) == 0

    derived = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    committed = [json.loads(line) for line in (COMMITTED / dataset).read_text(encoding="utf-8").splitlines()]
    assert len(derived) == count
    assert committed[:count] == derived
