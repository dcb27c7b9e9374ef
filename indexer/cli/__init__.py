"""`docgate-index`: build | update | list | stats | verify | drop.

Exit codes: 0 success; non-zero with one actionable line on stderr (see `indexer.errors`), and
9 when a site build or update kept going past pages it could not fetch: what it got is published
(the `--json` summary lists the failures under `crawl.failed`), but the collection is incomplete.
`--json` prints one JSON document on stdout for scripts and monitoring.

app.py            the app, its commands in order, and `main`
common.py         what every command shares: settings, one-line failures, JSON output, --config/--json
build.py          `build` and `update`
build_display.py  a build's progress and summary on stderr
collections.py    `list`, `stats`, `verify` and `drop`
"""

# The `docgate-index` entry point (pyproject.toml) names `indexer.cli:main`.
from indexer.cli.app import main

__all__ = ["main"]
