"""Which page an extractive answer quotes, and how its quotes are laid out.

Unit tests of `server.answering.pages` (page kinds, the title signal, the normative rule) and of
`extractive_answer` on written evidence with the bundled model: section headings above quotes,
the example that follows a chosen statement, a long example kept whole.
"""

from __future__ import annotations

import re

import pytest

from indexer.embedding import Embedder
from indexer.models import section_label
from server.answering.extractive import extractive_answer
from server.answering.grounding.claims import split_claims
from server.answering.grounding.evidence import Evidence
from server.answering.pages import PageCandidate, SectionFit, choose_page, page_kind, pointed_page

FIT = SectionFit(coverage=0.5, heading=0.0, foreign=0.0)


@pytest.mark.parametrize(
    ("source", "title", "kind"),
    [
        ("internals/contributing/writing-code/unit-tests.html", "Unit tests", "contributor"),
        ("contributing.html", "Contributing to Scrapy", "contributor"),
        ("docs/contribute/index.md", "How to contribute", "contributor"),
        # `contrib` is where Django keeps its bundled apps: user documentation.
        ("ref/contrib/admin/actions.html", "Admin actions", "normative"),
        ("topics/testing/tools.html", "Testing tools", "normative"),
        ("seps/1234-tasks.mdx", "SEP-1234: Tasks", "proposal"),
        ("releases/3.2.html", "Django 3.2 release notes", "changelog"),
    ],
)
def test_page_kind_from_path_and_title(source: str, title: str, kind: str) -> None:
    assert page_kind(source, title) == kind


def test_a_contributor_guide_gives_way_to_a_user_page_that_covers_as_much() -> None:
    contributor = PageCandidate("internals/contributing/unit-tests.html", "contributor", 1.4, FIT)
    user = PageCandidate("topics/testing/tools.html", "normative", 1.1, FIT)
    assert choose_page([contributor, user]) == user
    # ... but not to one that covers less of the question.
    thin = PageCandidate("topics/testing/tools.html", "normative", 1.1, SectionFit(0.2, 0.0, 0.0))
    assert choose_page([contributor, thin]) == contributor


def test_the_page_whose_title_names_the_subject_wins_a_close_call() -> None:
    multi_db = PageCandidate("topics/db/multi-db.html", "normative", 1.25, FIT, title=0.05)
    transactions = PageCandidate("topics/db/transactions.html", "normative", 1.05, FIT, title=0.40)
    assert choose_page([multi_db, transactions]) == transactions
    # Clearly better evidence still wins over a title.
    strong = PageCandidate("topics/db/multi-db.html", "normative", 1.80, FIT, title=0.05)
    assert choose_page([strong, transactions]) == strong


def _evidence(n: int, source: str, title: str, headings: list[str], text: str) -> Evidence:
    return Evidence(
        chunk_id=f"c{n}",
        title=title,
        heading_path=headings,
        source=source,
        text=text,
        retrieval_score=1.0 / n,
    )


QUERYSETS = _evidence(
    1,
    "ref/querysets.html#or",
    "QuerySet API reference",
    ["QuerySet API reference", "Operators that return new QuerySets", "OR (|)"],
    "Combines two QuerySets using the SQL OR operator so that rows matching either filter are "
    "returned. The following are equivalent:\n\n"
    "```\nModel.objects.filter(x=1) | Model.objects.filter(y=2)\n"
    "Model.objects.filter(Q(x=1) | Q(y=2))\n```",
)
CSV = _evidence(
    1,
    "howto/outputting-csv.html#using-the-python-csv-library",
    "Outputting CSV with Django",
    ["Outputting CSV with Django", "Using the Python CSV library"],
    "Here is an example view that returns a downloadable CSV file built with the csv module:\n\n```\n"
    + "\n".join(
        [
            "import csv",
            "from django.http import HttpResponse",
            "",
            "def some_view(request):",
            "    response = HttpResponse(",
            "        content_type='text/csv',",
            "        headers={'Content-Disposition': 'attachment; filename=\"somefilename.csv\"'},",
            "    )",
            "    writer = csv.writer(response)",
            "    writer.writerow(['First row', 'Foo', 'Bar', 'Baz'])",
            "    writer.writerow(['Second row', 'A', 'B', 'C', 'Testing', 'Quote'])",
            "    writer.writerow(['Third row', 'D', 'E', 'F', 'More testing', 'Another quote'])",
            "    writer.writerow(['Fourth row', 'G', 'H', 'I', 'Yet more', 'And another'])",
            "    return response",
        ]
    )
    + "\n```",
)


