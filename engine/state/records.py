"""A recorded run as the state knows it: its report with who, where and what beside it.

One reading for both ways of looking at a run, ``runproc show`` (engine/cli/history.py) and
its page in ``runproc serve`` (engine/web/data.py), so that the two never disagree on what
a run's params, kind or approvals were.
"""

from __future__ import annotations

from typing import Any

# what the runs table knows that a report may lack (a report recorded by an older runproc,
# or rebuilt from the journal of a run that never finished)
_FROM_META = ("user", "host", "pid", "kind", "of_run", "ended_at")


def with_records(store: Any, report: dict[str, Any],
                 run_id: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The report with what the state records beside it, and the journal and inputs read for it.

    Beside the report: who started the run, where (host, pid), what kind of run it is (a
    ``run`` unless it says otherwise), its params (a secret one only as ``***``: its value was
    never stored; a param given no value as None) and its approvals, from the journal when
    the report has none. The report itself is not changed.
    """
    rid = run_id or str(report.get("run_id") or "")
    meta = store.run_meta(rid) or {}
    journal: list[dict[str, Any]] = store.journal(rid)
    inputs: dict[str, Any] = store.inputs(rid) or {}
    out = dict(report)
    for key in _FROM_META:
        if out.get(key) is None and meta.get(key) is not None:
            out[key] = meta[key]
    out["kind"] = out.get("kind") or "run"
    params = out.get("params")
    if params is None and isinstance(inputs.get("params"), dict):
        params = inputs["params"]
    if params is not None or inputs.get("secret_params"):
        shown = dict(params or {})
        for name, hashed in (inputs.get("secret_params") or {}).items():
            shown[name] = "***" if hashed is not None else None
        out["params"] = shown
    if "approvals" not in out:
        out["approvals"] = [{"step": e.get("step"), "at": e.get("at"), **(e.get("data") or {})}
                            for e in journal if e.get("event") == "approval"]
    return out, journal, inputs
