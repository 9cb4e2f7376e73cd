"""What a user reads: the JSON document, the plain console, the failure panel, -v, --report-dir."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.helpers.cli import RUNPROC, child_env, popen, run_json, runproc, state_args, write

ANSI = re.compile(r"\x1b\[")

MIXED = """
procedure: mixed
steps:
  - id: first
    shell: |
      echo '{"a": 1}'
  - id: second
    needs: []
    shell: echo two
  - id: third
    needs: [first]
    assert: steps.first.json.a == 1
finally:
  - id: tidy
    shell: "true"
on_failure:
  - id: alert
    shell: "true"
"""

SPEC_RUN_FIELDS = {"procedure", "run_id", "status", "exit_code", "dry_run", "started_at", "duration", "steps"}
SPEC_STEP_FIELDS = {"id", "status", "started_at", "duration", "attempts", "error"}


def test_json_is_one_document_with_every_spec_field(tmp_path: Path) -> None:
    done = run_json(tmp_path, MIXED)
    assert done.rc == 0, done.stderr
    report = json.loads(done.stdout)  # the whole of stdout is one document
    assert set(report) >= SPEC_RUN_FIELDS
    assert report["procedure"] == "mixed" and report["status"] == "ok" and report["exit_code"] == 0
    assert report["dry_run"] is False and isinstance(report["duration"], float)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", report["started_at"])
    assert [s["id"] for s in report["steps"]] == ["first", "second", "third", "tidy", "alert"]
    for step in report["steps"]:
        assert set(step) >= SPEC_STEP_FIELDS, step
    first = report["steps"][0]
    assert first["rc"] == 0 and first["stdout"] == '{"a": 1}\n' and first["stderr"] == ""
    assert first["json"] == {"a": 1} and first["attempts"] == 1 and first["error"] is None
    assert report["steps"][2]["value"] is True
    assert report["steps"][4]["status"] == "skipped"


def test_plain_console_without_tty_has_no_escapes(tmp_path: Path) -> None:
    path = write(tmp_path, MIXED)
    done = runproc(tmp_path, str(path))
    assert done.rc == 0, done.stderr
    assert not ANSI.search(done.stdout) and not ANSI.search(done.stderr)
    for sid in ("first", "second", "third", "tidy"):
        assert re.search(rf"ok\s+{sid}\b", done.stdout), done.stdout
    assert "ok (exit 0)" in done.stdout


def _run_in_pty(tmp_path: Path, args: list[str], env: dict[str, str]) -> tuple[int, str]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: runproc on a terminal
        os.chdir(tmp_path)
        os.execvpe(RUNPROC[0], [*RUNPROC, *args], child_env(env))
    chunks = []
    end = time.monotonic() + 60
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def test_no_color_on_a_terminal_is_plain(tmp_path: Path) -> None:
    path = write(tmp_path, MIXED)
    rc, out = _run_in_pty(tmp_path, [str(path), *state_args(tmp_path)], {"NO_COLOR": "1", "TERM": "xterm"})
    assert rc == 0, out
    assert not ANSI.search(out), repr(out[:500])
    rc, fancy = _run_in_pty(tmp_path, [str(path), *state_args(tmp_path)], {"TERM": "xterm"})
    assert rc == 0, fancy
    assert ANSI.search(fancy)  # the live view, on a terminal without NO_COLOR
    assert "tidy" in fancy


def test_failure_panel_names_root_cause_command_exit_code_and_output(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: broken
        params:
          db: {type: str, default: orders}
        steps:
          - id: fine
            shell: "true"
          - id: migrate
            shell: |
              for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo "line $i"; done
              echo "fatal: relation {{ params.db }} missing" >&2
              exit 9
          - id: later
            shell: "true"
    """)
    done = runproc(tmp_path, str(path))
    assert done.rc == 1
    out = done.stdout
    assert "root cause" in out
    panel = out[out.index("root cause"):]
    assert "migrate" in panel
    assert "echo \"fatal: relation orders missing\"" in panel  # the rendered command
    assert "exit code: 9" in panel
    assert "fatal: relation orders missing" in panel.split("exit code")[1]
    assert "line 12" in panel
    assert "cancelled" in out and "later" in out
    assert not ANSI.search(out)


def test_verbose_streams_output_as_it_arrives(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: chatty
        steps:
          - id: talk
            shell: echo first-line; sleep 3; echo second-line
    """)
    proc = popen(tmp_path, str(path), "-v")
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    t0 = time.monotonic()
    while b"first-line" not in seen and time.monotonic() - t0 < 10:
        readable, _, _ = select.select([fd], [], [], 0.1)
        if readable:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
    assert b"first-line" in seen
    assert time.monotonic() - t0 < 2.8  # before the step finished
    rest = b""
    while chunk := os.read(fd, 65536):
        rest += chunk
    proc.wait(timeout=20)
    assert b"[talk] second-line" in seen + rest and proc.returncode == 0


def test_report_dir_bundle(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: evidence
        steps:
          - id: ok_step
            shell: echo hello
          - id: bad_step
            shell: echo oops >&2; exit 1
    """)
    report_dir = tmp_path / "evidence"
    done = runproc(tmp_path, str(path), "--report-dir", str(report_dir))
    assert done.rc == 1
    report = json.loads((report_dir / "report.json").read_text())
    assert report["status"] == "failed"
    suite = ET.parse(report_dir / "junit.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    assert "hello" in (report_dir / "steps" / "ok_step.log").read_text()
    assert "oops" in (report_dir / "steps" / "bad_step.log").read_text()


def test_usage_and_invalid_input_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "procedure: p\nparams:\n  n: {type: int}\nsteps:\n  - id: a\n    shell: 'true'\n")
    assert runproc(tmp_path, str(path), "-p", "n=notanint").rc == 2
    assert runproc(tmp_path, str(path), "-p", "zzz=1").rc == 2
    assert runproc(tmp_path, str(tmp_path / "missing.yml")).rc == 2
    assert runproc(tmp_path, str(path), "--bogus-flag").rc == 2


def test_json_output_when_stdout_closes_early(tmp_path: Path) -> None:
    path = write(tmp_path, MIXED)
    proc = subprocess.run(f"{' '.join(RUNPROC)} {path} {' '.join(state_args(tmp_path))} --output json | head -c 10",
                          shell=True, cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr
