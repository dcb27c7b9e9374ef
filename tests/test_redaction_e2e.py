"""User text is redacted on arrival: no email, phone number or secret from a query reaches the
server's logs, its trace events or the audit log, not even through the rewritten queries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
import pytest

from server.retrieval.rewriting import keyword_form
from server.security.guards import redact
from tests.mcp_harness import call, http_server, http_session

EMAIL = "alice.smith@acme-corp.io"
PHONE = "+44 20 7946 0958"
SECRET = "sk-proj-Zq8rT4vW2xY6bN1mK9pL3sD7fG5hJ0aC"
QUERY = f"How do I configure retries? Contact {EMAIL} or {PHONE}, the key is {SECRET}"
# The pieces a rewrite would leave of them once `@`, `.`, `+` and `-` are gone.
FRAGMENTS = [
    EMAIL,
    "alice.smith",
    "alice smith",
    "acme-corp",
    "acme corp",
    PHONE,
    "7946 0958",
    "20 7946",
    SECRET,
    SECRET.removeprefix("sk-proj-"),
    "Zq8rT4vW2xY6bN1mK9pL3sD7fG5hJ0aC".lower(),
]


@pytest.fixture
def data_dir(lumen_data_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "served"
    shutil.copytree(lumen_data_dir, target)
    return target


def test_redacting_after_a_rewrite_would_be_too_late():
    """Why redaction must come first: the keyword rewrite removes what makes PII recognisable."""
    leaked = redact(keyword_form(QUERY))
    assert "alice" in leaked and "7946 0958" in leaked
    assert not any(fragment in keyword_form(redact(QUERY)) for fragment in FRAGMENTS)


def test_search_with_pii_leaves_none_in_logs_traces_or_audit(data_dir: Path):
    with http_server(data_dir) as url:

        async def main() -> dict[str, object]:
            async with http_session(url) as session:
                return await call(session, "search", query=QUERY, k=3)

        result = anyio.run(main)
        log_path = data_dir.parent / f"server-{url.split(':')[2].split('/')[0]}.log"
    server_log = log_path.read_text(encoding="utf-8")
    audit_log = (data_dir / "audit" / "audit.jsonl").read_text(encoding="utf-8")

    # The call really ran, was traced with its rewrites and audited: the checks below are not vacuous.
    assert result["rewritten_queries"], result
    traces = [json.loads(line) for line in server_log.splitlines() if '"tool_call"' in line]
    search_traces = [t for t in traces if t.get("tool") == "search"]
    assert search_traces, server_log[-2000:]
    trace = search_traces[-1]
    assert "[REDACTED:email]" in trace["query"] and "[REDACTED:phone]" in trace["query"]
    assert "[REDACTED:secret]" in trace["query"]
    assert trace["rewritten"] and all("retries" in v for v in trace["rewritten"]), trace["rewritten"]
    assert any(json.loads(line).get("tool") == "search" for line in audit_log.splitlines())

    for fragment in FRAGMENTS:
        assert fragment.lower() not in server_log.lower(), fragment
        assert fragment.lower() not in audit_log.lower(), fragment
    # What the client gets back is derived from the redacted text as well.
    assert not any(fragment in json.dumps(result) for fragment in FRAGMENTS)
