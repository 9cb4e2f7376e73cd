"""Real OpenSSH servers on distinct loopback addresses (127.0.0.2 ... 127.0.0.5), one per fake node.

Fixtures:
  sshd_hosts       -> list[SshHost] (session), node1..node4
  known_hosts_file -> Path (session), known_hosts with every host's key
Helper:
  write_inventory(path, hosts, extra_vars=None, group="nodes", known_hosts=None) -> Path

All nodes are the same machine; each sshd sets RUNPROC_NODE=<name> and RUNPROC_NODE_DIR=<host.workdir>
in the session environment so tests can tell the nodes apart.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
import pytest

from ._common import ServerStartError, free_port, log_tail, wait_for_port

SSHD_BIN = Path("/usr/sbin/sshd")
NODE_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")


@dataclass
class SshHost:
    name: str
    address: str
    port: int
    user: str
    client_key_path: Path  # private ed25519 key authorized on every host
    host_key_path: Path  # the host's *public* key file (ssh-ed25519 AAAA... comment)
    workdir: Path  # per-node scratch dir, also exported as $RUNPROC_NODE_DIR
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def host_key_line(self) -> str:
        """known_hosts line, e.g. ``[127.0.0.2]:40123 ssh-ed25519 AAAA...``."""
        keytype, blob = self.host_key_path.read_text().split()[:2]
        return f"[{self.address}]:{self.port} {keytype} {blob}"

    def ssh_client(self, known_hosts: Path | None = None, timeout: float = 10.0) -> paramiko.SSHClient:
        """A connected paramiko client (host key verified against ``known_hosts`` or this host's key)."""
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        if known_hosts is None:
            keytype, blob = self.host_key_line().split()[1:3]
            client.get_host_keys().add(
                f"[{self.address}]:{self.port}",
                keytype,
                paramiko.PKey.from_type_string(keytype, base64.b64decode(blob)),
            )
        else:
            client.load_host_keys(str(known_hosts))
        client.connect(
            self.address,
            port=self.port,
            username=self.user,
            key_filename=str(self.client_key_path),
            look_for_keys=False,
            allow_agent=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
        return client

    def run(self, command: str, timeout: float = 30.0) -> tuple[int, str, str]:
        """Run ``command`` over SSH; return (exit status, stdout, stderr)."""
        client = self.ssh_client()
        try:
            _, stdout, stderr = client.exec_command(command, timeout=timeout)
            out, err = stdout.read().decode(), stderr.read().decode()
            return stdout.channel.recv_exit_status(), out, err
        finally:
            client.close()


def _die_with_parent() -> None:
    """preexec_fn: have the kernel SIGTERM sshd if the pytest process dies without tearing down."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )


def _sshd_config(host: SshHost, host_key_private: Path, authorized_keys: Path, pid_file: Path) -> str:
    return "\n".join(
        [
            f"ListenAddress {host.address}:{host.port}",
            f"HostKey {host_key_private}",
            f"PidFile {pid_file}",
            f"AuthorizedKeysFile {authorized_keys}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "StrictModes no",
            "UsePAM no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "MaxStartups 100:30:200",
            "MaxSessions 50",
            "LogLevel INFO",
            f"SetEnv RUNPROC_NODE={host.name} RUNPROC_NODE_DIR={host.workdir}",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )


def _wait_ready(host: SshHost, timeout: float = 15.0) -> None:
    try:
        wait_for_port(host.address, host.port, timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                rc, out, err = host.run("echo ok")
                if rc == 0 and out.strip() == "ok":
                    return
                raise ServerStartError(f"'echo ok' returned rc={rc} out={out!r} err={err!r}")
            except (paramiko.SSHException, OSError) as exc:
                if time.monotonic() > deadline:
                    raise ServerStartError(f"ssh login failed: {exc!r}") from exc
                time.sleep(0.05)
    except ServerStartError as exc:
        raise ServerStartError(
            f"sshd {host.name} ({host.address}:{host.port}) not ready: {exc}\n{log_tail(host.log_path)}"
        ) from exc


def start_sshd_hosts(count: int = len(NODE_ADDRESSES)) -> list[SshHost]:
    if not SSHD_BIN.is_file():
        raise ServerStartError(f"{SSHD_BIN} missing: install openssh-server (scripts/test does it)")
    if count > len(NODE_ADDRESSES):
        raise ValueError(f"at most {len(NODE_ADDRESSES)} ssh hosts")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    user = pwd.getpwuid(os.getuid()).pw_name
    base = Path(tempfile.mkdtemp(prefix="runproc-sshd-"))
    client_key = base / "id_ed25519"
    _keygen(client_key, f"runproc-tests@{user}")
    authorized_keys = base / "authorized_keys"
    shutil.copyfile(client_key.with_suffix(".pub"), authorized_keys)
    hosts: list[SshHost] = []
    for i, address in enumerate(NODE_ADDRESSES[:count], start=1):
        hdir = base / f"node{i}"
        hdir.mkdir()
        (hdir / "work").mkdir()
        host_key = hdir / "ssh_host_ed25519_key"
        _keygen(host_key, f"node{i}")
        host = SshHost(
            name=f"node{i}",
            address=address,
            port=free_port(address),
            user=user,
            client_key_path=client_key,
            host_key_path=host_key.with_suffix(".pub"),
            workdir=hdir / "work",
            config_path=hdir / "sshd_config",
            log_path=hdir / "sshd.log",
        )
        host.config_path.write_text(_sshd_config(host, host_key, authorized_keys, hdir / "sshd.pid"))
        test = subprocess.run(
            [str(SSHD_BIN), "-t", "-f", str(host.config_path)], capture_output=True, text=True
        )
        if test.returncode != 0:
            raise ServerStartError(f"sshd -t rejected {host.config_path}: {test.stderr}")
        with open(host.log_path, "wb") as log:
            host.process = subprocess.Popen(
                [str(SSHD_BIN), "-D", "-e", "-f", str(host.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        hosts.append(host)
    try:
        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            list(pool.map(_wait_ready, hosts))
    except BaseException:
        stop_sshd_hosts(hosts)
        raise
    return hosts


def stop_sshd_hosts(hosts: Sequence[SshHost]) -> None:
    for host in hosts:
        if host.process and host.process.poll() is None:
            host.process.terminate()
    for host in hosts:
        if host.process:
            try:
                host.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                host.process.kill()
                host.process.wait()
    if hosts:
        shutil.rmtree(hosts[0].client_key_path.parent, ignore_errors=True)


def write_known_hosts(path: Path, hosts: Sequence[SshHost]) -> Path:
    path.write_text("".join(h.host_key_line() + "\n" for h in hosts))
    return path


def write_inventory(
    path: Path | str,
    hosts: Sequence[SshHost],
    extra_vars: Mapping[str, Any] | None = None,
    group: str = "nodes",
    known_hosts: Path | None = None,
) -> Path:
    """Write an Ansible INI inventory listing ``hosts`` in ``group``; ``extra_vars`` go to ``[group:vars]``.

    With ``known_hosts`` the SSH client is told to verify host keys against that file.
    """
    path = Path(path)
    lines = [f"[{group}]"]
    for h in hosts:
        host_vars = {
            "ansible_host": h.address,
            "ansible_port": h.port,
            "ansible_user": h.user,
            "ansible_ssh_private_key_file": h.client_key_path,
        }
        if known_hosts is not None:
            host_vars["ansible_ssh_common_args"] = (
                f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
            )
        lines.append(" ".join([h.name, *(f"{k}={shlex.quote(str(v))}" for k, v in host_vars.items())]))
    if extra_vars:
        lines += ["", f"[{group}:vars]"]
        lines += [f"{k}={v if isinstance(v, str) else repr(v)}" for k, v in extra_vars.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def sshd_hosts() -> Iterator[list[SshHost]]:
    hosts = start_sshd_hosts()
    try:
        yield hosts
    finally:
        stop_sshd_hosts(hosts)


@pytest.fixture(scope="session")
def known_hosts_file(sshd_hosts: list[SshHost], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_known_hosts(tmp_path_factory.mktemp("ssh") / "known_hosts", sshd_hosts)
