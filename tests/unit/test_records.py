"""`runproc show` and a run's page in `runproc serve` read a recorded run the same way
(engine/state/records.py): who, where, the kind, the params (a secret one as ***) and the
approvals."""

from __future__ import annotations

import textwrap
from pathlib import Path

import engine
from engine.cli.history import enrich
from engine.state.opening import open_store
from engine.state.records import with_records
from engine.web.data import run_detail


def test_show_and_the_run_page_agree_on_what_the_state_records(tmp_path: Path) -> None:
    proc = tmp_path / "p.yml"
    proc.write_text(textwrap.dedent("""\
        procedure: records
        params:
          version: {type: str, default: v1}
          token: {type: str, secret: true, default: hunter2-secret}
        steps:
          - id: say
            shell: echo {{ params.version }}
        """))
    state = f"sqlite:///{tmp_path}/state.db"
    result = engine.run(proc, {"version": "v2"}, state=state)
    assert result.ok, result.error
    store = open_store(state)
    try:
        report = store.show(result.run_id)
        assert report is not None
        shown = enrich(store, report)
        page = run_detail(store, result.run_id)
        out, journal, inputs = with_records(store, report)
    finally:
        store.close()
    assert out["params"] == {"version": "v2", "token": "***"}
    assert out["kind"] == "run" and out["user"] and out["host"] and out["pid"]
    assert out["approvals"] == []
    assert journal and inputs  # read once, for the caller
    for key in ("params", "kind", "user", "host", "pid", "approvals"):
        assert shown[key] == page[key] == out[key], key
    assert shown["journal"] == journal
    assert "hunter2" not in repr(shown) + repr(page)
    assert "journal" not in report  # the report itself is not changed