def _answer(embedder: Embedder, question: str, evidence: list[Evidence]) -> str:
    return extractive_answer(
        question,
        evidence,
        embedder.embed,
        embedder.count_tokens,
        max_sentences=4,
        token_budget=300,
    ).answer


def test_quotes_sit_under_the_heading_of_their_section(embedder: Embedder) -> None:
    answer = _answer(embedder, "How do I combine two querysets with OR?", [QUERYSETS])
    first, *rest = answer.split("\n\n")
    # The heading is the subject of "Combines two QuerySets…": the page title and the section.
    assert (
        first
        == "### QuerySet API reference › OR (|)"
        == "### " + section_label(QUERYSETS.title, QUERYSETS.heading_path)
    )
    assert any("Combines two QuerySets" in block for block in rest)
    # Headings are layout, never claims: every sentence is still cited and checked.
    claims = split_claims(answer)
    assert [c.text for c in claims if c.kind == "heading"] == [first]
    assert all(c.citations for c in claims if c.kind == "sentence")


def test_the_example_after_a_chosen_statement_comes_along(embedder: Embedder) -> None:
    answer = _answer(embedder, "How do I combine two querysets with OR?", [QUERYSETS])
    assert "The following are equivalent [1]:" in answer
    assert "Model.objects.filter(Q(x=1) | Q(y=2))" in answer
    assert answer.count("```") == 2


def test_a_long_example_is_quoted_whole_with_the_sentence_that_introduces_it(embedder: Embedder) -> None:
    code = CSV.text.split("\n\n", 1)[1]
    assert embedder.count_tokens(code) > 120  # longer than the examples quoted before
    answer = _answer(embedder, "How do I return a downloadable CSV file from a view?", [CSV])
    assert "example view that returns a downloadable CSV file" in answer
    assert code in answer
    assert re.search(r"\[1\]:\n\n```", answer)


def test_the_section_that_covers_more_of_the_question_wins_a_close_call() -> None:
    thin = PageCandidate("ref/a.html", "normative", 1.10, SectionFit(0.3, 0.0, 0.0))
    covering = PageCandidate("ref/b.html", "normative", 1.05, SectionFit(0.8, 0.0, 0.0))
    assert choose_page([thin, covering]) == covering


def test_a_section_that_covers_clearly_more_of_the_question_outweighs_a_title_and_better_evidence() -> None:
    # "How can a server ask the client's language model to generate a completion for it?"
    completion = PageCandidate(
        "server/completion.mdx", "normative", 1.30, SectionFit(0.43, 0.14, 0.0), title=0.49
    )
    sampling = PageCandidate("client/sampling.mdx", "normative", 1.20, SectionFit(0.86, 0.0, 0.0), title=0.08)
    assert choose_page([completion, sampling]) == sampling
    # A smaller lead in coverage leaves the choice to the scores.
    closer = PageCandidate("client/sampling.mdx", "normative", 1.20, SectionFit(0.66, 0.0, 0.0), title=0.08)
    assert choose_page([completion, closer]) == completion
    # The lead never carries a changelog past a normative page that scored higher.
    changelog = PageCandidate("changelog.mdx", "changelog", 1.20, SectionFit(1.0, 0.0, 0.0))
    assert choose_page([completion, changelog]) == completion


