"""`-v` over SSH streams whole lines, so a secret cut between two reads is still redacted."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.execution import events as ev
from tests.servers.sshd import SshHost, write_inventory


def test_streamed_ssh_output_is_line_buffered_and_redacted(sshd_hosts: list[SshHost], known_hosts_file: Path,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RUNPROC_TEST_TOKEN", "tok-1234567890")
    inv = write_inventory(tmp_path / "inv.ini", sshd_hosts[:1], known_hosts=known_hosts_file)
    proc = tmp_path / "p.yml"
    # the secret is printed in two writes with a pause between: two reads on our side
    proc.write_text(textwrap.dedent(f"""\
        procedure: verbose-ssh
        inventory: {inv.name}
        secrets:
          token: {{env: RUNPROC_TEST_TOKEN}}
        steps:
          - id: say
            on: all
            shell: printf 'tok-12345'; sleep 0.3; printf '67890 done\\n'
        """))
    events: list[ev.Event] = []
    result = engine.run(proc, on_event=events.append, state=f"sqlite:///{tmp_path}/s.db")
    assert result.ok, result.error
    streamed = "".join(e.text for e in events if isinstance(e, ev.StepOutput))
    assert streamed == "*** done\n"
    assert "tok-" not in streamed
