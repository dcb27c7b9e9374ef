"""The usage store: per-tenant token usage, open reservations and rate buckets in one SQLite file.

Several requests of one process and several server processes on one host share these counters, so
they live in SQLite in WAL mode (`<data dir>/server/usage.sqlite3`, mode 0600) rather than in memory:

* every change is one `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock before reading,
  so check-then-update is atomic across threads (one connection behind a lock) and across processes
  (the file lock; a busy writer is waited for up to `busy_timeout_s`);
* a committed transaction survives `kill -9` of the process (the WAL is in the OS page cache);
  `durable=True` additionally fsyncs the WAL at commit (`synchronous=FULL`), which also makes every
  earlier commit survive a power loss. Charges use it; reservations and rate buckets, whose loss
  only errs towards letting a request through once more, do not pay the ~5 ms fsync.

Tables: `token_usage(tenant, day, used)` settled tokens per UTC day; `token_reservations(id, tenant,
day, tokens, owner)` tokens held by calls in flight, `owner` naming the process (pid and start time)
so a process that died with calls in flight can be recognised and its holds released;
`rate_buckets(tenant, tokens, updated)`; `meta(key, value)` one-time facts such as a migration done.

Without a path the store is an in-memory database of one process (tests, `docgate search`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import structlog

from server.errors import LimitsUnavailable

log = structlog.get_logger()

SCHEMA = """
CREATE TABLE IF NOT EXISTS token_usage (
    tenant TEXT NOT NULL,
    day INTEGER NOT NULL,
    used INTEGER NOT NULL CHECK (used >= 0),
    PRIMARY KEY (tenant, day)
);
CREATE TABLE IF NOT EXISTS token_reservations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    day INTEGER NOT NULL,
    tokens INTEGER NOT NULL CHECK (tokens >= 0),
    owner TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS token_reservations_by_tenant ON token_reservations (tenant, day);
CREATE TABLE IF NOT EXISTS rate_buckets (
    tenant TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def process_identity(pid: int) -> str | None:
    """`pid:start-time` of a running process, or None when no such process runs.

    The start time (clock ticks since boot, from /proc) tells a restarted server that happens to get
    the same pid (PID 1 in a container, every time) from the one that died. Without /proc only the
    pid is known, and a live process with a reused pid keeps a dead one's holds until the day ends.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None  # /proc works here: the process is gone
        return str(pid) if _pid_alive(pid) else None
    except OSError:
        return str(pid) if _pid_alive(pid) else None
    # Field 2 (the command name) may hold spaces and parentheses: split after its closing one.
    fields = stat.rsplit(")", 1)[-1].split()
    return f"{pid}:{fields[19]}" if len(fields) > 19 else str(pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class UsageStore:
    """One connection to the usage database, shared by the threads of this process."""

    def __init__(self, path: Path | None = None, *, busy_timeout_s: float = 5.0) -> None:
        self.path = path
        self.owner = process_identity(os.getpid()) or str(os.getpid())
        self._lock = threading.Lock()
        self._durable = False
        self._closed = False
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                # Created 0600 before SQLite opens it; its -wal and -shm files copy these bits.
                os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            self._conn = sqlite3.connect(
                ":memory:" if path is None else str(path),
                timeout=busy_timeout_s,
                isolation_level=None,  # transactions are begun and committed explicitly
                check_same_thread=False,  # guarded by self._lock instead
            )
            if path is not None:
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            with self.transaction() as conn:
                self._create_schema(conn)
        except (OSError, sqlite3.Error) as exc:
            raise LimitsUnavailable(f"cannot open the usage store {path}: {exc}") from exc

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction: committed when the block ends, rolled back on error.

        SQLite failures (a writer holding the lock past the busy timeout, a full disk, a damaged
        file) become `LimitsUnavailable`: callers deny rather than count wrongly."""
        with self._lock:
            if self._closed:
                raise LimitsUnavailable("the usage store is closed")
            conn = self._conn
            try:
                if durable != self._durable:
                    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                    self._durable = durable
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise LimitsUnavailable(f"the usage store is unavailable: {exc}") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise LimitsUnavailable(f"the usage store is unavailable: {exc}") from exc
                raise

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.close()


def release_dead_holds(conn: sqlite3.Connection, me: str) -> int:
    """Delete the reservations of processes that no longer run; returns how many tokens were freed.

    A server killed with calls in flight never settles them. Those calls sent nothing back (a call
    settles before its response is written), so their holds are released, not charged."""
    owners = [row[0] for row in conn.execute("SELECT DISTINCT owner FROM token_reservations")]
    freed = 0
    for owner in owners:
        if owner == me or _owner_alive(owner):
            continue
        (tokens,) = conn.execute(
            "SELECT COALESCE(SUM(tokens), 0) FROM token_reservations WHERE owner = ?", (owner,)
        ).fetchone()
        conn.execute("DELETE FROM token_reservations WHERE owner = ?", (owner,))
        freed += int(tokens)
        log.info("budget_holds_released", owner=owner, tokens=int(tokens))
    return freed


def _owner_alive(owner: str) -> bool:
    pid_text = owner.split(":", 1)[0]
    if not pid_text.isdigit():
        return False
    return process_identity(int(pid_text)) == owner
