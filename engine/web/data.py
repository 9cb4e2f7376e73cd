"""What the pages and the API show, read from the state store: the runs list (filters and
paging pushed into SQL through the store's ``runs(limit, RunFilter)``), one run (the report
with who, params, approvals, replays and its graph) and its steps. Plain dicts, the same for
the HTML and the JSON, so a page never shows what the API would not, and the reverse.

Everything here was redacted before it was stored (the run's redactor masks secrets and
values derived from them in the report and the journal; a ``secret: true`` param is stored
only as a salted hash and shown as ``***``). Nothing here reads a secret's source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..execution.approvals import pending
from ..execution.results import RUN_STATUSES
from ..execution.store import RunFilter
from ..state.records import with_records

if TYPE_CHECKING:
    from .catalogue import Catalogue

# every status a recorded run can have: a run's own, and running while it goes
STATUSES = (*RUN_STATUSES, "running")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_PAGE = 1_000_000
RUN_FILTERS = ("procedure", "status", "user", "since", "page", "limit")
# a run id as runproc makes them (12 hex digits), a prefix of one, or a replay's suffixed id
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# what a run's page reads of its report (None when a report lacks it)
_RUN_KEYS = ("run_id", "procedure", "status", "exit_code", "dry_run", "started_at", "ended_at", "duration", "user",
             "host", "pid", "of_run", "error", "root_cause")
# what a step's entry in the report always has; the rest are its result fields (rc, stdout, rows...)
_STEP_KEYS = {"id", "status", "phase", "started_at", "duration", "attempts", "error", "action", "notes", "hosts",
              "rollback", "rollback_action", "error_kind", "not_judged", "loop"}


class BadQuery(InvalidInputError):
    """A query the API cannot answer (an unknown status, a date it cannot read): a 400."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


class NotFound(InvalidInputError, LookupError):
    """No such run or procedure: a 404 with this message (``runproc show`` says it with exit 2)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


# ---------------------------------------------------------------- the runs list


@dataclass(frozen=True)
class RunQuery:
    """The runs list's filters and page, as checked from a query string."""

    procedure: str | None = None
    status: str | None = None
    user: str | None = None
    since: str | None = None  # as given, for the form and the links
    since_utc: str | None = None  # as the store compares it: ISO, UTC, milliseconds
    page: int = 1
    limit: int = DEFAULT_LIMIT

    def store_filter(self) -> RunFilter:
        # one more than the page holds: whether there is a next page is then known, not guessed
        return RunFilter(procedure=self.procedure, status=self.status, since=self.since_utc, user=self.user,
                         limit=self.limit + 1, offset=(self.page - 1) * self.limit)

    def given(self) -> dict[str, str]:
        """The filters as they were given (for links and the form); paging apart."""
        pairs = (("procedure", self.procedure), ("status", self.status), ("user", self.user),
                 ("since", self.since))
        return {k: v for k, v in pairs if v is not None}

    def link(self, page: int) -> dict[str, str]:
        out = self.given()
        if self.limit != DEFAULT_LIMIT:
            out["limit"] = str(self.limit)
        if page != 1:
            out["page"] = str(page)
        return out


