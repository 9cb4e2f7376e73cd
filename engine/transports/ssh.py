"""Commands on inventory hosts: over SSH (paramiko), or locally for ``ansible_connection=local``.

Like an Ansible connection plugin, this module only moves commands and bytes; which hosts
and in what batches is decided by ``engine.execution.fanout``. paramiko is imported on first use
only, so ``runproc validate`` and ``--help`` never pay for it.

Settings come from ``sshconfig``, host keys are checked by ``knownhosts`` before any credential
is offered, and ``sshcommand`` wraps each command so that a timeout or cancel can kill it on the
host. This module connects (directly, through ProxyJump bastions or a ProxyCommand), keeps one
connection per host for a run, and runs commands over it.
"""

from __future__ import annotations

import shlex
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .knownhosts import KnownHosts, VerifyHostKey
from .local import KILL_GRACE, CommandResult, run_local
from .output import OutputBuffer
from .sshcommand import RemoteCommand, feed_stdin, kill_script, script, wrapped
from .sshconfig import (
    SECRET_VARS,
    Become,
    Notify,
    Resolver,
    SshError,
    SshSettings,
    jump_settings,
    parse_jumps,
    parse_ssh_args,
    settings_for,
)

if TYPE_CHECKING:
    import paramiko

# names other modules import from here: fanout.py reads SECRET_VARS and calls host_transport,
# and the tests parse settings and wrap commands through this module
__all__ = ["SECRET_VARS", "LocalHostTransport", "SshError", "SshTransport", "host_transport", "parse_jumps",
           "parse_ssh_args", "settings_for", "wrapped"]

SSH_CONNECTIONS = frozenset({"ssh", "paramiko", "smart", "paramiko_ssh"})


# ---------------------------------------------------------------- connecting


def open_client(settings: SshSettings, *, resources: Any = None, notify: Notify | None = None,
                resolve: Resolver | None = None) -> paramiko.SSHClient:
    """A connected, authenticated SSHClient whose host key was verified first."""
    import paramiko

    s = settings
    known = KnownHosts(s.known_hosts, s.global_known_hosts)
    sock: Any = None
    if s.jumps:
        hop = jump_settings(s, s.jumps[-1], s.jumps[:-1], resolve)
        bastion = (connection(hop, resources, notify=notify, resolve=resolve).client()
                   if resources is not None else open_client(hop, notify=notify, resolve=resolve))
        try:
            sock = bastion.get_transport().open_channel(
                "direct-tcpip", (s.address, s.port), ("127.0.0.1", 0), timeout=s.timeout)
        except (paramiko.SSHException, OSError) as exc:
            raise SshError(f"{s.label}: the jump host {hop.label} could not open a tunnel to it: {exc}") from exc
    elif s.proxy_command:
        command = (s.proxy_command.replace("%%", "\0").replace("%h", s.address).replace("%p", str(s.port))
                   .replace("%r", s.user).replace("\0", "%"))
        sock = paramiko.ProxyCommand(command)
    elif _is_ip_literal(s.address):
        # an address, not a name: connect without paramiko's getaddrinfo (~1 ms of CPU a host,
        # under the GIL, in a 50-host fan-out); a name is resolved by paramiko as before
        sock = _connect_literal(s.address, s.port, s.timeout, s.label)

    def transport(sock_: Any, disabled_algorithms: Any = None) -> paramiko.Transport:
        t = paramiko.Transport(_low_latency(sock_), disabled_algorithms=disabled_algorithms)
        opts = t.get_security_options()
        # AES-GCM first when the server offers it (OpenSSH does): an AEAD cipher needs no MAC
        # check, which paramiko does byte by byte in Python on every packet it reads
        gcm = [c for c in _GCM_CIPHERS if c in opts.ciphers]
        if gcm:
            opts.ciphers = [*gcm, *(c for c in opts.ciphers if c not in gcm)]
        # Ask for the key type we already know for this host, as OpenSSH does; otherwise a host
        # with several keys could present one we have not recorded and look "changed".
        known_types = known.known_types(s.known_hosts_name)
        if known_types:
            wanted = [k for t_ in known_types for k in
                      (("rsa-sha2-512", "rsa-sha2-256") if t_ == "ssh-rsa" else (t_,)) if k in opts.key_types]
            opts.key_types = [*wanted, *(k for k in opts.key_types if k not in wanted)]
        return t

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(VerifyHostKey(s, known, notify))
    try:
        pkey, key_files = _preloaded(s.key_files)
        client.connect(s.address, s.port, username=s.user, password=s.password, pkey=pkey,
                       key_filename=key_files or None, timeout=s.timeout,
                       allow_agent=s.allow_agent, look_for_keys=s.look_for_keys, compress=False,
                       sock=sock, banner_timeout=s.timeout, auth_timeout=s.timeout,
                       transport_factory=transport)
    except SshError:
        client.close()
        raise
    except paramiko.AuthenticationException as exc:
        client.close()
        tried = [*(f"key {k}" for k in s.key_files), *(["ssh agent"] if s.allow_agent else []),
                 *(["~/.ssh/id_*"] if s.look_for_keys else []), *(["password"] if s.password else [])]
        raise SshError(f"{s.label}: authentication failed ({exc}); tried {', '.join(tried) or 'nothing'}") from exc
    except TimeoutError as exc:
        client.close()
        raise SshError(f"{s.label}: unreachable: no answer within {s.timeout:g}s") from exc
    except (paramiko.SSHException, OSError, EOFError) as exc:
        client.close()
        if isinstance(exc, paramiko.SSHException) and "banner" in str(exc).lower():
            # something answered that is not an SSH server, or dropped the connection at once
            raise SshError(f"{s.label}: no SSH banner within {s.timeout:g}s (not an SSH server, or it "
                           "closed the connection)") from exc
        raise SshError(f"{s.label}: unreachable: {exc or type(exc).__name__}") from exc
    t = client.get_transport()
    assert t is not None
    t.set_keepalive(s.keepalive)
    return client


