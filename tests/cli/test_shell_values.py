"""Values reach a shell command as environment variables, so no guess about where a {{ }}
stands can make a value run as code. These are the ways a hand-written quoting scanner was
fooled, each of which executed a parameter's text."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import run_json

ATTACK = "z;touch PWNED $(touch PWNED) `touch PWNED` \"q\" 's'"

CASES = {
    "unquoted heredoc ended by the value": ("cat <<EOF\nhello {{ params.x }}\nEOF\n",
                                            "z\nEOF\ntouch PWNED\ncat <<EOF"),
    "arithmetic read as a heredoc": ("echo $((1<<2))\necho {{ params.x }}\n", ATTACK),
    "a subshell inside $( )": ('echo "$( (true) ; echo {{ params.x }} )"\n', ATTACK),
    "a # right after a value": ("echo {{ params.x }}#{{ params.x }}\n", ATTACK),
    "inside double quotes": ('echo "x={{ params.x }}"\n', ATTACK),
    "inside single quotes": ("echo 'x={{ params.x }}'\n", ATTACK),
    "inside backticks": ("echo `echo {{ params.x }}`\n", ATTACK),
}


@pytest.mark.parametrize("name", list(CASES))
def test_values_never_run_as_code(tmp_path: Path, name: str) -> None:
    command, value = CASES[name]
    done = run_json(tmp_path, f"""
        procedure: values
        params:
          x: {{type: str}}
        steps:
          - id: a
            shell: |
{"".join("              " + line + chr(10) for line in command.splitlines())}
    """, "-p", f"x={value}")
    assert not (tmp_path / "PWNED").exists(), done.json["steps"][0]
    if name != "unquoted heredoc ended by the value":
        assert done.rc == 0, done.stderr


def test_values_arrive_exactly(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: exact
        params:
          x: {type: str}
        steps:
          - id: a
            shell: |
              printf '%s|' {{ params.x }} "{{ params.x }}" 'in {{ params.x }}'
              cat <<EOF
              {{ params.x }}
              EOF
    """, "-p", f"x={ATTACK}")
    assert done.rc == 0
    out = done.json["steps"][0]["stdout"]
    assert out == f"{ATTACK}|{ATTACK}|in {ATTACK}|{ATTACK}\n"


def test_a_secret_in_double_quotes_is_redacted_in_the_plan(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: secret-dq
        secrets:
          pw: {env: RUNPROC_TEST_PW}
        steps:
          - id: login
            shell: curl -u "admin:{{ secrets.pw }}" http://127.0.0.1:9/
    """, "--dry-run", env={"RUNPROC_TEST_PW": 'pa$$w"rd'})
    action = done.json["steps"][0]["action"]
    assert action == 'curl -u "admin:***" http://127.0.0.1:9/'
    assert "pa$$" not in done.stdout and "pa\\$" not in done.stdout


def test_arithmetic_takes_integers_only(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: arith
        params:
          n: {type: str}
        steps:
          - id: a
            shell: echo $(( {{ params.n }} + 1 ))
    """, "-p", "n=a[$(touch PWNED)]")
    assert done.rc == 1
    assert "must be an integer" in done.json["steps"][0]["error"]
    assert not (tmp_path / "PWNED").exists()
