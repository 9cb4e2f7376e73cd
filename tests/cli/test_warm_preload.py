"""The warm server imports what common commands use: a command forked from it imports nothing.

A module the server lacks is imported again by every command it serves (report.py alone was
~5 ms of each `--output json` run without bytecode). The check runs the server's preload in a
fresh interpreter, forks a child per command as the server does, and lists what each child
imported beyond the server's modules.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""\
    import json, os, sys
    from engine.cli import warmserver
    warmserver._preload()
    import gc  # as warmserver.main, which freezes what the preload made
    gc.freeze()
    from engine.cli import app
    commands = json.loads(sys.argv[1])
    found = {}
    for argv in commands:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            before = set(sys.modules)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            code = app.run_command(argv)
            os.write(w, json.dumps([code, sorted(set(sys.modules) - before)]).encode())
            os._exit(0)
        os.close(w)
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        os.close(r)
        os.waitpid(pid, 0)
        found[" ".join(argv)] = json.loads(b"".join(chunks))
    print(json.dumps(found))
""")


def test_commands_served_warm_import_nothing_the_server_lacks(tmp_path: Path) -> None:
    proc = tmp_path / "p.yml"
    proc.write_text(textwrap.dedent("""\
        procedure: preload
        vars:
          word: hello
        steps:
          - id: say
            shell: echo {{ vars.word }} {{ 'a string' }}
          - id: check
            needs: [say]
            assert: steps.say.stdout != ''
        """))
    state = f"sqlite:///{tmp_path}/state.db"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    commands = [[str(proc), "--state", state],
                [str(proc), "--state", state, "--output", "json"],
                [str(proc), "--state", state, "--dry-run"],
                [str(proc), "--state", state, "--dry-run", "--output", "json"],
                ["validate", str(proc)]]
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(commands)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "xdg"),
                               # templates compiled afresh (no bytecode cached by earlier runs):
                               # the most a command imports, whatever ran before this test
                               "TMPDIR": str(tmp), "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert len(found) == len(commands)
    for command, (code, imported) in found.items():
        assert code == 0, command
        assert imported == [], f"{command}: imported {imported} in every command served warm"
