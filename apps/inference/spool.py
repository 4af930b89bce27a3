"""The inference log's spool: `INFERENCE_LOG_MODE = "spool"`.

In this mode a prediction's log row is appended to a file of the web process's own
(one `write()` of one line, COPY text format) before the answer is sent, and a drain
copies the file into the group tables in batches (one `COPY` per table per batch,
every `INFERENCE_SPOOL_LINGER_MS` or sooner under load). The request no longer waits
for PostgreSQL; the rows reach their tables a few milliseconds later.

Who drains: under gunicorn (INFERENCE_SPOOL_HOST_DRAIN), a *drain process* of the
server (`drain_inference_spool --follow`, `serve_host`), and the workers only append,
to RELAY files; elsewhere, a thread of each web process drains its own file.

Durability, as `docs/serving.md` states it:

- A killed web process loses nothing: a completed `write()` is in the kernel, not in
  the process. Its file is *adopted* and replayed by another process of the host (every
  drain looks every `INFERENCE_SPOOL_ADOPT_SECONDS`), or by the
  `drain_inference_spool` command; a RELAY file is copied to its end by the drain
  process, which follows it anyway.
- Replays never write a row twice: the group tables' key is (request_id, ts), a batch
  that meets a row already there is re-sent through `INSERT ... ON CONFLICT DO
  NOTHING`. The file records how far it was drained (`<file>.offset`), so a replay
  starts at most one batch early.
- A line PostgreSQL refuses (a value it cannot store, a key already taken by another
  row), a line whose group or schema is gone or whose schema now belongs to another
  organisation (each line names its organisation's id as well as its schema), and a
  line that is not a spool line, is moved to `rejected/` beside the spool with the
  reason, never dropped; the other rows of its batch are written.
- PostgreSQL being down, read-only or refusing for any other reason than the row
  itself delays the rows, it does not lose them: the drain retries with a back-off and
  the file keeps growing meanwhile.
- One table refusing every row for a reason of its own that may be mended (a column
  missing from an old table, a privilege revoked on one schema, a lock held on it past
  LOCK_TIMEOUT_MS) does not hold up the
  other tables, of this tenant or any other: its lines are moved to a *held* file of
  their own (`<host>.<pid>.<time>.<schema>.g<group>.held.spool`, owned like any spool
  file; a dead process's is taken over as it is) and retried on their own, a batch at
  a time with a back-off of up to HOLD_RETRY_MAX_SECONDS, until the table takes them
  (at most MAX_HELD_FILES per process; past that the batch waits as a whole).
- A crash of PostgreSQL loses nothing either: each batch's commit waits for the WAL
  flush before the file's offset moves past its rows (one flush per batch, off the
  request path; the direct mode's default skips it per row).
- Not covered: losing the host's disk, or the machine crashing before the kernel wrote
  the page out (the file is not fsync'ed per request).

Ownership: a process creates its file under a temporary name, takes an exclusive
`flock` on it and only then gives it its `.spool` name; an adopter takes the lock of a
`.spool` file without waiting, so it only ever gets files whose process is gone. The
drain process reads the RELAY files of live workers without their lock, whole lines
up to the size it saw after trying the lock: once it gets a lock, the worker let go
of the file (rotated, exited, died) and no line comes after. One drain process per
directory (HOST_LOCK); while one runs, adopters leave the RELAY files to it.

Only web processes log through the spool (those that loaded config/wsgi.py: gunicorn's
workers, which start it as they boot, and the development server). The
background worker and management commands log directly, so that no process that ends
without running its exit handlers (django-q's workers) leaves rows behind.

A line: schema, organisation id, group id, the writes it carries (CARRY, then the
usage of the provider calls the row logs: committed in the row's own transaction, so
exactly once with it), then the row's fields in `apps.inference.writer.FIELDS` order,
COPY text format. Lines without the carried field (written before it existed) are read
as they are. Changing FIELDS changes the format: lines of the old one are refused by
their field count, kept in `rejected/`.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from psycopg import errors, sql

logger = logging.getLogger(__name__)

SUFFIX = ".spool"
_CONTROLS = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x00": "\ufffd"})
BATCH_BYTES = 8 * 1024 * 1024
# A longer line is not spooled (the row is logged directly): a batch holds whole lines.
MAX_LINE_BYTES = BATCH_BYTES // 2
# Which organisation owns a schema is trusted for this long, as a web process trusts
# which tenant a host selects (TENANT_HOST_CACHE_SECONDS): one query per second, not
# one per batch.
OWNER_TRUST_SECONDS = 1.0
# A backlog at least this large is drained at once, without waiting for more rows.
BUSY_BYTES = 64 * 1024
ROTATE_BYTES = 64 * 1024 * 1024
# A held table's lines are tried again after 2, 4, 8 ... seconds, at most this long.
HOLD_RETRY_MAX_SECONDS = 60.0
# Held files a process keeps open at most (each is a descriptor). Beyond that, a
# table's error makes its batch wait as a whole, as when PostgreSQL is down.
MAX_HELD_FILES = 64
HELD = ".held"
# The files of web workers that only append: the server's drain process copies them
# (INFERENCE_SPOOL_HOST_DRAIN; `drain_inference_spool --follow`).
RELAY = ".relay"
# A line's fourth field starts with this: the writes the row's line carries (the
# provider usage of the calls it logs, `apps.core.db.spooled_later`), committed in
# the row's own transaction. Lines written before it existed have the row's request
# id there, which never starts with it; they are read as they are.
CARRY_TEXT = "u"
CARRY = CARRY_TEXT.encode()
# Held by the drain process of a spool directory: one at a time.
HOST_LOCK = ".host-drain.lock"
# The drain's connection waits this long for a table's lock (a long DDL on one
# tenant's table): past it, that table's lines are held and the others go on.
LOCK_TIMEOUT_MS = 5000
# libpq settings of the drain's connection, unless DATABASE_URL sets them: a server
# that vanished from the network is noticed within about half a minute rather than
# the kernel's quarter of an hour (over TCP; a local socket has nothing to wait for).
CONNECTION_BOUNDS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30000,
}


def copy_text(value: Any) -> str:
    """One value in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        # `in` is a memchr; JSON text from the writer has backslashes at most.
        if "\\" in value:
            value = value.replace("\\", "\\\\")
        if "\n" in value or "\t" in value or "\r" in value or "\x00" in value:
            value = value.translate(_CONTROLS)
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def encode_line(
    schema: str,
    tenant_id: int,
    group_id: int,
    values: Sequence[Any],
    carried: Sequence[str] = (),
) -> bytes:
    """A spool line: schema, organisation id, group id, the writes it carries if any
    (CARRY and their spool forms, `carried`: plain text without tabs, line breaks or
    backslashes), then the row's COPY text fields (copy_text of each). This runs
    once per prediction: the values are joined as they are, and escaped one by one
    only when the joined line shows that one of them needs it (a tab too many, a
    backslash other than the NULLs' own, a line break or a NUL)."""
    parts = [schema, str(tenant_id), str(group_id)]
    if carried:  # only then: a line without is read by drains older than the field
        parts.append(CARRY_TEXT + ";".join(carried))
    head = len(parts)
    nulls = 0
    for value in values:
        kind = value.__class__
        if kind is str:
            parts.append(value)
        elif value is None:
            parts.append("\\N")
            nulls += 1
        elif kind is bool:
            parts.append("t" if value else "f")
        else:
            parts.append(copy_text(value))
    text = "\t".join(parts)
    if (
        text.count("\\") != nulls
        or text.count("\t") != len(parts) - 1
        or "\n" in text
        or "\r" in text
        or "\x00" in text
    ):
        text = "\t".join([*parts[:head], *map(copy_text, values)])
    return (text + "\n").encode("utf-8", "replace")


