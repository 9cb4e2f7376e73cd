"""Live updates for ``runproc serve``: a run's journal and the runs list as server-sent events.

A run started from the command line writes its journal into the state store; the server sees
it by polling the store, not by being told (the runner does not know the server exists, and
a PostgreSQL state may be written from any machine). Polls are shared: one poller per watched
run (and one for the runs list), each asking the store once a tick and fanning what it finds
out to every subscriber, so fifty people watching one run during an incident cost one query
per tick, not fifty. A poller stops when its last subscriber leaves.

What is streamed was redacted before it was stored (the run's redactor masks the journal), as
everything else the server shows.

The pollers are asyncio tasks of the server's event loop; the store is asked on a worker
thread (``anyio.to_thread``), since its drivers block.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio.to_thread

# how often a poller asks the store: a step transition reaches a browser within a tick plus
# the network, well under the one second
INTERVAL = 0.25
# a run that stays 'running' with nothing new this long is checked for a runner that died
# (the store's settle: its pid, or its lease), so a viewer sees it interrupted
SETTLE_AFTER = 5.0
# the runs list streams the runs started this recently when a viewer joins: a run started
# between the page's rendering and the stream's start is not missed
RECENT = timedelta(seconds=60)

Item = tuple[str, dict[str, Any]]  # (event name, data)


class Hub:
    """The shared pollers of one server, keyed by event loop (a test client runs its own)."""

    def __init__(self, store: Any, interval: float = INTERVAL) -> None:
        self.store = store
        self.interval = interval
        self.polls = 0  # store queries made by pollers (a test checks 50 viewers cost one a tick)
        self._stopping = threading.Event()
        self._runs: dict[tuple[int, str], _RunFeed] = {}
        self._lists: dict[int, _ListFeed] = {}

    def close(self) -> None:
        """The server stops: every stream ends (uvicorn waits for open responses to finish).
        Safe from a signal handler or another thread."""
        self._stopping.set()

    def watching(self) -> dict[str, int]:
        """Each followed run's id and how many viewers its poller serves."""
        out: dict[str, int] = {}
        for (_, run_id), feed in list(self._runs.items()):
            out[run_id] = out.get(run_id, 0) + len(feed.subscribers)
        return out

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def query(self, fn: Any, *args: Any) -> Any:
        self.polls += 1
        return await anyio.to_thread.run_sync(fn, *args)

    # ------------------------------------------------------------ subscriptions

    async def follow(self, run_id: str, after: int) -> AsyncIterator[Item]:
        """The run's journal entries after ``after`` as they are committed, each ("journal",
        entry); ("run", {status, exit_code, ended_at}) first and whenever it changes; ("end",
        {...}) once the run has ended and everything before was sent."""
        key = (id(asyncio.get_running_loop()), run_id)
        feed = self._runs.get(key)
        queue: asyncio.Queue[list[Item]] = asyncio.Queue()
        if feed is None or feed.done:
            feed = _RunFeed(self, run_id, after, lambda: self._runs.pop(key, None))
            self._runs[key] = feed
            feed.subscribers.add(queue)
            feed.start()
        else:
            snapshot = feed.seq
            feed.subscribers.add(queue)  # from now on it hears what the feed finds after snapshot
            if feed.run is not None:
                yield "run", dict(feed.run)
            if after < snapshot:  # this viewer's backlog: one query of its own, once
                _, entries = await self.query(self.store.journal_after, run_id, after)
                for entry in entries:
                    if entry["seq"] <= snapshot:
                        yield "journal", entry
        try:
            async for item in self._drain(queue):
                yield item
                if item[0] == "end":
                    return
        finally:
            feed.subscribers.discard(queue)

    async def runs(self) -> AsyncIterator[Item]:
        """The runs list: ("run", row) for each run that starts or changes status; first, the
        runs still going and those started in the last minute."""
        key = id(asyncio.get_running_loop())
        feed = self._lists.get(key)
        queue: asyncio.Queue[list[Item]] = asyncio.Queue()
        if feed is None:
            feed = _ListFeed(self, lambda: self._lists.pop(key, None))
            self._lists[key] = feed
            feed.subscribers.add(queue)
            feed.start()
        else:
            feed.subscribers.add(queue)
            for row in list(feed.known.values()):
                yield "run", row
        try:
            async for item in self._drain(queue):
                yield item
        finally:
            feed.subscribers.discard(queue)

    async def _drain(self, queue: asyncio.Queue[list[Item]]) -> AsyncIterator[Item]:
        while not self.stopping:
            try:
                batch = await asyncio.wait_for(queue.get(), timeout=1.0)  # a second: to notice a stop
            except TimeoutError:
                continue
            for item in batch:
                yield item


