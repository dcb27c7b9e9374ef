"""The eval report as console tables: retrieval per configuration, answers, agent reading, regressions."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from server.evals.report import EvalReport, Regression


def render(report: EvalReport, console: Console, regressions: Sequence[Regression] = ()) -> None:
    retrieval = Table(
        title=f"Retrieval — {report.dataset} ({report.answerable} answerable of {report.cases} cases)"
    )
    retrieval.add_column("config")
    for column in ("hit@1", "hit@5", "hit@10", "recall@10", "MRR@10", "nDCG@10", "p50 ms", "p95 ms"):
        retrieval.add_column(column, justify="right")
    for name, config in report.configs.items():
        m = config.metrics
        retrieval.add_row(
            name,
            *(
                f"{v:.3f}"
                for v in (m.hit_at_1, m.hit_at_5, m.hit_at_10, m.recall_at_10, m.mrr_at_10, m.ndcg_at_10)
            ),
            f"{m.latency_p50_ms:.1f}",
            f"{m.latency_p95_ms:.1f}",
        )
    console.print(retrieval)
    if report.answers is not None:
        a = report.answers.metrics
        answers = Table(title=f"Answers — backend {a.backend}")
        answers.add_column("metric")
        answers.add_column("value", justify="right")
        rows: list[tuple[str, str]] = [
            ("answer rate (answerable)", f"{a.answer_rate:.3f} of {a.answerable_cases}"),
            ("abstention rate (unanswerable)", f"{a.abstention_rate:.3f} of {a.unanswerable_cases}"),
            ("citation precision", _maybe(a.citation_precision)),
            ("must-mention rate", _maybe(a.must_mention_rate)),
            ("answers with every must-mention term", _maybe(a.complete_answer_rate)),
            ("answers citing an expected page", _maybe(a.expected_page_rate)),
            ("mean grounding score", f"{a.mean_grounding_score:.3f}"),
            ("latency p50 / p95 ms", f"{a.latency_p50_ms:.0f} / {a.latency_p95_ms:.0f}"),
            ("tokens in / out per case", f"{a.mean_input_tokens:.0f} / {a.mean_output_tokens:.0f}"),
            ("cost per case / total USD", f"{a.mean_cost_usd:.6f} / {a.total_cost_usd:.6f}"),
            ("errors", str(a.errors)),
        ]
        if report.answers.cache is not None:
            c = report.answers.cache
            rows.append(("cache hits / misses", f"{c.hits} / {c.misses}"))
        for row in rows:
            answers.add_row(*row)
        console.print(answers)
    if report.agent is not None:
        reading = Table(title=f"Agent reading — must-mention terms found (top {report.agent.k} hits)")
        for column in ("strategy", "cases", "terms found", "all terms", "tokens / case"):
            reading.add_column(column, justify="left" if column == "strategy" else "right")
        for name, s in report.agent.strategies.items():
            reading.add_row(
                name, str(s.cases), f"{s.mention_rate:.3f}", f"{s.complete_rate:.3f}", f"{s.mean_tokens:.0f}"
            )
        console.print(reading)
    for regression in regressions:
        console.print(
            f"[bold red]regression[/] {regression.scope}.{regression.metric}: "
            f"{regression.baseline:.3f} → {regression.current:.3f} (−{regression.drop:.3f})"
        )


def _maybe(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