_GCM_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def _is_ip_literal(address: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _connect_literal(address: str, port: int, timeout: float, label: str) -> Any:
    """A TCP connection to an IP address; refusals and timeouts worded as paramiko's path words them."""
    import socket

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
    except TimeoutError as exc:
        sock.close()
        raise SshError(f"{label}: unreachable: no answer within {timeout:g}s") from exc
    except OSError as exc:
        sock.close()
        raise SshError(f"{label}: unreachable: {exc or type(exc).__name__}") from exc
    return sock


def _low_latency(sock: Any) -> Any:
    """A TCP socket that neither holds back a small packet nor delays its acknowledgements.

    SSH's handshake is a string of small request/answer packets. Nagle's algorithm holds a small
    packet back until the previous one is acknowledged, and Linux delays an ACK up to 40 ms:
    our packets waited on the server's ACKs, and the server's answers on ours (OpenSSH sets
    TCP_NODELAY on its side only once a session starts, after the key exchange and the
    authentication). A connection stalled ~40 ms three times, and each command's channel open
    once more: 107-160 ms to connect and run ``true`` on a loopback sshd, 23 ms without
    (measured with paramiko against OpenSSH 9.2). TCP_QUICKACK lasts until the kernel next
    chooses to delay, so it is asked for again before each read (one more system call a read,
    and more ACKs on bulk output). Anything but a plain TCP socket (a jump host's channel, a
    ProxyCommand's pipe) is returned as it is, and so is a socket that refuses the options: a
    speed-up, never a reason to fail a connection.
    """
    if type(sock) is not socket.socket or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return sock
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        return sock
    if _QUICKACK is None:
        return sock
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
    except OSError:  # a kernel (or an emulation of one) without it
        return sock
    timeout = sock.gettimeout()
    quick = QuickAckSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    quick.settimeout(timeout)
    return quick


_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class QuickAckSocket(socket.socket):
    """A TCP socket whose every read first asks the kernel to acknowledge at once."""

    __slots__ = ()

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        try:  # noqa: SIM105 - every read of a connection: no context manager's cost
            self.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)  # type: ignore[arg-type]
        except OSError:  # closed: the read below says so, as a plain socket's would
            pass
        return super().recv(bufsize, flags)