class _Feed:
    """One poller and its subscribers' queues."""

    def __init__(self, hub: Hub, forget: Any) -> None:
        self.hub = hub
        self.subscribers: set[asyncio.Queue[list[Item]]] = set()
        self.done = False
        self._forget = forget
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def send(self, batch: list[Item]) -> None:
        if batch:
            for queue in list(self.subscribers):
                queue.put_nowait(batch)

    async def _run(self) -> None:
        try:
            while self.subscribers and not self.hub.stopping and not self.done:
                await self.tick()
                if not self.done:
                    await asyncio.sleep(self.hub.interval)
        except Exception as exc:  # noqa: BLE001 - the store failed: viewers hear it, the server goes on
            self.send([("error", {"message": " ".join(str(exc).split())[:300] or type(exc).__name__})])
        finally:
            self.done = True
            self._forget()

    async def tick(self) -> None:
        raise NotImplementedError


class _RunFeed(_Feed):
    def __init__(self, hub: Hub, run_id: str, after: int, forget: Any) -> None:
        super().__init__(hub, forget)
        self.run_id = run_id
        self.seq = after
        self.run: dict[str, Any] | None = None
        self._quiet_since = asyncio.get_running_loop().time()

    async def tick(self) -> None:
        store = self.hub.store
        run, entries = await self.hub.query(store.journal_after, self.run_id, self.seq)
        now = asyncio.get_running_loop().time()
        batch: list[Item] = []
        for entry in entries:
            self.seq = max(self.seq, int(entry["seq"]))
            batch.append(("journal", entry))
        if entries:
            self._quiet_since = now
        elif run is not None and run["status"] == "running" and now - self._quiet_since > SETTLE_AFTER:
            # quiet for a while: is its runner still there? (a dead one makes it interrupted)
            self._quiet_since = now
            await self.hub.query(store.settle)
            run, entries = await self.hub.query(store.journal_after, self.run_id, self.seq)
        if run != self.run:  # first in the batch: a viewer knows the run's status before its entries
            self.run = run
            batch.insert(0, ("run", dict(run) if run is not None else {"status": None}))
        if run is None or run["status"] != "running":
            # ended (or deleted): its last entries were committed before its report, so all are sent
            self.done = True
            batch.append(("end", {"status": run["status"] if run else None, "seq": self.seq}))
        self.send(batch)


class _ListFeed(_Feed):
    def __init__(self, hub: Hub, forget: Any) -> None:
        super().__init__(hub, forget)
        self.since = (datetime.now(UTC) - RECENT).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.known: dict[str, dict[str, Any]] = {}
        self._quiet = 0

    async def tick(self) -> None:
        store = self.hub.store
        going = [rid for rid, row in self.known.items() if row["status"] == "running"]
        self._quiet += 1
        if going and self._quiet * self.hub.interval > SETTLE_AFTER:
            self._quiet = 0
            await self.hub.query(store.settle)
        rows = await self.hub.query(store.runs_changed, self.since, going)
        batch: list[Item] = []
        for row in rows:
            shown = {**row, "url": f"/api/v1/runs/{row['id']}", "page": f"/runs/{row['id']}"}
            if self.known.get(row["id"]) != shown:
                self.known[row["id"]] = shown
                batch.append(("run", shown))
                self._quiet = 0
        self.send(batch)
