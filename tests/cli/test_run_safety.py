"""Values never become code, secrets never leave, odd or huge output never hurts runproc."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.cli import RUNPROC, child_env, run_json, runproc, state_args, write

CANARY_PARAM = "x; touch CANARY $(touch CANARY) `touch CANARY` && touch CANARY | 'q' \"dq\" $HOME end"


def test_param_injection_is_echoed_literally(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: inject
        params:
          x: {type: str}
        steps:
          - id: echo
            shell: echo {{ params.x }}
          - id: in_env
            shell: printf '%s\\n' "$X"
            env:
              X: "{{ params.x }}"
          - id: in_quotes
            shell: echo "value={{ params.x }} $(printf '%s' "{{ params.x }}")"
          - id: in_single_quotes
            shell: printf '%s\\n' 'value={{ params.x }}'
          - id: in_heredoc
            shell: |
              cat <<EOF
              {{ params.x }}
              EOF
              cat <<'EOF'
              {{ params.x }}
              EOF
              # a comment: {{ params.x }}
              echo "`printf '%s' {{ params.x }}`"
    """)
    done = runproc(tmp_path, str(path), "-p", f"x={CANARY_PARAM}", "--output", "json")
    assert done.rc == 0, done.stderr
    assert done.step("echo")["stdout"] == CANARY_PARAM + "\n"
    assert done.step("in_env")["stdout"] == CANARY_PARAM + "\n"
    assert done.step("in_quotes")["stdout"] == f"value={CANARY_PARAM} {CANARY_PARAM}\n"
    assert done.step("in_single_quotes")["stdout"] == f"value={CANARY_PARAM}\n"
    assert done.step("in_heredoc")["stdout"] == f"{CANARY_PARAM}\n" * 3
    assert not (tmp_path / "CANARY").exists()


def test_value_that_would_end_a_quoted_heredoc_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: inject
        params:
          x: {type: str}
        steps:
          - id: doc
            shell: |
              cat <<'EOF'
              {{ params.x }}
              EOF
    """)
    done = runproc(tmp_path, str(path), "-p", "x=a\nEOF\ntouch CANARY", "--output", "json")
    assert done.rc == 1
    assert "here-document" in done.step("doc")["error"]
    assert not (tmp_path / "CANARY").exists()


def test_raw_filter_opts_out_visibly(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: raw
        vars:
          redirect: "> out.txt"
        steps:
          - id: w
            shell: echo hi {{ vars.redirect | raw }}
    """)
    assert done.rc == 0, done.stderr
    assert (tmp_path / "out.txt").read_text() == "hi\n"


SECRET = "s3cr3t-Pa55word-xyz"


def test_secret_never_leaves(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: secretive
        secrets:
          token: {env: MY_TOKEN}
        steps:
          - id: use
            shell: echo "token is {{ secrets.token }}"; echo "$T" >&2
            env:
              T: "{{ secrets.token }}"
          - id: derived
            shell: echo {{ secrets.token | upper }} {{ secrets.token }}-suffix
          - id: fail
            shell: echo "failing with {{ secrets.token }}" >&2; exit 2
            rollback:
              shell: echo {{ secrets.token }}
    """)
    env = {"MY_TOKEN": SECRET}
    for args in (["--output", "json"], [], ["-v"], ["--dry-run"], ["--dry-run", "--output", "json"]):
        done = runproc(tmp_path, str(path), *args, "--report-dir", str(tmp_path / "report"), env=env)
        assert done.rc == (0 if "--dry-run" in args else 1), done.stderr  # a plan does not run `fail`
        assert SECRET not in done.stdout and SECRET not in done.stderr, args
        if "--dry-run" not in args:  # the steps ran: their output is there, masked
            assert "***" in done.stdout, args
        for f in (tmp_path / "report").rglob("*"):
            if f.is_file():
                assert SECRET not in f.read_text(errors="replace"), f
    report = json.loads(runproc(tmp_path, str(path), "--output", "json", env=env).stdout)
    fail = next(s for s in report["steps"] if s["id"] == "fail")
    assert "***" in fail["error"] and SECRET not in fail["error"]
    assert SECRET not in (tmp_path / "state.db").read_bytes().decode("latin-1")


def test_non_utf8_and_nul_bytes_do_not_crash(tmp_path: Path) -> None:
    done = run_json(tmp_path, r"""
        procedure: binary
        steps:
          - id: bytes
            shell: |
              printf 'ok\377\376 nul:\000: end\n'; printf '\351t\351\033[31m\n' >&2
          - id: after
            shell: echo fine
    """)
    assert done.rc == 0, done.stderr
    out = done.step("bytes")["stdout"]
    assert out.startswith("ok") and "end" in out and "\ufffd" in out
    assert done.step("after")["stdout"] == "fine\n"
    text = runproc(tmp_path, str(tmp_path / "proc.yml"), "-v", "--report-dir", str(tmp_path / "r"))
    assert text.rc == 0 and "end" in text.stdout
    assert "\x1b" not in text.stdout and "\x00" not in text.stdout
    import xml.etree.ElementTree as ET

    ET.parse(tmp_path / "r" / "junit.xml")  # still well-formed XML


def test_huge_output_keeps_memory_bounded(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: flood
        steps:
          - id: flood
            shell: head -c 200000000 /dev/zero | tr '\\0' 'x'; echo; echo THE-END
          - id: after
            shell: echo fine
    """)
    cmd = [*RUNPROC, str(path), "--output", "json", "--report-dir", str(tmp_path / "report"), *state_args(tmp_path)]
    # measure this child alone: a fresh process whose RUSAGE_CHILDREN is only runproc
    probe = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], 'wb'))\n"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    report_path = tmp_path / "out.json"
    out = subprocess.run([sys.executable, "-c", probe, str(report_path), *cmd], cwd=tmp_path, env=child_env(),
                         capture_output=True, text=True, timeout=120)
    rc, maxrss_kib = (int(x) for x in out.stdout.split())
    report = json.loads(report_path.read_text())
    assert rc == 0, out.stderr
    assert maxrss_kib < 100 * 1024, f"peak RSS {maxrss_kib / 1024:.0f} MB"
    flood = next(s for s in report["steps"] if s["id"] == "flood")
    assert flood["stdout"].rstrip().endswith("THE-END")  # the tail is kept
    assert "bytes not shown" in flood["stdout"]
    log = Path(flood["stdout_log"])
    assert log.stat().st_size == 200_000_000 + len("\nTHE-END\n")
    assert str(tmp_path / "report") in str(log)