def parse_run_query(params: Mapping[str, str], keys: list[str] | None = None) -> RunQuery:
    """The filters of a query string; BadQuery names what is wrong. An empty field (an HTML
    form sends every field) is no filter; an unknown parameter is an error, not ignored, so a
    typo never shows an unfiltered list as if it were filtered."""
    for key in keys if keys is not None else list(params):
        if key not in RUN_FILTERS:
            raise BadQuery(key, f"unknown parameter; the runs list takes {', '.join(RUN_FILTERS)}")

    def text(name: str) -> str | None:
        value = (params.get(name) or "").strip()
        if len(value) > 200:
            raise BadQuery(name, "longer than 200 characters")
        return value or None

    status = text("status")
    if status is not None and status not in STATUSES:
        raise BadQuery("status", f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    since = text("since")
    return RunQuery(procedure=text("procedure"), status=status, user=text("user"), since=since,
                    since_utc=parse_since(since) if since is not None else None,
                    page=_whole("page", text("page"), 1, 1, MAX_PAGE),
                    limit=_whole("limit", text("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT))


def _whole(name: str, value: str | None, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise BadQuery(name, f"expected a whole number from {low} to {high}, got {value!r}")
    return int(value)


def parse_since(text: str) -> str:
    """A date, a time or a time ago (``7d``, ``12h``) as the UTC ISO text runs are recorded
    with. Unlike ``runproc runs --since`` (a person at their own terminal: local time), a
    date without a zone is UTC here: every time on the pages is UTC, and the server's zone
    is nobody's in particular."""
    from ..format.durations import parse_duration

    value = text.strip()
    try:
        ago: float | None = parse_duration(value)
    except ValueError:
        ago = None
    if ago is not None and not value.isdigit():  # a bare number reads better as a year than as seconds
        try:
            when = datetime.now(UTC) - timedelta(seconds=ago)
        except OverflowError:
            raise BadQuery("since", f"{text!r} is further back than the calendar goes") from None
    else:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise BadQuery("since", f"cannot read {text!r} as a date, a time or a time ago "
                                    "(e.g. 2024-05-01, 2024-05-01T14:00Z, 7d, 12h, 30m)") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def list_runs(store: Any, query: RunQuery) -> dict[str, Any]:
    """One page of runs, newest first: {runs, page, limit, more}. The store filters, orders and
    pages in SQL; no run's report is read."""
    found = store.runs(query.limit + 1, query.store_filter())
    return {"runs": found[:query.limit], "page": query.page, "limit": query.limit, "more": len(found) > query.limit}


# ---------------------------------------------------------------- one run


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.fullmatch(run_id):
        raise NotFound(f"no run {run_id!r}: a run id is 12 hex digits, or its first characters")
    return run_id


def find_report(store: Any, run_id: str) -> dict[str, Any]:
    """The run's report by id or unique prefix; NotFound names what was asked for."""
    report = store.show(check_run_id(run_id))
    if not report:
        raise NotFound(f"no run {run_id!r} in this state (the runs list shows the runs it holds)")
    return dict(report)


def resolve_run(store: Any, run_id: str) -> str:
    """The full id of a run given by id or unique prefix; NotFound otherwise."""
    if store.run_meta(check_run_id(run_id)) is not None:
        return run_id
    return str(find_report(store, run_id).get("run_id") or run_id)


def run_detail(store: Any, run_id: str, catalogue: Catalogue | None = None) -> dict[str, Any]:
    """The run as its page shows it: the report (redacted when it was recorded) with who
    started it, where, its params (a secret one only as ``***``), approvals, the resumes and
    rollbacks made from it, each step's view and its graph. ``live_seq``: for a run still
    going, the journal entry its page shows everything up to (its live updates start after
    it), read before the report so that nothing falls between the two."""
    before = store.run_meta(check_run_id(run_id))
    live_seq = None
    if before is not None and before.get("status") == "running":
        entries = store.journal(run_id)
        live_seq = int(entries[-1]["seq"]) if entries else 0
    report = find_report(store, run_id)
    rid = str(report.get("run_id") or run_id)
    # who, where, the kind, the params and approvals: as runproc show says them
    out, journal, inputs = with_records(store, report, rid)
    out.setdefault("params", None)  # a dry run records no params
    # every key a page reads, whatever runproc (or engine) recorded the report
    for key in _RUN_KEYS:
        out.setdefault(key, None)
    for key in ("rolled_back", "not_undone", "kept", "in_flight"):
        out[key] = [str(s) for s in out.get(key) or []]
    out["approvals"] = [{"step": None, "at": None, "approved": None, "by": None, "how": None, "comment": None,
                         "role": None, **a}
                        for a in out.get("approvals") or [] if isinstance(a, dict)]
    out["replays"] = [{"id": r["id"], "kind": r["kind"], "status": (r.get("report") or {}).get("status")}
                      for r in store.replays_of(rid)]
    out["steps"] = [step_view(s) for s in report.get("steps") or [] if isinstance(s, dict)]
    if out.get("status") == "running":
        for view in out["steps"]:
            # the store rebuilds a live run's report as if its runner had stopped: its step in
            # flight is running, not interrupted, while the run goes on
            if view["status"] == "interrupted" and "running" in view["notes"]:
                view["status"], view["notes"] = "running", [n for n in view["notes"] if n != "running"]
    out["live_seq"] = live_seq if out.get("status") == "running" else None
    # the confirm steps waiting for an answer, each with its question and rules (a run that
    # ended waits for nothing, whatever its journal's last entries say)
    waits = pending(journal) if out.get("status") == "running" else {}
    out["waiting"] = [{"step": sid, "message": w.get("message"), "approvers": list(w.get("approvers") or []),
                       "four_eyes": bool(w.get("four_eyes")), "started_by": w.get("started_by"),
                       "until": w.get("until"), "since": w.get("since"), "request": w["request"]}
                      for sid, w in waits.items()]
    # a step's output while it ran is shown under the step, not as rows of the journal table
    out["timeline"] = [{k: e.get(k) for k in ("seq", "at", "event", "step", "host")} for e in journal
                       if e.get("event") != "output"]
    said = live_output(journal)
    for view in out["steps"]:
        # the output a step printed while it ran: shown until its result (with its output) is there
        view["output"] = said.get(view["id"], []) if not _has_output(view) else []
    out["graph"] = run_graph(out, inputs, catalogue)
    return out


def live_output(journal: list[dict[str, Any]], after: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Each step's ``output`` entries (journaled while it ran, redacted, capped at
    RUNPROC_OUTPUT_CAP a stream): step -> [{seq, at, host, stream, text}]."""
    out: dict[str, list[dict[str, Any]]] = {}
    for e in journal:
        if e.get("event") == "output" and int(e.get("seq") or 0) > after and isinstance(e.get("data"), dict):
            out.setdefault(str(e.get("step")), []).append(
                {"seq": e["seq"], "at": e.get("at"), "host": e.get("host"), "stream": e["data"].get("stream"),
                 "text": str(e["data"].get("text") or "")})
    return out


def _has_output(view: dict[str, Any]) -> bool:
    """Whether a step's result, with its output, is recorded (it finished): on it or its hosts."""
    if any(k in view["fields"] for k in ("stdout", "stderr", "text")):
        return True
    return bool(view["hosts"]) and all(any(k in h["fields"] for k in ("stdout", "stderr")) for h in view["hosts"])


def step_logs(store: Any, run_id: str, step: str, after: int = 0) -> dict[str, Any]:
    """What a step printed (``/api/v1/runs/{id}/steps/{step}/logs``): ``output``, the pieces
    journaled while it ran (after the entry ``after``); ``result``, each stream of its result
    as the state keeps it (capped by RUNPROC_OUTPUT_CAP); ``files``, its whole log files that
    are on this machine in the state's logs folder (redacted when the step ended; a file named
    elsewhere is never read). NotFound for a step the run never started."""
    rid = resolve_run(store, run_id)
    report = store.show(rid) or {}
    journal = store.journal(rid)
    views = [step_view(s) for s in report.get("steps") or [] if isinstance(s, dict)]
    view = next((v for v in views if v["id"] == step), None)
    if view is not None and report.get("status") == "running" and view["status"] == "interrupted" \
            and "running" in view["notes"]:
        view["status"] = "running"  # the step in flight of a run still going (as run_detail says it)
    if view is None and not any(e.get("step") == step for e in journal):
        known = ", ".join(v["id"] for v in views) or "none"
        raise NotFound(f"run {rid} has no step {step!r} (its steps: {known})")
    running = report.get("status") == "running" and (view is None or view["status"] == "running")
    result: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    logs_dir = _logs_dir(store)
    sources = [(None, view)] + [(h["host"], h) for h in (view or {}).get("hosts", [])] if view else []
    for host, part in sources:
        for stream in ("stdout", "stderr", "text"):
            value = part["fields"].get(stream)
            if isinstance(value, str):
                result.append({"host": host, "stream": stream, "text": value})
            path = part["fields"].get(f"{stream}_log")
            found = _log_file(logs_dir, rid, path)
            if found is not None:
                files.append({"host": host, "stream": stream, "bytes": found.stat().st_size, "path": str(found)})
    return {"run_id": rid, "step": step, "status": view["status"] if view else "running", "running": running,
            "output": live_output(journal, after).get(step, []), "result": result, "files": files}


def _logs_dir(store: Any) -> Any:
    try:
        return store.logs_dir().resolve()
    except Exception:  # noqa: BLE001 - no logs folder known: no file is offered
        return None


def _log_file(logs_dir: Any, run_id: str, path: Any) -> Any:
    """``path`` when it is a file in this run's folder of the state's logs folder, else None: a
    report from a shared state may name any path, and only runproc's own logs are served."""
    from pathlib import Path

    if logs_dir is None or not isinstance(path, str) or not path:
        return None
    try:
        found = Path(path).resolve()
    except (OSError, RuntimeError):
        return None
    folder = logs_dir / run_id
    return found if found.is_relative_to(folder) and found.is_file() else None


def step_view(entry: dict[str, Any]) -> dict[str, Any]:
    """One step of a report with every key a page reads, its end time and its result fields
    apart (rc, stdout, stderr, rows, json...: whatever its executor returned)."""
    view = {
        "id": str(entry.get("id") or "?"),
        "status": str(entry.get("status") or "?"),
        "phase": str(entry.get("phase") or "step"),
        "started_at": entry.get("started_at"),
        "ended_at": ended_at(entry.get("started_at"), entry.get("duration")),
        "duration": entry.get("duration"),
        "attempts": entry.get("attempts"),
        "action": entry.get("action"),
        "error": entry.get("error"),
        "notes": [str(n) for n in entry.get("notes") or []],
        "hosts": [],
        "loop": entry.get("loop") is True,  # a foreach/matrix step: its hosts are its iterations
        "rollback": None,
        "fields": {k: v for k, v in entry.items() if k not in _STEP_KEYS},
    }
    if isinstance(entry.get("hosts"), dict):
        view["hosts"] = [{"host": str(h), **step_view({"id": h, **v})} for h, v in entry["hosts"].items()
                         if isinstance(v, dict)]
    if isinstance(entry.get("rollback"), dict):
        view["rollback"] = step_view({"id": view["id"], **entry["rollback"]})
    return view


def ended_at(started: Any, duration: Any) -> str | None:
    if not isinstance(started, str) or not isinstance(duration, int | float):
        return None
    try:
        begun = datetime.fromisoformat(started.replace("Z", "+00:00"))
    except ValueError:
        return None
    end = begun + timedelta(seconds=float(duration))
    return end.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_graph(run: dict[str, Any], inputs: dict[str, Any], catalogue: Catalogue | None) -> dict[str, Any]:
    """The run's steps as a graph, coloured by their status. The edges are the procedure's
    ``needs``: from the file the run recorded (its hash says whether it changed since), else
    from the catalogue's procedure of that name; without either, the steps alone."""
    steps = [s for s in run["steps"] if s["phase"] == "step"]
    status = {s["id"]: s["status"] for s in steps}
    source = None
    note = None
    entry = None
    if catalogue is not None:
        path = inputs.get("path")
        if isinstance(path, str):
            entry = catalogue.load(path)
            if entry is not None and entry.ok:
                recorded = ((inputs.get("files") or {}).get(path) or {}).get("sha256")
                source = "the procedure file the run recorded"
                if recorded and recorded != entry.sha256:
                    note = f"{path} changed since this run: its dependencies are drawn as the file has them now"
            else:
                entry = None
        if entry is None:
            entry = catalogue.find(str(run.get("procedure") or ""))
            if entry is not None:
                source = f"{entry.file} (the catalogue's {entry.name})"
                note = "the file this run recorded is not readable: dependencies from the catalogue's procedure"
    nodes: list[dict[str, str]] = []
    needs: dict[str, list[str]] = {}
    if entry is not None:
        for sid, label in entry.steps:
            nodes.append({"id": sid, "label": label, "status": status.pop(sid, "not_run")})
            needs[sid] = list(entry.needs.get(sid, []))
    for s in steps:  # steps the file no longer has (or no file at all): drawn without edges
        if s["id"] in status:
            nodes.append({"id": s["id"], "label": s["id"], "status": status[s["id"]]})
            needs[s["id"]] = []
    if entry is None and nodes:
        note = "the procedure file is not readable: steps in the report's order, without their dependencies"
    known = {n["id"] for n in nodes}
    edges = [[dep, sid] for sid, deps in needs.items() for dep in deps if dep in known]
    return {"nodes": nodes, "edges": edges, "source": source, "note": note, "dependencies_known": entry is not None}
