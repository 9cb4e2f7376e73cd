"""The state's rows for schedules and alert-triggered runs (schema version 4), as a part of
``SqlStore`` (SQLite and PostgreSQL alike; ``?`` placeholders as everywhere in the store).

- ``schedules``: the schedules ``runproc schedule add`` stored (a procedure's own
  ``schedule:`` lives in its file and has no row here).
- ``schedule_fires``: one row per slot of a schedule that a scheduler dealt with (fired,
  skipped, queued, missed...). Its key (schedule, slot) is what lets one scheduler, and only
  one, fire a slot when two run against the same state: each claims the slot with an insert
  that the other's conflicts with. The newest row is also where a schedule's next slots start
  from after a scheduler was down (catch-up).
- ``alert_groups``: one row per Alertmanager alert group (its groupKey): a firing group with a
  run is not started again until it is resolved (and fires anew).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

Exec = Callable[[str, Sequence[Any]], Any]

_SCHEDULE_COLUMNS = "name, file, cron, timezone, params, overlap, catch_up, created_at, created_by"
_FIRE_COLUMNS = "schedule, slot, outcome, at, run_id, pid, host, detail"
_GROUP_COLUMNS = "group_key, rule, status, run_id, started_at, updated_at, received_by, detail"


def _now() -> str:
    from .sqlstore import now_iso

    return now_iso()


class ScheduleRows:
    """Mixed into SqlStore, which gives the connection (``_tx``, ``_read``, ``_mutex``), the
    clock and the liveness check of a run's holder (``_alive``)."""

    host: str
    CLOCK: str

    if TYPE_CHECKING:  # given by SqlStore (declared here for the type checker only: never shadowing it)
        _mutex: Any

        def _tx(self) -> AbstractContextManager[Exec]: ...
        def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
        def _alive(self, host: str, pid: int | None, pid_start: str | None, run_id: str,
                   heartbeat_at: float | None, lease: float | None, now: float) -> bool: ...

    # ------------------------------------------------------------ schedules (runproc schedule)

    def add_schedule(self, row: dict[str, Any]) -> bool:
        """Store a schedule; False when one of that name is there already (nothing changed)."""
        with self._mutex, self._tx() as run:
            return bool(run(f"INSERT INTO schedules ({_SCHEDULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                            "ON CONFLICT (name) DO NOTHING",
                            (row["name"], row["file"], row["cron"], row["timezone"], json.dumps(row.get("params") or {}),
                             row["overlap"], row["catch_up"], row.get("created_at") or _now(),
                             row.get("created_by"))).rowcount)

    def remove_schedule(self, name: str) -> bool:
        """Remove a stored schedule (its fires stay, as history); whether there was one."""
        with self._mutex, self._tx() as run:
            return bool(run("DELETE FROM schedules WHERE name = ?", (name,)).rowcount)

    def schedules(self) -> list[dict[str, Any]]:
        rows = self._read(f"SELECT {_SCHEDULE_COLUMNS} FROM schedules ORDER BY name")
        keys = _SCHEDULE_COLUMNS.split(", ")
        out = []
        for r in rows:
            item = dict(zip(keys, r, strict=True))
            item["params"] = json.loads(item["params"] or "{}")
            out.append(item)
        return out

    # ------------------------------------------------------------ fires (one row per slot)

    def claim_slot(self, schedule: str, slot: str, outcome: str, detail: str | None = None) -> bool:
        """Claim ``slot`` of ``schedule`` with its outcome; False when another scheduler (or
        this one earlier) has it. The caller fires the slot only after a True."""
        with self._mutex, self._tx() as run:
            return bool(run(f"INSERT INTO schedule_fires ({_FIRE_COLUMNS}) VALUES (?, ?, ?, ?, NULL, NULL, ?, ?) "
                            "ON CONFLICT (schedule, slot) DO NOTHING",
                            (schedule, slot, outcome, _now(), self.host, detail)).rowcount)

    def update_fire(self, schedule: str, slot: str, outcome: str, *, run_id: str | None = None,
                    pid: int | None = None, detail: str | None = None, expect: str | None = None) -> bool:
        """Set a claimed slot's outcome (and its run); with ``expect``, only from that outcome
        (a queued slot is taken by one scheduler). Whether the row changed."""
        sql = "UPDATE schedule_fires SET outcome = ?, at = ?, run_id = COALESCE(?, run_id), pid = COALESCE(?, pid), " \
              "detail = ?, host = ? WHERE schedule = ? AND slot = ?"
        params: list[Any] = [outcome, _now(), run_id, pid, detail, self.host, schedule, slot]
        if expect is not None:
            sql += " AND outcome = ?"
            params.append(expect)
        with self._mutex, self._tx() as run:
            return bool(run(sql, params).rowcount)

    def fires(self, schedule: str | None = None, limit: int = 20, outcome: str | None = None) -> list[dict[str, Any]]:
        """The newest slots dealt with (of one schedule, or of all; of one outcome), newest first."""
        where, params = [], []
        if schedule is not None:
            where.append("schedule = ?")
            params.append(schedule)
        if outcome is not None:
            where.append("outcome = ?")
            params.append(outcome)
        sql = f"SELECT {_FIRE_COLUMNS} FROM schedule_fires"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._read(sql + " ORDER BY slot DESC LIMIT ?", (*params, limit))
        return [dict(zip(_FIRE_COLUMNS.split(", "), r, strict=True)) for r in rows]

    def trim_fires(self, schedule: str, keep: int) -> int:
        """Forget a schedule's slots older than its ``keep`` newest (a queued one stays until it
        fires): a schedule of every second would otherwise add 86,400 rows a day. How many went."""
        with self._mutex, self._tx() as run:
            return int(run("DELETE FROM schedule_fires WHERE schedule = ? AND outcome <> 'queued' AND slot < "
                           "(SELECT slot FROM schedule_fires WHERE schedule = ? ORDER BY slot DESC LIMIT 1 OFFSET ?)",
                           (schedule, schedule, keep - 1)).rowcount or 0)

    def run_going(self, run_id: str) -> bool:
        """Whether a run is recorded as going and its runner is alive (its pid, or its heartbeat)."""
        rows = self._read(f"SELECT status, host, pid, pid_start, heartbeat_at, lease, {self.CLOCK} FROM runs "
                          "WHERE id = ?", (run_id,))
        if not rows or rows[0][0] != "running":
            return False
        r = rows[0]
        return self._alive(r[1], r[2], r[3], run_id, r[4], r[5], float(r[6]))

    # ------------------------------------------------------------ alert groups (Alertmanager)

    def alert_group(self, group_key: str) -> dict[str, Any] | None:
        rows = self._read(f"SELECT {_GROUP_COLUMNS} FROM alert_groups WHERE group_key = ?", (group_key,))
        return dict(zip(_GROUP_COLUMNS.split(", "), rows[0], strict=True)) if rows else None

    def claim_alert_group(self, group_key: str, rule: str, by: str | None) -> bool:
        """Mark a group firing; True only for the one call that turned it firing (a new group,
        or one resolved before): that caller starts its run, every repeat starts nothing."""
        now = _now()
        with self._mutex, self._tx() as run:
            if run(f"INSERT INTO alert_groups ({_GROUP_COLUMNS}) VALUES (?, ?, 'firing', NULL, ?, ?, ?, NULL) "
                   "ON CONFLICT (group_key) DO NOTHING", (group_key, rule, now, now, by)).rowcount:
                return True
            return bool(run("UPDATE alert_groups SET status = 'firing', rule = ?, run_id = NULL, started_at = ?, "
                            "updated_at = ?, received_by = ?, detail = NULL WHERE group_key = ? AND status <> 'firing'",
                            (rule, now, now, by, group_key)).rowcount)

    def settle_alert_group(self, group_key: str, *, status: str | None, run_id: str | None = None,
                           detail: str | None = None) -> None:
        """A group's run started (its run; the status as it is by now: a ``resolved`` that came
        meanwhile stands), it resolved (``resolved``), or its start failed (``failed``: the next
        notification may try again)."""
        with self._mutex, self._tx() as run:
            run("UPDATE alert_groups SET status = COALESCE(?, status), run_id = COALESCE(?, run_id), updated_at = ?, "
                "detail = ? WHERE group_key = ?", (status, run_id, _now(), detail, group_key))

    def alert_groups(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._read(f"SELECT {_GROUP_COLUMNS} FROM alert_groups ORDER BY updated_at DESC LIMIT ?", (limit,))
        return [dict(zip(_GROUP_COLUMNS.split(", "), r, strict=True)) for r in rows]
