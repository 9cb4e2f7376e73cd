"""No library noise on the terminal: a host that is not an SSH server is one line in the step's
error, paramiko's own report (and traceback) goes to the library log, and to stderr only with -v."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.cli import runproc, write
from tests.servers.http import HttpServer


def _procedure(tmp: Path, port: int) -> None:
    (tmp / "inv.ini").write_text(f"[web]\nweb-1 ansible_host=127.0.0.1 ansible_port={port}\n")
    write(tmp, """
        procedure: fan
        inventory: inv.ini
        steps:
          - id: up
            on: web
            shell: uptime
    """)


def test_a_port_that_speaks_http_is_one_clear_line_and_no_traceback(tmp_path: Path, http: HttpServer) -> None:
    _procedure(tmp_path, http.port)
    done = runproc(tmp_path, "proc.yml", "--report-dir", "rep")
    assert done.rc == 1
    terminal = done.stdout + done.stderr
    assert "Traceback" not in terminal
    assert "paramiko" not in terminal.lower()
    assert f"web-1: root@127.0.0.1:{http.port}: no SSH banner within" in terminal
    # the full detail is kept, where a person debugging it looks
    library = (tmp_path / "rep" / "logs" / "library.log").read_text()
    assert "paramiko.transport" in library


def test_verbose_shows_the_library_detail_on_stderr(tmp_path: Path, http: HttpServer) -> None:
    _procedure(tmp_path, http.port)
    done = runproc(tmp_path, "proc.yml", "-v")
    assert done.rc == 1
    assert "runproc: [paramiko.transport]" in done.stderr