HASHERS = "\n".join(
    [
        "   ```",
        "   PASSWORD_HASHERS = [",
        *[
            f"       'django.contrib.auth.hashers.{name}',"
            for name in (
                "Argon2PasswordHasher",
                "PBKDF2PasswordHasher",
                "PBKDF2SHA1PasswordHasher",
                "BCryptSHA256PasswordHasher",
                "ScryptPasswordHasher",
                "MD5PasswordHasher",
            )
        ],
        "   ]",
        "   ```",
    ]
)
ARGON2 = _evidence(
    1,
    "topics/auth/passwords.html#using-argon2-with-django",
    "Password management in Django",
    ["Password management in Django", "Using Argon2 with Django"],
    "To use Argon2 as your default storage algorithm, do the following:\n\n"
    "1. Install the argon2-cffi library, for example with pip install argon2-cffi, in the "
    "environment that runs the project and its tests.\n"
    "2. Modify PASSWORD_HASHERS to list Argon2PasswordHasher first. That is, in your settings "
    "file you would put:\n\n" + HASHERS + "\n\n"
    "   Keep or remove the other entries depending on whether existing passwords must still be "
    "checked.\n"
    "3. Run the test suite again so that every test hashes with the new algorithm from now on.",
)


def test_a_list_item_with_its_nested_code_is_quoted_whole_up_to_240_tokens(embedder: Embedder) -> None:
    item = ARGON2.text.split("\n2. ", 1)[1].split("\n3. ", 1)[0]
    assert 160 < embedder.count_tokens(item) <= 240  # longer than the items quoted before
    answer = _answer(embedder, "How do I make Django hash passwords with Argon2 by default?", [ARGON2])
    assert "Modify PASSWORD_HASHERS to list Argon2PasswordHasher first" in answer
    assert HASHERS in answer


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("See Deploying widgets for ways to serve widgets in production.", "howto/deploying.html"),
        ("For the full list, see the Widget settings reference.", "ref/settings.html"),
        ("Widgets are cached; refer to Deploying widgets.", "howto/deploying.html"),
        ("See also Deploying widgets.", "howto/deploying.html"),
        ("See Managing widgets (e.g. buttons, menus) for the basics.", "howto/index.html"),
        # A one-word title could be anything ("See Tasks"); a title that goes on, or only starts
        # alike, names another thing ("Widget settings" is not "Widget settings reference").
        ("See Tasks for the details.", None),
        ("See Deploying widgetsmith for the details.", None),
        ("Widgets are cached; refer to Deploying widgets behind a CDN.", None),
        ("See Managing widgets settings for the list.", None),
        ("Deploying widgets is covered elsewhere.", None),  # names the page without sending the reader
    ],
)
def test_a_statement_points_to_a_retrieved_page_by_its_title(statement: str, expected: str | None) -> None:
    titles = {
        "howto/deploying.html": "Deploying widgets",
        "ref/settings.html": "Widget settings reference",
        "topics/tasks.html": "Tasks",
        "howto/index.html": "Managing widgets (e.g. buttons, menus)",
        "howto/short.html": "Managing widgets",
    }
    assert pointed_page(statement, titles) == expected


WIDGET_OVERVIEW = _evidence(
    1,
    "howto/widgets/index.html#configuring-widgets",
    "Managing widgets",
    ["Managing widgets", "Configuring widgets"],
    "Widgets are files the browser loads next to each page while you develop the site. "
    "See Deploying widgets for proper strategies to serve widgets in production environments.",
)
WIDGET_DEPLOYMENT = _evidence(
    2,
    "howto/widgets/deployment.html#serving-widgets",
    "Deploying widgets",
    ["Deploying widgets", "Serving widgets"],
    "Run the gatherwidgets command to copy every widget into WIDGET_ROOT, then configure your web "
    "server to serve the files in WIDGET_ROOT under the URL WIDGET_URL.",
)


def test_the_answer_follows_the_docs_pointer_to_a_retrieved_page(embedder: Embedder) -> None:
    question = "How do I get my widgets served in production?"
    answer = _answer(embedder, question, [WIDGET_OVERVIEW, WIDGET_DEPLOYMENT])
    assert "gatherwidgets" in answer and "WIDGET_ROOT" in answer
    assert "See Deploying widgets" not in answer
    # Without the page it points to, the pointer is still the best the overview has to say; and a
    # pointer to a contributor guide is not followed past the normative rule.
    alone = _answer(embedder, question, [WIDGET_OVERVIEW])
    assert "See Deploying widgets for proper strategies" in alone
    internal = WIDGET_DEPLOYMENT.model_copy(update={"source": "internals/deploying-widgets.html"})
    assert "See Deploying widgets for proper strategies" in _answer(
        embedder, question, [WIDGET_OVERVIEW, internal]
    )