# key file -> (its bytes, the key): a 50-host fan-out with one identity parsed the same file 150
# times (paramiko tries each key class in turn, per connection). The file is read on every use,
# so a key replaced on disk is seen; an encrypted or unreadable key is left to paramiko, as before.
_keys: dict[str, tuple[bytes, Any]] = {}
_keys_lock = threading.Lock()


def _preloaded(key_files: tuple[str, ...]) -> tuple[Any, list[str]]:
    """The first identity file as a loaded key (paramiko tries ``pkey`` first, then the files
    in order, so the order is kept), and the files left for paramiko to load."""
    if not key_files:
        return None, []
    import paramiko

    first = key_files[0]
    try:
        data = Path(first).expanduser().read_bytes()
    except OSError:
        return None, list(key_files)
    with _keys_lock:
        hit = _keys.get(first)
    if hit is not None and hit[0] == data:
        return hit[1], list(key_files[1:])
    try:
        key = paramiko.PKey.from_path(Path(first).expanduser())
    except Exception:  # noqa: BLE001 - encrypted, unsupported, unreadable: paramiko says why, as before
        return None, list(key_files)
    with _keys_lock:
        _keys[first] = (data, key)
    return key, list(key_files[1:])


class Connection:
    """One host's SSH connection for a run: opened on first use, reopened if it dropped."""

    def __init__(self, settings: SshSettings, resources: Any, notify: Notify | None,
                 resolve: Resolver | None) -> None:
        self.settings = settings
        self.resources = resources
        self.notify = notify
        self.resolve = resolve
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None

    def client(self) -> paramiko.SSHClient:
        with self._lock:  # one connect per host even when several steps start on it at once
            t = self._client.get_transport() if self._client is not None else None
            if t is None or not t.is_active():
                if self._client is not None:
                    self._client.close()
                self._client = open_client(self.settings, resources=self.resources, notify=self.notify,
                                           resolve=self.resolve)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def connection(settings: SshSettings, resources: Any, *, notify: Notify | None = None,
               resolve: Resolver | None = None) -> Connection:
    """The run's connection to a host (``resources`` caches it; closed when the run ends)."""
    if resources is None:
        return Connection(settings, None, notify, resolve)
    return resources.get(settings.resource_key, lambda: Connection(settings, resources, notify, resolve),
                         lambda c: c.close())


# ---------------------------------------------------------------- commands