@dataclass(eq=False)
class _File:
    path: Path
    fd: int  # holds the flock for as long as the file is ours
    offset: int = 0  # drained (committed) up to here
    offset_fd: int | None = None  # <path>.offset, kept open
    end: int | None = None  # set when the file is retired: no line comes after it
    closed: bool = False

    def record_offset(self) -> None:
        """Remember how far the file is drained, for a replay after a crash. A lost
        record only makes the replay start earlier, which writes no row twice."""
        if self.offset_fd is None:
            self.offset_fd = os.open(
                _offset_path(self.path), os.O_RDWR | os.O_CREAT, 0o600
            )
        os.pwrite(self.offset_fd, b"%20d" % self.offset, 0)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.offset_fd is not None:
            os.close(self.offset_fd)
        os.close(self.fd)


@dataclass(eq=False)
class _Held:
    """The lines of one table that refuses them for now, in a file of their own."""

    key: tuple[str, int, int]  # (schema, organisation id, group id)
    file: _File
    written: int = 0
    failures: int = 0
    retry_at: float = 0.0
    error: str = ""


@dataclass
class Spool:
    """The process's spool: its own file, and the thread that drains it.

    `lock` guards appending and swapping the file; `draining` guards the database
    connection and every drain, of this process's files or adopted ones. A drain
    takes `lock` briefly inside `draining`; nothing holds `lock` while taking
    `draining`."""

    directory: Path
    pid: int = field(default_factory=os.getpid)
    lock: threading.Lock = field(default_factory=threading.Lock)
    draining: threading.Lock = field(default_factory=threading.Lock)
    wake: threading.Event = field(default_factory=threading.Event)
    own: _File | None = None
    written: int = 0  # bytes appended to `own`
    retiring: list[_File] = field(default_factory=list)  # rotated, not yet drained
    conn: psycopg.Connection[Any] | None = None
    thread: threading.Thread | None = None
    started: bool = False
    stopping: bool = False
    last_adopt: float = 0.0
    backoff: float = 0.0
    explain_queued: dict[tuple[str, int], float] = field(default_factory=dict)
    owner_seen: dict[str, tuple[int | None, float]] = field(default_factory=dict)
    # (schema, organisation id, group id) -> its held lines (guarded by `draining`).
    held: dict[tuple[str, int, int], _Held] = field(default_factory=dict)
    # Held files of processes that are gone, retried as they are, never appended to.
    adopted: list[_Held] = field(default_factory=list)
    # This process only appends (to RELAY files); the drain process copies them.
    relay: bool = False
    # RELAY files this process let go of (rotated), until the drain process has them.
    released: list[Path] = field(default_factory=list)
    # This is the drain process: it follows the RELAY files of the live workers.
    host: bool = False
    followed: dict[Path, _File] = field(default_factory=dict)

    # --- the request side ----------------------------------------------------------

    def append(self, line: bytes) -> None:
        """Write one line; returns once the kernel holds it. Raises OSError (disk
        full, read-only directory): the caller logs the row directly instead."""
        with self.lock:
            if self.own is None:
                created = self._create(RELAY if self.relay else "")
                self.own, self.written = created, 0
            start = self.written
            try:
                n = os.write(self.own.fd, line)
            except OSError:
                os.ftruncate(self.own.fd, start)
                raise
            if n != len(line):  # a short write: take it back, never leave half a line
                os.ftruncate(self.own.fd, start)
                raise OSError(f"short write to {self.own.path}")
            self.written = start + n
            if self.relay:
                if self.written >= ROTATE_BYTES:
                    self._release()
                return  # the drain process looks at the file by itself
        if not self.wake.is_set():
            self.wake.set()

    def _release(self) -> None:
        """(relay) Let go of the own file: its lock goes with the descriptor, which
        tells the drain process that no line comes after; it copies the rest and
        removes the file. The next line starts a new one. Under `lock`."""
        own = self.own
        if own is not None:
            own.close()
            self.own, self.written = None, 0
            self.released = [p for p in self.released if p.exists()] + [own.path]

    def _create(self, tag: str = "") -> _File:
        # Rows hold the predictions' inputs and outputs: readable by this user only.
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        stem = f"{socket.gethostname()}.{os.getpid()}.{time.time_ns()}{tag}"
        temporary = self.directory / f"{stem}.new"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            path = self.directory / f"{stem}{SUFFIX}"
            os.rename(temporary, path)  # visible to adopters only once it is locked
        except BaseException:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise
        return _File(path, fd)

    def start(self, *, relay: bool = False) -> None:
        """Start the drain (and the replay of dead processes' files); from now on
        this process logs through the spool. A web worker does it as it boots.
        `relay`: no drain of its own; the server's drain process copies its files
        (INFERENCE_SPOOL_HOST_DRAIN)."""
        with self.lock:
            if relay or self.relay:
                self.relay = self.started = True
                return
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(
                    target=self._run, name="inference-spool", daemon=True
                )
                self.thread.start()
            self.started = True

    # --- the drain side ------------------------------------------------------------

    def _run(self) -> None:
        linger = settings.INFERENCE_SPOOL_LINGER_MS / 1000
        adopt_every = max(settings.INFERENCE_SPOOL_ADOPT_SECONDS, 0.1)
        busy = False
        while not self.stopping:
            if not self.host:
                self.wake.wait(timeout=adopt_every)
            elif not busy:  # the rows arrive in other processes: look every linger
                self.wake.wait(timeout=max(linger, 0.001))
            if self.stopping:
                break
            self.wake.clear()
            if not self.host and linger and self._pending() < BUSY_BYTES:
                time.sleep(linger)  # let a few more rows join the batch
            try:
                if self.host:
                    self.follow()
                    busy = self._following() >= BUSY_BYTES  # again at once
                else:
                    self.drain()
                if time.monotonic() - self.last_adopt >= adopt_every:
                    self.adopt()
                self.retry_held()
                self.backoff = 0.0
            except psycopg.Error as exc:  # unreachable, read-only, ...: not the rows
                with self.draining:
                    self._disconnect()
                self.backoff = min(max(self.backoff * 2, 0.25), 5.0)
                logger.warning(
                    "inference spool: rows wait, retrying in %.2f s: %s",
                    self.backoff,
                    " ".join(str(exc).split())[:300],
                )
                time.sleep(self.backoff)
                self.wake.set()
            except Exception:
                logger.exception("inference spool: drain failed")
                time.sleep(1.0)
                self.wake.set()

    # --- the drain process of a server (INFERENCE_SPOOL_HOST_DRAIN) ------------------

    def serve_host(self, *, parent: int | None = None) -> None:
        """Be the drain process of the directory until stop() (or until `parent`,
        the server that started it, is gone): copy the RELAY files of the live
        workers as they grow, finish and remove those they let go of, replay dead
        processes' files and retry held ones, as a worker's drain thread does for
        its own file. One process at a time: another waits for the lock."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if parent is not None:  # also while waiting for the lock
            threading.Thread(
                target=self._watch_parent,
                args=(parent,),
                name="inference-spool-parent",
                daemon=True,
            ).start()
        lock = os.open(self.directory / HOST_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                if self.stopping:
                    return  # never had the lock: nothing to finish
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    self.wake.wait(timeout=1.0)
            self.host = self.started = True
            self._run()
            try:  # what the workers appended before they stopped (they stop first)
                self.follow()
            except psycopg.Error as exc:
                logger.warning("inference spool: rows left for the next drain: %s", exc)
        finally:
            os.close(lock)

    def _watch_parent(self, parent: int) -> None:
        while not self.stopping:
            if os.getppid() != parent:  # the server died without stopping us
                logger.warning("inference spool: the server is gone; the drain stops")
                self.stopping = True
                self.wake.set()
                return
            time.sleep(1.0)

    def follow(self) -> int:
        """(The drain process) copy what the live workers' RELAY files hold so far
        (whole lines); a file whose worker let go of it (rotated, exited, died: its
        lock is free) is copied to its end and removed. Returns rows written."""
        total = 0
        with self.draining:
            for path in self.directory.glob(f"*{RELAY}{SUFFIX}"):
                if path not in self.followed:
                    try:
                        fd = os.open(path, os.O_RDONLY)
                    except FileNotFoundError:
                        continue
                    self.followed[path] = _File(path, fd, _read_offset(path))
            for path, spool in list(self.followed.items()):
                try:
                    fcntl.flock(spool.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    let_go = True  # no line comes after what the file holds now
                except BlockingIOError:
                    let_go = False
                total += self._drain_file(spool, os.fstat(spool.fd).st_size)
                if let_go or not path.exists():  # finished (or replayed by another)
                    self._remove(spool)
                    del self.followed[path]
        return total

    def _following(self) -> int:
        """Bytes the followed files hold beyond what is copied."""
        return sum(
            max(os.fstat(f.fd).st_size - f.offset, 0) for f in self.followed.values()
        )

    def _pending(self) -> int:
        own = self.own
        return 0 if own is None else self.written - own.offset

    def drain(self, timeout: float | None = None) -> int:
        """Copy everything this process has appended so far; returns rows written
        (0 when another drain held the lock for `timeout` seconds). A fully drained
        file larger than ROTATE_BYTES is retired for a new one."""
        if not self.draining.acquire(timeout=-1 if timeout is None else timeout):
            return 0
        try:
            total = self._drain_retiring()
            with self.lock:  # the file and its end as one (append swaps both)
                own, end = self.own, self.written
            if own is None:
                return total
            total += self._drain_file(own, end)
            if own.offset >= ROTATE_BYTES:
                with self.lock:
                    if self.own is own:
                        own.end = self.written
                        self.own, self.written = None, 0
                        self.retiring.append(own)
                total += self._drain_retiring()
            return total
        finally:
            self.draining.release()

    def _drain_retiring(self) -> int:
        total = 0
        for old in list(self.retiring):
            assert old.end is not None
            total += self._drain_file(old, old.end)
            if old.offset >= old.end:
                self._remove(old)
                self.retiring.remove(old)
        return total

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every line appended before the call is in its table, or held
        for a table that refuses it for now, or refused (tests, benchmarks and a
        process's exit). TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        if self.relay:
            self._flush_relay(deadline, timeout)
            return
        with self.lock:
            own, target = self.own, self.written
            waiting = [f for f in (own, *self.retiring) if f is not None]

        def done() -> bool:
            return all(
                f.closed or f.offset >= (target if f is own else (f.end or 0))
                for f in waiting
            )

        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"spool not drained in {timeout} s")
            before = [f.offset for f in waiting]
            try:
                self.drain(timeout=left)
            except psycopg.Error:
                if self.draining.acquire(timeout=max(left, 0)):
                    try:
                        self._disconnect()
                    finally:
                        self.draining.release()
                time.sleep(0.2)
                continue
            if [f.offset for f in waiting] == before:
                time.sleep(0.01)

    def _flush_relay(self, deadline: float, timeout: float) -> None:
        """flush() of a process that only appends: wait for the drain process's
        record of how far it copied the own file, and for the files let go of to be
        removed."""
        with self.lock:
            own, target, released = self.own, self.written, list(self.released)
        # A file gone meanwhile was let go of (rotated) and copied to its end.
        while (
            own is not None and own.path.exists() and _read_offset(own.path) < target
        ) or any(path.exists() for path in released):
            if time.monotonic() > deadline:
                raise TimeoutError(f"spool not drained in {timeout} s")
            time.sleep(0.002)

    def adopt(self, directory: Path | None = None) -> int:
        """Replay the files of processes that are gone; returns rows written."""
        self.last_adopt = time.monotonic()
        folder = directory or self.directory
        mine = {f.path for f in (self.own, *self.retiring) if f is not None}
        mine.update(held.file.path for held in self._held_files())
        mine.update(self.followed)
        # While a drain process runs, the RELAY files are its own (follow()), dead
        # writers' too: copying one beside it would refuse or hold its lines twice.
        relayed = _drain_process_runs(folder)
        total = 0
        for path in sorted(folder.glob(f"*{SUFFIX}")):
            if path in mine or (relayed and path.name.endswith(RELAY + SUFFIX)):
                continue
            orphan = _lock_orphan(path)
            if orphan is None:
                continue
            if path.name.endswith(HELD + SUFFIX):
                self._adopt_held(orphan)
                continue
            try:
                with self.draining:
                    end = os.fstat(orphan.fd).st_size
                    total += self._drain_file(orphan, end)
                    self._remove(orphan)
                logger.info("inference spool: replayed %s", path.name)
            except BaseException:
                orphan.close()  # the lock goes with it; someone retries later
                raise
        return total

    def _held_files(self) -> list[_Held]:
        return [*list(self.held.values()), *list(self.adopted)]

    def _is_current(self, held: _Held) -> bool:
        return not held.file.closed and (
            self.held.get(held.key) is held or any(h is held for h in self.adopted)
        )

    def _adopt_held(self, orphan: _File) -> None:
        """Take over a dead process's held file as it is (a batch per round later,
        like this process's own): not copied, and no drain waits for it now."""
        try:
            with self.draining:
                size = os.fstat(orphan.fd).st_size
                first = os.pread(orphan.fd, min(size, 4096), 0).split(b"\n", 1)[0]
                key = _parse(first + b"\n") or ("?", 0, 0)
                self.adopted.append(_Held(key, orphan, written=size))
        except BaseException:
            orphan.close()  # the lock goes with it; someone retries later
            raise
        logger.info("inference spool: adopted the held file %s", orphan.path.name)

    def retry_held(self, *, now: float | None = None) -> int:
        """Try again the held tables whose back-off is over, a batch each (the other
        tables wait for the drain meanwhile, so a long backlog is replayed over
        several rounds); returns rows written. A held file the table took whole is
        removed."""
        now = time.monotonic() if now is None else now
        total = 0
        more = False
        for held in self._held_files():
            if held.retry_at > now:
                continue
            with self.draining:
                if not self._is_current(held):
                    continue  # retried by another caller meanwhile, or stopped
                end = min(held.written, held.file.offset + BATCH_BYTES)
                try:
                    total += self._drain_file(held.file, end, hold=False)
                except psycopg.Error as exc:
                    if not _stalls_table(exc):
                        raise
                    self._held_again(held, exc)
                    continue
                if held.file.offset < held.written:
                    more = True
                    continue
                self._remove(held.file)
                if self.held.get(held.key) is held:
                    del self.held[held.key]
                else:
                    self.adopted = [h for h in self.adopted if h is not held]
                logger.warning(
                    "inference spool: %s.%s takes its held rows again",
                    held.key[0],
                    _table_of(held.key[2]),
                )
        if more:
            self.wake.set()  # the next batch in the drain's next round
        return total

    def retry_held_now(self) -> int:
        """Every held file, whatever its back-off, batch after batch until none
        moves (the drain command, after a table is mended); returns rows written."""
        total = 0
        while True:
            before = [(h.file.path, h.file.offset) for h in self._held_files()]
            total += self.retry_held(now=float("inf"))
            if [(h.file.path, h.file.offset) for h in self._held_files()] == before:
                return total

    def _hold(
        self, key: tuple[str, int, int], lines: list[bytes], exc: Any = None
    ) -> None:
        """Move one table's lines out of the way of the others' (see the module's
        docstring): appended to its held file before the drained offset moves past
        them, like any spool line; a failed write is taken back whole (the batch is
        retried). `exc`: the table just refused them (else it was held already and
        is not asked again before its retry)."""
        held = self.held.get(key)
        if held is None:
            schema, _, group_id = key
            held = _Held(key, self._create(f".{schema}.g{group_id}{HELD}"))
            self.held[key] = held
        data = b"".join(lines)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(held.file.fd, view) :]
        except OSError:
            os.ftruncate(held.file.fd, held.written)  # never half a line
            raise
        held.written += len(data)
        if exc is not None:
            self._held_again(held, exc, rows=len(lines))

    def _held_again(self, held: _Held, exc: Any, rows: int = 0) -> None:
        held.failures += 1
        # 2, 4, 8 ... seconds (the exponent bounded: 2.0 ** 1024 overflows).
        wait = min(2.0 ** min(held.failures, 16), HOLD_RETRY_MAX_SECONDS)
        held.retry_at = time.monotonic() + wait
        error = " ".join(str(exc).split())[:300]
        if rows or error != held.error:
            logger.error(
                "inference spool: %s.%s refuses its rows (%s); %s held in %s, "
                "retried in %.0f s, the other tables go on",
                held.key[0],
                _table_of(held.key[2]),
                error,
                f"{rows} row(s)" if rows else "its rows",
                held.file.path.name,
                wait,
            )
        held.error = error

    def _drain_file(self, spool: _File, end: int, *, hold: bool = True) -> int:
        total = 0
        while spool.offset < end:
            size = min(end - spool.offset, BATCH_BYTES)
            chunk = os.pread(spool.fd, size, spool.offset)
            if not chunk:  # the file is shorter than `end` says: nothing more to read
                break
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:
                if size < BATCH_BYTES:
                    break  # a line still being written (only by a dead process)
                stop = _line_end(spool, spool.offset + size, end)
                if stop is None:
                    break
                _reject_span(spool, spool.offset, stop, "a line longer than a batch")
                spool.offset = stop
            else:
                lines = chunk[:cut].splitlines(keepends=True)
                total += self._write(lines, spool, hold=hold)
                spool.offset += cut
            spool.record_offset()
        return total

    def _write(self, lines: list[bytes], spool: _File, *, hold: bool = True) -> int:
        """A COPY per target table, each its own transaction (the connection is in
        autocommit): one statement, two round trips. A replay makes a partial
        success harmless. Refused lines are kept, and the lines of a table that
        stalls are held (`hold`; otherwise its error is raised), once the whole batch
        went through (a batch retried after an error refuses them again)."""
        from apps.inference.writer import FIELDS

        tabs = len(FIELDS) + 2  # schema, organisation, group (carried writes: +1)
        # (lines, reason, the schema whose counters get their usage, or None)
        refused: list[tuple[list[bytes], str, str | None]] = []
        stalled: list[tuple[tuple[str, int, int], list[bytes], Any]] = []
        targets: dict[tuple[str, int, int], list[bytes]] = defaultdict(list)
        for line in lines:
            key = _parse(line, tabs)
            if key is None:
                refused.append(([line], "not a spool line of this version", None))
            else:
                targets[key].append(line)
        written = 0
        explain: list[tuple[str, int]] = []
        if targets:
            conn = self._connection()
            owners = self._owners(conn, {schema for schema, _, _ in targets})
            for key, rows in targets.items():
                schema, tenant_id, group_id = key
                if owners.get(schema) != tenant_id:
                    reason = (
                        f"schema {schema} no longer belongs to organisation {tenant_id}"
                    )
                    refused.append((rows, reason, None))
                    continue
                if hold and key in self.held:  # stalled: in order after its others
                    stalled.append((key, rows, None))
                    continue
                target = _target(schema, group_id)
                mark = len(refused)
                try:
                    written += self._copy(conn, schema, target, rows, refused)
                except psycopg.Error as error:
                    if not hold or not _stalls_table(error):
                        raise
                    opening = {k for k, _, _ in stalled if k not in self.held}
                    if len(self._held_files()) + len(opening) >= MAX_HELD_FILES:
                        raise  # out of held files: the batch waits as a whole
                    del refused[mark:]  # held whole, refused again when retried
                    stalled.append((key, rows, error))
                    continue
                if any(row.endswith(b"\tt\n") for row in rows):  # explain_requested
                    explain.append((schema, group_id))
        # The batch went through: the usage its held and refused rows carry is
        # committed now, apart from them, so that budgets see those calls too.
        for key, rows, cause in stalled:  # first: a failed write retries the batch
            if self._commit_usage_apart(conn, key[0], rows):
                rows = [_without_carried(line) for line in rows]
            self._hold(key, rows, cause)
        for kept, reason, counters in refused:
            if counters is not None:
                self._commit_usage_apart(conn, counters, kept)
            _reject_lines(spool, kept, reason)
        for schema, group_id in explain:
            self._explain_soon(schema, group_id)
        return written

    def _copy(
        self,
        conn: psycopg.Connection[Any],
        schema: str,
        target: sql.Composable,
        lines: list[bytes],
        refused: list[tuple[list[bytes], str, str | None]],
    ) -> int:
        """COPY the lines into their table, with the writes they carry in the same
        transaction; a replay's rows already there are skipped, and so are their
        carried writes; rows PostgreSQL refuses are found by halving and added to
        `refused`. Any other error is raised: the batch is retried later."""
        rows, carries = zip(*map(_split, lines), strict=True)
        try:
            try:
                with conn.cursor() as cursor:
                    if any(carries):
                        with conn.transaction():
                            _copy_into(cursor, target, rows)
                            _commit_carried(cursor, schema, carries)
                    else:  # autocommit: the COPY is its transaction
                        _copy_into(cursor, target, rows)
                return len(rows)
            except errors.UniqueViolation:  # a replay: some of these rows are in
                with conn.transaction(), conn.cursor() as cursor:
                    return _insert_missing(cursor, schema, target, rows, carries)
        except psycopg.Error as exc:
            kind = _refused(exc)
            if kind is None:
                raise
            if kind == "table" or len(lines) == 1:
                refused.append((lines, " ".join(str(exc).split())[:500], schema))
                return 0
            half = len(lines) // 2
            return self._copy(conn, schema, target, lines[:half], refused) + self._copy(
                conn, schema, target, lines[half:], refused
            )

    def _commit_usage_apart(
        self, conn: psycopg.Connection[Any], schema: str, lines: list[bytes]
    ) -> bool:
        """Commit the usage these lines carry in a transaction of its own: their rows
        are held or refused. False when PostgreSQL would not take it (the lines then
        keep it). A crash of this process before the batch's offset is recorded
        counts it again with the replay."""
        carries = [_split(line)[1] for line in lines]
        if not any(carries):
            return False
        try:
            with conn.transaction(), conn.cursor() as cursor:
                _commit_carried(cursor, schema, carries)
        except psycopg.Error as exc:
            logger.warning(
                "inference spool: usage of %d held or refused row(s) in %s not "
                "counted now: %s",
                len(lines),
                schema,
                " ".join(str(exc).split())[:300],
            )
            return False
        return True

    def _owners(
        self, conn: psycopg.Connection[Any], schemas: set[str]
    ) -> dict[str, int | None]:
        """Which organisation owns each schema, as read less than OWNER_TRUST_SECONDS
        ago (like the web process's own host-to-tenant cache)."""
        now = time.monotonic()
        stale = {s for s in schemas if self.owner_seen.get(s, (None, -1e9))[1] < now}
        if stale:
            found = _owners(conn, stale)
            for schema in stale:
                self.owner_seen[schema] = (found.get(schema), now + OWNER_TRUST_SECONDS)
        return {schema: self.owner_seen[schema][0] for schema in schemas}

    def _explain_soon(self, schema: str, group_id: int) -> None:
        """Queue the background explanation pass for rows sampled for it, once they
        are in the table (the request path does it itself in the direct mode)."""
        from apps.groups.serving import EXPLAIN_DEBOUNCE_SECONDS

        now = time.monotonic()
        key = (schema, group_id)
        if now - self.explain_queued.get(key, -1e9) < EXPLAIN_DEBOUNCE_SECONDS:
            return
        self.explain_queued[key] = now
        from apps.core.tasks import tenant_async

        try:
            tenant_async(
                "apps.inference.tasks.explain_pending",
                group_id,
                schema_name=schema,
                on_commit=False,
            )
        except Exception:  # the rows stay pending; the next sampled row retries
            logger.exception("inference spool: could not queue explanations")
            from django.db import connection

            connection.close()

    def _connection(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            from apps.core.db import libpq_params

            params = {**CONNECTION_BOUNDS, **libpq_params()}
            # Each batch's commit waits for the WAL flush (whatever
            # INFERENCE_LOG_SYNCHRONOUS_COMMIT says): it costs the requests nothing,
            # and the file's offset moves past rows only once a crash of PostgreSQL
            # can no longer take them.
            self.conn = psycopg.connect(**params, autocommit=True)
            self.conn.execute("SET synchronous_commit TO ON")
            self.conn.execute(f"SET lock_timeout TO {int(LOCK_TIMEOUT_MS)}")
        return self.conn

    def _disconnect(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def _remove(self, spool: _File) -> None:
        for path in (spool.path, _offset_path(spool.path)):
            path.unlink(missing_ok=True)
        spool.close()

    def stop(self) -> None:
        """At the process's exit: stop the thread, drain what is left; a file that
        cannot be drained now, held lines included, stays for adoption."""
        self.stopping = True
        self.wake.set()
        if self.relay:  # the drain process copies the rest, then removes the file
            with self.lock:
                self._release()
            return
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        try:
            self.flush(timeout=5.0)
        except Exception as exc:
            logger.warning("inference spool: %s left for replay: %s", self.own, exc)
        with self.lock:  # no append may slip in between the check and the removal
            own = self.own
            if own is not None and own.offset >= self.written:
                self.own = None
                self._remove(own)
        if self.draining.acquire(timeout=1.0):
            try:
                for held in self._held_files():
                    held.file.close()  # its lock goes: another process adopts it
                for followed in self.followed.values():
                    followed.close()  # the next drain process goes on from .offset
                self.held.clear()
                self.adopted.clear()
                self.followed.clear()
                self._disconnect()
            finally:
                self.draining.release()


def _target(schema: str, group_id: int) -> sql.Composable:
    from apps.inference.tables import table_name

    return sql.Identifier(schema, table_name(group_id))


def _columns() -> sql.Composed:
    from apps.inference.writer import FIELDS

    return sql.SQL(", ").join(sql.Identifier(f) for f in FIELDS)


def _parse(line: bytes, tabs: int | None = None) -> tuple[str, int, int] | None:
    """(schema, organisation id, group id) of a spool line, or None when it is not
    one of this version: `tabs` separators before the row's (the field count names
    the version; not checked when None), then one more when it carries writes,
    which must read as such."""
    try:
        schema, tenant_id, group_id, fourth, _ = line.split(b"\t", 4)
        carries = fourth.startswith(CARRY)
        if tabs is not None and line.count(b"\t") != tabs + carries:
            return None
        if not line.endswith(b"\n"):
            return None
        if carries and len(fourth) > 1:
            from apps.providers.resilience import spooled_usage_parse

            spooled_usage_parse(fourth[1:])
        return schema.decode(), int(tenant_id), int(group_id)
    except ValueError:  # too few fields, not a number, not UTF-8, not a write
        return None


def _split(line: bytes) -> tuple[bytes, bytes]:
    """(the row's COPY text, the writes it carries) of a spool line."""
    fields = line.split(b"\t", 4)
    if fields[3].startswith(CARRY):
        return fields[4], fields[3][1:]
    return line.split(b"\t", 3)[3], b""  # a line without carried writes


def _without_carried(line: bytes) -> bytes:
    """The line without the writes it carries (once they are committed apart)."""
    row, carried = _split(line)
    return line[: line.index(b"\t" + CARRY)] + b"\t" + row if carried else line


def _commit_carried(
    cursor: psycopg.Cursor[Any], schema: str, carries: Iterable[bytes]
) -> None:
    """The writes some lines carry, in their rows' transaction (the provider usage
    of the calls they log)."""
    from apps.providers.resilience import spooled_usage_commit, spooled_usage_parse

    usage = [u for carried in carries if carried for u in spooled_usage_parse(carried)]
    if usage:
        spooled_usage_commit(cursor, schema, usage)


def _owners(conn: psycopg.Connection[Any], schemas: set[str]) -> dict[str, int]:
    """Which organisation owns each schema now: a line whose organisation no longer
    does (deleted, its slug reused) must not land in the new owner's tables."""
    from django_tenants.utils import get_public_schema_name

    from apps.tenants.models import Organization

    table = sql.Identifier(get_public_schema_name(), Organization._meta.db_table)
    found = conn.execute(
        sql.SQL("SELECT schema_name, id FROM {} WHERE schema_name = ANY(%s)").format(
            table
        ),
        [sorted(schemas)],
    ).fetchall()
    return {schema: tenant_id for schema, tenant_id in found}


def _refused(exc: psycopg.Error) -> str | None:
    """Whether PostgreSQL refuses the rows themselves ("rows": a value, a key), or
    their table is gone ("table"); None for anything else: the batch is retried,
    or the table's lines are held (_stalls_table)."""
    state = exc.sqlstate or ""
    if state in ("42P01", "3F000"):  # undefined table, invalid schema name
        return "table"
    if state[:2] in ("22", "23"):  # data exception, integrity constraint violation
        return "rows"
    return None


def _stalls_table(exc: psycopg.Error) -> bool:
    """Whether the error is one table's own and lasts until someone mends it (an
    undefined column, a missing privilege, a type that no longer matches: SQLSTATE
    class 42 and 0A) or until a lock on it goes (55P03, after LOCK_TIMEOUT_MS): its
    lines are held and the other tables go on. Anything else (unreachable,
    read-only, out of space) is everyone's: the batch is retried."""
    state = exc.sqlstate or ""
    return state[:2] in ("42", "0A") or state == "55P03"


def _table_of(group_id: int) -> str:
    from apps.inference.tables import table_name

    return table_name(group_id)


def _copy_into(
    cursor: psycopg.Cursor[Any],
    target: Any,
    rows: Iterable[bytes],
    columns: sql.Composable | None = None,
) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(target, columns or _columns())
    with cursor.copy(statement) as copy:
        copy.write(b"".join(rows))


def _insert_missing(
    cursor: psycopg.Cursor[Any],
    schema: str,
    target: Any,
    rows: Sequence[bytes],
    carries: Sequence[bytes],
) -> int:
    """Rows some of which may be in the table already (a replay): through a
    temporary table, inserting those whose key is not there yet. A row whose key
    another, different row holds (a caller that sent the same X-Request-ID twice;
    two such rows in one batch) is not a replay: it gets a new request id of the
    same millisecond, derived from the row (a replay of it derives the same one),
    that names the first as client_request_id unless it names another already, and
    is inserted too. The writes a line carries are committed when its row is
    inserted, never for a row already there: each temporary row keeps the number
    of its line."""
    from apps.core.context import request_id_at

    columns = _columns()
    cursor.execute(
        sql.SQL("CREATE TEMP TABLE spool_replay (LIKE {}) ON COMMIT DROP").format(
            target
        )
    )
    cursor.execute("ALTER TABLE spool_replay ADD COLUMN spool_line integer")
    _copy_into(
        cursor,
        sql.Identifier("spool_replay"),
        (row[:-1] + b"\t%d\n" % n for n, row in enumerate(rows)),
        sql.SQL("{}, spool_line").format(columns),
    )
    # What a replay re-sends is a row that is there, under its key or (re-keyed by
    # an earlier pass) naming it; another row differs in what its request measured.
    same = (
        "(t.member_id, t.status, t.latency_ms, t.door, t.requester) IS NOT DISTINCT"
        " FROM (s.member_id, s.status, s.latency_ms, s.door, s.requester)"
    )
    # The lines whose rows went in: one per key inserted (lines with the same key
    # and the same measurements are one request's, written twice).
    insert = sql.SQL(
        "WITH t AS (INSERT INTO {} ({}) SELECT {} FROM spool_replay {} "
        "ON CONFLICT (request_id, ts) DO NOTHING RETURNING request_id, ts, member_id,"
        " status, latency_ms, door, requester) "
        "SELECT min(s.spool_line) FROM t JOIN spool_replay s "
        "ON s.request_id = t.request_id AND s.ts = t.ts AND {} "
        "GROUP BY t.request_id, t.ts"
    )
    cursor.execute(
        insert.format(target, columns, columns, sql.SQL(""), sql.SQL(same))  # type: ignore[arg-type]
    )
    inserted = [line for (line,) in cursor.fetchall()]
    cursor.execute(
        sql.SQL(
            "SELECT s.ctid, s.ts, concat_ws(',', s.request_id, extract(epoch FROM s.ts),"
            " s.member_id, s.status, s.latency_ms, s.door, s.requester)"
            " FROM spool_replay s "
            "WHERE NOT EXISTS (SELECT FROM {table} t WHERE t.request_id = s.request_id"
            " AND t.ts = s.ts AND {same}) "
            "AND NOT EXISTS (SELECT FROM {table} t WHERE t.ts = s.ts"
            " AND t.client_request_id = s.request_id::text AND {same})"
        ).format(table=target, same=sql.SQL(same))  # type: ignore[arg-type]
    )
    fresh = []
    for ctid, ts, identity in cursor.fetchall():
        # The same row replayed later gets the same new id, which its first pass
        # took: the insert below then skips it like any replayed row.
        fresh.append(request_id_at(ts, identity.encode()))
        cursor.execute(
            "UPDATE spool_replay SET request_id = %s, client_request_id = "
            "COALESCE(client_request_id, request_id::text) WHERE ctid = %s",
            [fresh[-1], ctid],
        )
    if fresh:
        where = sql.SQL("WHERE request_id = ANY(%s::uuid[])")
        cursor.execute(
            insert.format(target, columns, columns, where, sql.SQL(same)),  # type: ignore[arg-type]
            [fresh],
        )
        inserted += [line for (line,) in cursor.fetchall()]
    _commit_carried(cursor, schema, (carries[line] for line in inserted))
    return len(inserted)


def _rejected_file(spool: _File) -> int:
    folder = spool.path.parent / "rejected"
    folder.mkdir(mode=0o700, exist_ok=True)
    return os.open(
        folder / spool.path.name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
    )


def _reject_lines(spool: _File, lines: list[bytes], reason: str) -> None:
    """Keep refused lines, each after a `# reason` line, in rejected/<file>."""
    with open(_rejected_file(spool), "ab") as out:
        for line in lines:
            out.write(f"# {reason}\n".encode())
            out.write(line if line.endswith(b"\n") else line + b"\n")
    logger.error(
        "inference spool: %d row(s) refused, kept in rejected/%s: %s",
        len(lines),
        spool.path.name,
        reason,
    )


def _line_end(spool: _File, start: int, end: int) -> int | None:
    """The offset after the newline that ends the line running through `start`, or
    None if the file ends first."""
    position = start
    while position < end:
        chunk = os.pread(spool.fd, min(end - position, BATCH_BYTES), position)
        if not chunk:
            return None
        found = chunk.find(b"\n")
        if found >= 0:
            return position + found + 1
        position += len(chunk)
    return None


def _reject_span(spool: _File, start: int, stop: int, reason: str) -> None:
    """Keep a line too long for a batch, copied piece by piece."""
    with open(_rejected_file(spool), "ab") as out:
        out.write(f"# {reason}\n".encode())
        position = start
        while position < stop:
            chunk = os.pread(spool.fd, min(stop - position, BATCH_BYTES), position)
            out.write(chunk)
            position += len(chunk)
    logger.error(
        "inference spool: a %d-byte line kept in rejected/%s",
        stop - start,
        spool.path.name,
    )


def _offset_path(path: Path) -> Path:
    return path.with_name(path.name + ".offset")


def _lock_orphan(path: Path) -> _File | None:
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None  # its process is alive
    if not path.exists():  # drained and removed by another adopter meanwhile
        os.close(fd)
        return None
    return _File(path, fd, _read_offset(path))


def _drain_process_runs(directory: Path) -> bool:
    """Whether a drain process holds the directory's lock (this one included)."""
    try:
        fd = os.open(directory / HOST_LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _read_offset(path: Path) -> int:
    """How far a spool file was drained, as last recorded (0: never, or unreadable,
    which only makes a replay start earlier)."""
    try:
        return int(_offset_path(path).read_bytes().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


@dataclass
class Backlog:
    files: int  # spool files, of live processes or waiting for adoption
    pending_bytes: int  # written to them but not yet drained
    refused_rows: int  # kept in rejected/
    held_files: int = 0  # of those files, lines held for a table that refuses them


def backlog(directory: Path) -> Backlog:
    """What the spool directory holds right now (for /metrics and the command)."""
    files = pending = refused = held = 0
    for path in directory.glob(f"*{SUFFIX}"):
        try:
            size = path.stat().st_size
        except FileNotFoundError:  # drained and removed meanwhile
            continue
        files += 1
        held += path.name.endswith(HELD + SUFFIX)
        pending += max(size - _read_offset(path), 0)
    for path in (directory / "rejected").glob(f"*{SUFFIX}"):
        with open(path, "rb") as lines:
            refused += sum(1 for line in lines if line.startswith(b"# "))
    return Backlog(files, pending, refused, held)


_spool: Spool | None = None
_spool_lock = threading.Lock()


def active_spool() -> Spool | None:
    """The spool rows go through in this process, or None: rows are logged directly.
    A web process (one that loaded config/wsgi.py) starts its spool at its first row
    if its server did not start it at boot; other processes only use one that was
    started for them."""
    spool = _spool
    if spool is not None and spool.started:
        return None if spool.stopping else spool
    if not _web_process:
        return None
    spool = process_spool()
    spool.start()
    return spool


_web_process = False


def serve_from_this_process() -> None:
    """Mark this process (and the workers it forks) as serving web requests: their
    rows go through the spool in the spool mode (config/wsgi.py calls it)."""
    global _web_process
    _web_process = True


def process_spool() -> Spool:
    """This process's spool (a forked child gets a new one of its own)."""
    global _spool
    if _spool is None:
        with _spool_lock:
            if _spool is None:
                _spool = Spool(Path(settings.INFERENCE_SPOOL_DIR))
    return _spool


@atexit.register
def _at_exit() -> None:
    if _spool is not None and _spool.pid == os.getpid():
        _spool.stop()


def _forget_after_fork() -> None:
    global _spool, _spool_lock
    if _spool is not None:  # the parent's locks stay the parent's
        held = [h.file for h in _spool._held_files()]
        followed = list(_spool.followed.values())
        for inherited in (_spool.own, *_spool.retiring, *held, *followed):
            if inherited is not None:
                inherited.close()
    _spool, _spool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
