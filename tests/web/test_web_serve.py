"""``runproc serve`` as a user starts it: a real server process on 127.0.0.1 answering a page
and the API; bad input refused in one line with exit 2 (a non-loopback bind without tokens, a
bad --bind, a port in use, a missing tokens file or folder); the token commands; the web
extra imported only by serve, and named when it is missing."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from engine.cli.app import main
from tests.helpers.cli import Done, child_env, runproc
from tests.helpers.web import History, serving


def test_runproc_serve_answers_a_page_and_the_api(history: History) -> None:
    with serving(history) as base:
        page = httpx.get(f"{base}/runs", timeout=30)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert history.ids["demo"][0] in page.text and "open on loopback" in page.text
        run = httpx.get(f"{base}/api/v1/runs/{history.ids['demo'][0]}", timeout=30).json()
        assert run["status"] == "failed" and run["rolled_back"] == ["prepare"]
        missing = httpx.get(f"{base}/api/v1/runs/0123456789ab", timeout=30)
        assert missing.status_code == 404 and "no run" in missing.json()["error"]["message"]


def test_runproc_serve_with_tokens_made_by_token_add(history: History, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yml"
    made = _cli(tmp_path, "token", "add", "ops-bot", "--role", "operator", "--tokens", str(tokens))
    assert made.rc == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("rpt_") and len(token) > 40 and "\n" not in token
    assert "shown this once" in made.stderr and token not in tokens.read_text()
    listed = _cli(tmp_path, "token", "list", "--tokens", str(tokens))
    assert listed.rc == 0 and "ops-bot" in listed.stdout and "operator" in listed.stdout and token not in listed.stdout
    with serving(history, "--tokens", str(tokens)) as base:
        assert httpx.get(f"{base}/api/v1/runs", timeout=30).status_code == 401
        ok = httpx.get(f"{base}/api/v1/runs", headers={"authorization": f"Bearer {token}"}, timeout=30)
        assert ok.status_code == 200 and len(ok.json()["runs"]) == len(history.every())


def _cli(cwd: Path, *args: str) -> Done:
    """``runproc serve ARGS``, with no state added: each test says which it serves."""
    return runproc(cwd, "serve", *args, state=False)


def _one_line(done: Done, *words: str) -> None:
    assert done.rc == 2, (done.rc, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_a_non_loopback_bind_is_refused_without_tokens(history: History, tmp_path: Path) -> None:
    # refused before anything listens: the address is only read, never bound
    _one_line(_cli(tmp_path, "--bind", "0.0.0.0:0", "--state", history.state),
              "0.0.0.0:0", "not a loopback address", "token add")
    empty = tmp_path / "empty.yml"
    empty.write_text("tokens: []\n")
    _one_line(_cli(tmp_path, "--bind", "0.0.0.0:0", "--tokens", str(empty), "--state", history.state),
              "holds no token")


def test_bad_input_to_serve_is_one_line_and_exit_2(history: History, tmp_path: Path) -> None:
    state = ("--state", history.state)
    _one_line(_cli(tmp_path, "--bind", "127.0.0.1:http", *state), "--bind", "port 'http'")
    _one_line(_cli(tmp_path, "--bind", "[::1", *state), "--bind", "[IPv6]:PORT")
    _one_line(_cli(tmp_path, "--bind", ":8480", *state), "--bind", "name a host")
    _one_line(_cli(tmp_path, "--procedures", str(tmp_path / "nowhere"), *state), "not a directory")
    _one_line(_cli(tmp_path, "--tokens", str(tmp_path / "none.yml"), *state), "none.yml", "no such file")
    bad = tmp_path / "bad.yml"
    bad.write_text("tokens:\n  - name: x\n    role: root\n    sha256: abc\n")
    _one_line(_cli(tmp_path, "--tokens", str(bad), *state), "role 'root'")
    bad.write_text("tokens:\n  - name: x\n    role: viewer\n    token: rpt_plain\n")
    _one_line(_cli(tmp_path, "--tokens", str(bad), *state), "never stored")
    _one_line(_cli(tmp_path, "--state", "sqlite://relative"), "--state")
    with socket.socket() as taken:  # a port another process listens on
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        _one_line(_cli(tmp_path, "--bind", f"127.0.0.1:{port}", *state), "cannot listen on",
                  f"127.0.0.1:{port}")


def test_token_commands_refuse_bad_input_in_one_line(tmp_path: Path) -> None:
    tokens = str(tmp_path / "tokens.yml")
    assert _cli(tmp_path, "token", "add", "amy", "--role", "viewer", "--tokens", tokens).rc == 0
    _one_line(_cli(tmp_path, "token", "add", "amy", "--role", "viewer", "--tokens", tokens),
              "'amy' already has a token")
    _one_line(_cli(tmp_path, "token", "add", "bo", "--role", "admin", "--tokens", tokens),
              "--role 'admin'", "viewer, operator, approver")
    _one_line(_cli(tmp_path, "token", "add", "no spaces", "--role", "viewer", "--tokens", tokens),
              "name 'no spaces'")
    _one_line(_cli(tmp_path, "token", "remove", "zed", "--tokens", tokens), "no token named 'zed'", "amy")
    _one_line(_cli(tmp_path, "token", "rotate"), "unknown token command 'rotate'")
    removed = _cli(tmp_path, "token", "remove", "amy", "--tokens", tokens)
    assert removed.rc == 0 and "removed" in removed.stderr
    assert "amy" not in Path(tokens).read_text()


def test_the_web_extra_is_imported_by_serve_only() -> None:
    code = ("import sys; from engine.cli.app import main; main(['--version']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'sse_starlette')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    version, imported = done.stdout.strip().splitlines()
    assert version.startswith("runproc 0.1.0") and imported == "[]"


@pytest.mark.parametrize("module", ["starlette", "uvicorn", "sse_starlette"])
def test_a_missing_web_extra_is_one_line_naming_it(module: str, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    assert main(["serve", "--state", f"sqlite:///{tmp_path}/state.db", "--bind", "127.0.0.1:0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'runproc[web]'" in err[0] and module.replace("_", "-") in err[0]
