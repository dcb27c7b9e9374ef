"""Review item: a server pointed at the wrong data dir must say so, not just serve nothing."""

from __future__ import annotations

import json
from pathlib import Path

import anyio

from tests.mcp_harness import call, http_server, http_session


def test_empty_data_dir_is_named_in_the_log_and_flagged_by_list_collections(isolated_env: Path) -> None:
    isolated_env.mkdir(parents=True, exist_ok=True)
    with http_server(isolated_env) as url:

        async def body() -> dict[str, object]:
            async with http_session(url) as session:
                return await call(session, "list_collections")

        listing = anyio.run(body)
        log = (isolated_env.parent / f"server-{url.split(':')[2].split('/')[0]}.log").read_text(
            encoding="utf-8"
        )
    assert listing["collections"] == []
    assert isinstance(listing["warning"], str) and "docgate-index build" in listing["warning"]
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    served = [e for e in events if e.get("event") == "serving_data_dir"]
    assert served and served[0]["data_dir"] == str(isolated_env)
    assert any(e.get("event") == "catalog_empty" and e.get("level") == "warning" for e in events)
