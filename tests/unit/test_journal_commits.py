"""The journal's commits on the run path: one a step for steps run one after another, every
entry still there and in order (issue 14: W1's per-step overhead), and a run's environment
given to its commands as it is when each starts."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.state.sqlite import SqliteStore
from engine.transports.local import run_local


def _counting_store(url: str, commits: list[list[str]]) -> SqliteStore:
    """A real SQLite store that notes the entries of each journal transaction."""
    store = SqliteStore(url)
    append = store.append

    def counted(run_id: str, entries: list[dict[str, Any]]) -> None:
        commits.append([f"{e['event']}:{e['step']}" for e in entries])
        append(run_id, entries)

    store.append = counted  # type: ignore[method-assign]
    return store


def _run_counting(tmp: Path, path: Path) -> tuple[Any, list[list[str]]]:
    """Run ``path`` against a counting store in ``tmp``: its result and its journal commits."""
    commits: list[list[str]] = []
    store = _counting_store(f"sqlite:///{tmp}/state.db", commits)
    try:
        return engine.run(path, store=store), commits
    finally:
        store.close()


def _chain(tmp: Path, n: int, extra: str = "") -> Path:
    lines = ["procedure: chain", "steps:"]
    for i in range(n):
        lines += [f"  - id: s{i}", f"    shell: echo s{i} >> {tmp}/effects"]
    path = tmp / "chain.yml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def test_steps_run_one_after_another_cost_one_journal_commit_each(tmp_path: Path) -> None:
    commits: list[list[str]] = []
    url = f"sqlite:///{tmp_path}/state.db"
    store = _counting_store(url, commits)
    try:
        result = engine.run(_chain(tmp_path, 20), store=store)
    finally:
        store.close()
    assert result.status == "ok"
    # the first step's start alone; then each end with the next start; the last end alone
    assert len(commits) == 21, commits
    assert commits[1] == ["step_finished:s0", "step_started:s1"]
    flat = [e for c in commits for e in c]
    assert flat == [f"{event}:s{i}" for i in range(20) for event in ("step_started", "step_finished")]
    # and the store holds them all, numbered in that order
    reader = SqliteStore(url)
    try:
        journal = reader.journal(result.run_id)
    finally:
        reader.close()
    assert [f"{e['event']}:{e['step']}" for e in journal] == flat
    assert [e["seq"] for e in journal] == list(range(1, 41))


def test_a_skipped_step_end_waits_for_the_next_commit_too(tmp_path: Path) -> None:
    path = tmp_path / "skips.yml"
    path.write_text("procedure: skips\nsteps:\n"
                    "  - id: a\n    shell: 'true'\n"
                    "  - id: b\n    when: 'false'\n    shell: 'true'\n"
                    "  - id: c\n    shell: 'true'\n")
    result, commits = _run_counting(tmp_path, path)
    assert result.status == "ok"
    assert commits == [["step_started:a"], ["step_finished:a", "step_finished:b", "step_started:c"],
                       ["step_finished:c"]]


def test_parallel_steps_commit_each_end_at_once(tmp_path: Path) -> None:
    """Steps on threads end while others run: nothing is held for a start that may not come."""
    path = tmp_path / "wide.yml"
    path.write_text("procedure: wide\nsteps:\n"
                    "  - id: a\n    needs: []\n    shell: sleep 0.2\n"
                    "  - id: b\n    needs: []\n    shell: sleep 0.4\n")
    result, commits = _run_counting(tmp_path, path)
    assert result.status == "ok"
    assert all(len(c) == 1 for c in commits), commits
    assert sorted(e for c in commits for e in c) == ["step_finished:a", "step_finished:b",
                                                     "step_started:a", "step_started:b"]


def test_a_command_sees_the_environment_as_it_is_when_it_starts(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The inherited environment is copied once and reused: a change in between is still seen."""
    def printed(env: dict[str, str], **kw: Any) -> str:
        res = run_local(["/bin/sh", "-c", 'printf "%s|%s|%s" "$RP_A" "$RP_B" "${HOME:-none}"'], cwd=tmp_path,
                        env=env, deadline=None, cancel=threading.Event(), **kw)
        assert res.rc == 0
        return res.stdout.text()

    monkeypatch.setenv("RP_A", "one")
    assert printed({"RP_B": "b"}) == f"one|b|{os.environ.get('HOME', 'none')}"
    monkeypatch.setenv("RP_A", "two")
    assert printed({}) == f"two||{os.environ.get('HOME', 'none')}"
    monkeypatch.delenv("RP_A")
    assert printed({"RP_B": "é"}) == f"|é|{os.environ.get('HOME', 'none')}"
    # replace_env: only what was given (and the step's token)
    assert printed({"RP_A": "only"}, replace_env=True) == "only||none"


def _failing_from(url: str, nth: int) -> SqliteStore:
    """A real SQLite store whose journal writes fail from the ``nth`` on (the store gone)."""
    store = SqliteStore(url)
    append = store.append
    calls = [0]

    def flaky(run_id: str, entries: list[dict[str, Any]]) -> None:
        calls[0] += 1
        if calls[0] >= nth:
            raise ConnectionError("the state store went away")
        append(run_id, entries)

    store.append = flaky  # type: ignore[method-assign]
    return store


def _spooled(folder: Path) -> list[dict[str, Any]]:
    import json

    (path,) = folder.glob("*.jsonl")
    return [e for e in map(json.loads, path.read_text().splitlines()) if e["type"] == "entry"]


def test_a_step_whose_start_finds_the_store_gone_does_not_run_and_its_end_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPROC_SPOOL_DIR", str(tmp_path / "spool"))
    path = _chain(tmp_path, 3)
    store = _failing_from(f"sqlite:///{tmp_path}/state.db", 2)  # the commit of s0's end and s1's start
    try:
        result = engine.run(path, store=store)
    finally:
        store.close()
    assert (tmp_path / "effects").read_text().split() == ["s0"]
    assert result.steps["s1"].status == "cancelled"
    assert result.steps["s1"].error == "not started: the state store stopped answering"
    entries = _spooled(tmp_path / "spool")
    # every seq once, in order (an upload skips what the store has by seq): s1's start, then
    # its end saying it did not start, whatever became of the write that failed
    assert [e["seq"] for e in entries] == list(range(2, 2 + len(entries)))
    assert [(e["event"], e["step"]) for e in entries][:3] == [("step_finished", "s0"), ("step_started", "s1"),
                                                             ("step_finished", "s1")]
    assert entries[2]["data"]["entry"]["status"] == "cancelled" and entries[2]["data"]["completed"] is False


def test_a_finally_step_runs_though_its_start_finds_the_store_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPROC_SPOOL_DIR", str(tmp_path / "spool"))
    path = _chain(tmp_path, 1, extra=f"finally:\n  - id: cleanup\n    shell: echo cleanup >> {tmp_path}/effects\n")
    store = _failing_from(f"sqlite:///{tmp_path}/state.db", 3)  # the cleanup's start
    try:
        result = engine.run(path, store=store)
    finally:
        store.close()
    assert (tmp_path / "effects").read_text().split() == ["s0", "cleanup"]
    assert result.steps["cleanup"].status == "ok"