class SshTransport:
    """Runs commands on one host over the run's SSH connection to it."""

    def __init__(self, settings: SshSettings, resources: Any = None, *, notify: Notify | None = None,
                 resolve: Resolver | None = None) -> None:
        self.settings = settings
        self.resources = resources
        self.notify = notify
        self.resolve = resolve

    def connection(self) -> Connection:
        return connection(self.settings, self.resources, notify=self.notify, resolve=self.resolve)

    def reach(self) -> None:
        """Connect and authenticate (host key checked), running nothing: what a dry run of a
        write proves about the host. Raises SshError."""
        self.connection().client()

    def run(self, cmd: str, *, env: Mapping[str, str] | None = None, cwd: str | None = None,
            deadline: float | None = None, cancel: threading.Event | None = None, stdin: bytes | None = None,
            on_output: Callable[[str, str], None] | None = None, spool_dir: Path | None = None,
            shell: str = "/bin/sh") -> CommandResult:
        """Run ``cmd`` with ``shell -c`` on the host; on deadline or cancel, kill it there."""
        cancel = cancel or threading.Event()
        if cancel.is_set() or (deadline is not None and time.monotonic() >= deadline):
            empty = OutputBuffer("stdout"), OutputBuffer("stderr")
            return CommandResult(None, *empty, timed_out=not cancel.is_set(), cancelled=cancel.is_set())
        client = self.connection().client()
        transport = client.get_transport()
        assert transport is not None
        chan = transport.open_session(timeout=self.settings.timeout)
        out = OutputBuffer("stdout", spool_dir=spool_dir)
        err = OutputBuffer("stderr", spool_dir=spool_dir)
        command = RemoteCommand(chan, out, err, on_output)
        try:
            chan.exec_command(wrapped(cmd, env, cwd, self.settings.become, shell))
            if stdin:
                threading.Thread(target=feed_stdin, args=(chan, stdin), daemon=True).start()
            else:
                chan.shutdown_write()  # EOF at once: a command reading stdin must not wait forever
            verdict = command.pump(deadline, cancel)
            if verdict is not None:
                command.wait_pid(1.0)
                if command.pid is not None:
                    self._kill(transport, command.pid)
                command.drain_until_closed(KILL_GRACE + 1.0)
            rc = chan.exit_status if chan.status_event.is_set() else None
        finally:
            chan.close()
            command.flush()
            command.close_lines()
            out.close()
            err.close()
        return CommandResult(rc, out, err, verdict == "timed_out", verdict == "cancelled")

    def _kill(self, transport: paramiko.Transport, pid: int) -> None:
        become = self.settings.become
        kill = kill_script(pid)
        # as the login user first; with become the command runs as another user, so also through sudo
        remote = kill if become is None else f"{kill}; {shlex.join(become.argv(kill))}"
        try:
            chan = transport.open_session(timeout=self.settings.timeout)
            chan.exec_command(f"exec /bin/sh -c {shlex.quote(remote)}")
            chan.shutdown_write()
            chan.status_event.wait(KILL_GRACE * 2 + 5)
            chan.close()
        except Exception as exc:  # noqa: BLE001 - closing the channel is still attempted by the caller
            if self.notify is not None:
                self.notify(f"{self.settings.name}: could not kill remote process {pid}: {exc}")


# ---------------------------------------------------------------- local hosts


class LocalHostTransport:
    """``ansible_connection=local``: the same ``run`` as SshTransport, on this machine."""

    def __init__(self, name: str, workdir: Path, become: Become | None = None) -> None:
        self.name = name
        self.workdir = workdir
        self.become = become

    def reach(self) -> None:
        """This machine is always reachable."""

    def run(self, cmd: str, *, env: Mapping[str, str] | None = None, cwd: str | None = None,
            deadline: float | None = None, cancel: threading.Event | None = None, stdin: bytes | None = None,
            on_output: Callable[[str, str], None] | None = None, spool_dir: Path | None = None,
            shell: str = "/bin/sh") -> CommandResult:
        where = self.workdir / cwd if cwd else self.workdir
        if self.become is not None:
            # sudo resets the environment, so it travels inside the script as on SSH hosts
            argv, env = self.become.argv(script(cmd, env, None), shell), {}
        else:
            argv = [shell, "-c", cmd]
        return run_local(argv, cwd=where, env=dict(env or {}), deadline=deadline,
                         cancel=cancel or threading.Event(), stdin=stdin, spool_dir=spool_dir,
                         on_output=on_output)


def host_transport(name: str, vars_: Mapping[str, Any], *, workdir: Path, resources: Any = None,
                   accept_new: bool = False, known_hosts: str | None = None, notify: Notify | None = None,
                   resolve: Resolver | None = None) -> SshTransport | LocalHostTransport:
    """The transport for an inventory host, chosen by ``ansible_connection`` as Ansible does."""
    kind = str(vars_.get("ansible_connection") or "ssh")
    settings = settings_for(name, vars_, accept_new=accept_new, known_hosts=known_hosts)
    if kind == "local":
        return LocalHostTransport(name, workdir, settings.become)
    if kind not in SSH_CONNECTIONS:
        raise SshError(f"host {name}: ansible_connection={kind!r} is not supported (use ssh or local)")
    return SshTransport(settings, resources, notify=notify, resolve=resolve)
