"""Starting and stopping a server process the way the benchmarks and the end-to-end tests do."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))

from bench_common import free_port, running

LISTEN = """
import socket, sys, time
sock = socket.socket()
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
print("listening", flush=True)
time.sleep(60)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def listener(log: Path) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """A small server that listens on a free port once it has printed to `log`."""
    port = free_port()
    return running([sys.executable, "-c", LISTEN, str(port)], os.environ, port, log, startup_timeout_s=30)


def test_running_yields_once_the_port_accepts_and_stops_the_process(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with listener(log) as process:
        assert alive(process.pid)
        assert "listening" in log.read_text()
    assert not alive(process.pid)


def test_a_server_the_caller_killed_is_left_as_it_is(tmp_path: Path) -> None:
    with listener(tmp_path / "server.log") as process:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL


def test_a_server_that_exits_early_fails_with_its_output(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-c", "import sys; print('bad config: no such key'); sys.exit(3)"]
    with (
        pytest.raises(RuntimeError, match=r"exited with 3: bad config: no such key"),
        running(command, os.environ, port, tmp_path / "server.log", startup_timeout_s=30),
    ):
        pytest.fail("the block must not run")


def test_a_server_that_never_listens_times_out_and_is_stopped(tmp_path: Path) -> None:
    port = free_port()
    pid_file = tmp_path / "pid"
    command = [
        sys.executable,
        "-c",
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)",
    ]
    with (
        pytest.raises(RuntimeError, match=f"did not listen on port {port} within 2 s"),
        running(command, os.environ, port, tmp_path / "server.log", startup_timeout_s=2),
    ):
        pytest.fail("the block must not run")
    assert not alive(int(pid_file.read_text()))
