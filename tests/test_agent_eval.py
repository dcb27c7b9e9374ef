"""The agent-style eval: search alone vs search + fetch_chunk vs search + read_page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from indexer.embedding import Embedder
from server.evals.agent import STRATEGIES, run_agent
from server.evals.dataset import EvalCase
from server.retrieval.service import Access, DocService
from tests.conftest import open_service
from tests.test_evals import LUMEN_CASES, _eval

ACCESS = Access(tenant="eval", allowed=lambda name: True)
CASES = [
    EvalCase(
        id="install",
        question="How do I install the shop library?",
        answerable=True,
        must_mention=["pip install shop", "checkout_cart"],
        version="2.0",
    ),
    EvalCase(
        id="coupons",
        question="What happens when a coupon has expired at checkout?",
        answerable=True,
        must_mention=["CouponExpired", "stacking"],
        version="2.0",
    ),
    EvalCase(id="no-terms", question="Who maintains the shop?", answerable=True, must_mention=[]),
    EvalCase(id="unanswerable", question="Kubernetes?", answerable=False, must_mention=["helm"]),
    EvalCase(id="gone", question="checkout", answerable=True, must_mention=["checkout"], version="9.9"),
]


@pytest.fixture(scope="module")
def service(shop_data_dir: Path, model_dir: Path, embedder: Embedder) -> DocService:
    return open_service(shop_data_dir, model_dir, embedder)


def test_follow_up_reads_find_what_snippets_cannot_and_cost_more(service):
    report = run_agent(service, ACCESS, CASES, "shop", None)
    assert set(report.strategies) == set(STRATEGIES)
    search, fetch, page = (report.strategies[name] for name in STRATEGIES)
    # Cases without terms or not answerable are not scored; a failing case counts as read nothing.
    assert search.cases == fetch.cases == page.cases == 3
    assert fetch.mention_rate >= search.mention_rate and page.mention_rate >= search.mention_rate
    assert page.mention_rate > search.mention_rate
    assert search.mean_tokens < fetch.mean_tokens and search.mean_tokens < page.mean_tokens
    missed = {miss.id: miss for miss in report.misses}
    # The install hit's anchor is the page title's: read_page reads the whole page, code example included.
    assert "install" not in missed
    assert "version '9.9'" in (missed["gone"].error or "")
    assert missed["gone"].missing_terms == ["checkout"]


def test_docgate_eval_reports_the_agent_strategies(lumen_data_dir: Path, tmp_path: Path):
    data_dir = tmp_path / "data"
    shutil.copytree(lumen_data_dir, data_dir)
    dataset = tmp_path / "lumen.jsonl"
    dataset.write_text("".join(json.dumps(c) + "\n" for c in LUMEN_CASES), encoding="utf-8")
    out = tmp_path / "report.json"
    run = _eval(data_dir, str(dataset), "-c", "lumen", "--no-answers", "--out", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Agent reading" in run.stdout and "search_read_page" in run.stdout
    agent = json.loads(out.read_text())["agent"]
    assert agent["strategies"]["search"]["cases"] == 4  # answerable cases that name terms
    assert (
        agent["strategies"]["search_read_page"]["mention_rate"]
        >= agent["strategies"]["search"]["mention_rate"]
    )
    skipped = _eval(data_dir, str(dataset), "-c", "lumen", "--no-answers", "--no-agent", "--out", str(out))
    assert skipped.returncode == 0 and json.loads(out.read_text())["agent"] is None
