"""A bounded wrong-secret flood, run as its own process so it does not share the measuring
client's event loop: ``python -m tests.attack.flooder URL BEARER SECONDS CONNECTIONS``.

Each connection posts `initialize` with the bearer from its own loopback address (127.0.0.2 on),
back to back, until SECONDS pass; prints the count of each status code as JSON. Loopback only.
It prints "ready" once imported and starts when a line arrives on stdin, so the measurement
covers the flood and not the interpreter starting up.
"""

from __future__ import annotations

import json
import sys
import time
from urllib.parse import urlsplit

import anyio
import httpx

from tests.mcp_harness import INITIALIZE, JSON_RPC_HEADERS


async def connection(url: str, bearer: str, source: str, until: float, counts: dict[str, int]) -> None:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    headers = {**JSON_RPC_HEADERS, "Authorization": f"Bearer {bearer}"}
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:
        while time.monotonic() < until:
            response = await client.post(url, json=INITIALIZE, headers=headers)
            counts[str(response.status_code)] = counts.get(str(response.status_code), 0) + 1


async def main(url: str, bearer: str, seconds: float, connections: int) -> None:
    if urlsplit(url).hostname != "127.0.0.1":
        raise SystemExit("the flooder only targets 127.0.0.1")
    counts: dict[str, int] = {}
    until = time.monotonic() + seconds
    async with anyio.create_task_group() as group:
        for n in range(connections):
            group.start_soon(connection, url, bearer, f"127.0.0.{n + 2}", until, counts)
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    print("ready", flush=True)
    sys.stdin.readline()
    anyio.run(main, sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
