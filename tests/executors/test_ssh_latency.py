"""SSH connections neither hold back small packets nor delay their acknowledgements.

Without TCP_NODELAY and TCP_QUICKACK each connection to a loopback sshd stalled ~40 ms three
times (Nagle on our side, delayed ACKs against the server's own Nagle), and every later
command on it stalled again when its channel opened: ten sequential steps on one host took
0.56 s instead of 0.09 s (docs/performance.md, "Fan-out over SSH"). Timings are for bench/;
these tests check the socket options and that commands still run over the changed socket.
"""

from __future__ import annotations

import shlex
import socket
from pathlib import Path

import pytest

from engine.transports import ssh
from engine.transports.ssh import QuickAckSocket, _low_latency, open_client
from engine.transports.sshconfig import settings_for
from tests.servers.sshd import SshHost

quick_ack = pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="no TCP_QUICKACK on this platform")


def host_vars(host: SshHost, known_hosts: Path, extra_args: str = "") -> dict[str, str]:
    return {"ansible_host": host.address, "ansible_port": str(host.port), "ansible_user": host.user,
            "ansible_ssh_private_key_file": str(host.client_key_path),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts} -o IdentitiesOnly=yes {extra_args}"}


def is_low_latency(sock: socket.socket) -> bool:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0 and isinstance(sock, QuickAckSocket)


def run_over(client: object, command: str) -> tuple[int, bytes]:
    _, out, _ = client.exec_command(command)  # type: ignore[attr-defined]
    return out.channel.recv_exit_status(), out.read()


@quick_ack
def test_a_direct_connection_sets_nodelay_and_quick_acks(sshd_hosts: list[SshHost], known_hosts_file: Path,
                                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    client = open_client(settings_for("node", host_vars(sshd_hosts[0], known_hosts_file)))
    try:
        transport = client.get_transport()
        assert transport is not None
        assert is_low_latency(transport.sock)
        # several commands over the swapped socket, each on a channel of its own
        for word in ("one", "two", "three"):
            assert run_over(client, f"echo {word}") == (0, f"{word}\n".encode())
    finally:
        client.close()


@quick_ack
def test_a_jump_hosts_channel_is_left_alone_and_the_jump_connection_is_tuned(
        sshd_hosts: list[SshHost], known_hosts_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    bastion, target = sshd_hosts[0], sshd_hosts[1]
    jump = f"-o ProxyJump={shlex.quote(f'{bastion.user}@{bastion.address}:{bastion.port}')}"
    client = open_client(settings_for("behind", host_vars(target, known_hosts_file, jump)))
    transport = client.get_transport()
    assert transport is not None
    channel = transport.sock  # the tunnel through the bastion: a paramiko Channel, not a socket
    to_bastion = channel.get_transport()  # opened without a run's resources: ours to close
    try:
        assert not isinstance(channel, socket.socket)
        assert is_low_latency(to_bastion.sock)
        assert run_over(client, "echo $RUNPROC_NODE") == (0, b"node2\n")
    finally:
        client.close()
        to_bastion.close()


@quick_ack
def test_low_latency_keeps_the_timeout_and_passes_other_objects_through() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        plain = socket.create_connection(server.getsockname(), timeout=7.5)
        peer, _ = server.accept()
        tuned = _low_latency(plain)
        try:
            assert is_low_latency(tuned)
            assert tuned.gettimeout() == 7.5
            peer.sendall(b"ping")
            assert tuned.recv(4) == b"ping"  # reads through the override
        finally:
            tuned.close()
            peer.close()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        assert _low_latency(unix) is unix  # not TCP: as it is
    marker = object()
    assert _low_latency(marker) is marker  # a ProxyCommand or any socket-like object


def test_a_socket_that_refuses_quick_acks_is_kept_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    # an option number no kernel knows: setsockopt fails as on a kernel without TCP_QUICKACK,
    # and the connection goes on with TCP_NODELAY alone rather than failing
    monkeypatch.setattr(ssh, "_QUICKACK", 0x7FFF)
    with socket.create_server(("127.0.0.1", 0)) as server:
        plain = socket.create_connection(server.getsockname(), timeout=5)
        peer, _ = server.accept()
        try:
            kept = _low_latency(plain)
            assert kept is plain
            assert kept.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            peer.sendall(b"ok")
            assert kept.recv(2) == b"ok"
        finally:
            plain.close()
            peer.close()
