"""How a build shows itself on stderr: stage progress while it runs, the summary lines after."""

from __future__ import annotations

from rich.progress import Progress, ProgressColumn, Task, TaskID
from rich.text import Text

from indexer.build import BuildSummary
from indexer.cli.common import stderr
from indexer.crawl import CrawlReport


class RateColumn(ProgressColumn):
    """Items per second of the current stage (documents/s while parsing, embeddings/s while embedding)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:7.1f}/s" if speed else "       ", style="progress.data.speed")


class RichProgress:
    """Draws build stages with documents/chunks counts and a live rate."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def stage(self, name: str, total: int | None) -> None:
        if self._task is not None:
            self._progress.stop_task(self._task)
        self._task = self._progress.add_task(name, total=total)

    def advance(self, amount: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, amount)


def partial_message(summary: BuildSummary, report: CrawlReport) -> str:
    first = report.failed[0] if report.failed else None
    detail = f" (first: {first.url}: {first.reason})" if first is not None else ""
    outcome = (
        f"published generation {summary.generation} without them"
        if summary.status == "published"
        else f"generation {summary.generation} stays published"
    )
    return (
        f"crawl incomplete: {len(report.failed)} pages failed{detail}; {outcome}; "
        "run `docgate-index update` again to retry them"
    )


def print_summary(summary: BuildSummary) -> None:
    if summary.crawl is not None:
        print_crawl(summary.crawl)
    if summary.status == "unchanged":
        stderr.print(f"{summary.collection}: no changes; generation {summary.generation} stays published")
        print_skipped(summary)
        return
    stderr.print(
        f"{summary.collection}: published generation {summary.generation} — {summary.documents} documents, "
        f"{summary.chunks} chunks ({summary.chunks_embedded} embedded, {summary.chunks_reused} reused, "
        f"{summary.documents_removed} documents removed, {summary.documents_skipped} files skipped) "
        f"in {summary.seconds:.1f}s, {summary.embeddings_per_second:.0f} embeddings/s"
        + (
            f"; {summary.embedding_tokens} embedding tokens, ${summary.embedding_cost_usd:.4f}"
            if summary.embedding_backend == "openai"
            else ""
        )
    )
    print_skipped(summary)


def print_skipped(summary: BuildSummary) -> None:
    for skipped in summary.skipped_files:  # every one: a silently missing page is worse than a long list
        stderr.print(f"  skipped {skipped.path}: {skipped.reason}", markup=False, highlight=False)


def print_crawl(report: CrawlReport) -> None:
    stderr.print(
        f"crawl of {report.scope}: {report.pages_fetched} pages fetched, {report.not_modified} not modified, "
        f"{len(report.skipped)} skipped, {len(report.failed)} failed, {len(report.removed)} removed, "
        f"{report.bytes / 1000:.1f} kB in {report.seconds:.1f}s"
        + (" (limit reached: some pages were not discovered)" if report.truncated else ""),
        highlight=False,
        markup=False,
    )
    for outcome in report.failed:
        stderr.print(f"  failed: {outcome.url}: {outcome.reason}", highlight=False, markup=False)
