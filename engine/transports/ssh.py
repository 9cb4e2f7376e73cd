"""Commands on inventory hosts: over SSH (paramiko), or locally for ``ansible_connection=local``.

Like an Ansible connection plugin, this module only moves commands and bytes; which hosts
and in what batches is decided by ``engine.fanout``. paramiko is imported on first use
only, so ``runproc validate`` and ``--help`` never pay for it.

Host keys
---------
Keys are checked against ``~/.ssh/known_hosts`` (or ``ansible_ssh_known_hosts_file``,
``-o UserKnownHostsFile=`` in ``ansible_ssh_common_args``, or the run's own setting) and
``/etc/ssh/ssh_known_hosts``, with OpenSSH's semantics: ``[host]:port`` names for ports
other than 22, hashed names, wildcards and ``@revoked`` lines. The check runs right after
the key exchange and *before* any credential is offered, so an impostor never sees a
password or a signature. An unknown key is refused unless new hosts are accepted
(``--accept-new-hosts``, ``runproc_accept_new_hosts: true``, ``StrictHostKeyChecking=
accept-new``), in which case it is appended to the user known_hosts file. A key that
differs from a recorded one is always refused, naming the file and line to fix.

Killing remote commands
-----------------------
Closing an SSH channel does not stop the remote command (sshd only closes its pipes), so
every command is started through a small wrapper that prints its PID first and then
``exec``s the command. sshd starts each non-pty session in a new session (``setsid``), so
that PID is also the process group: on timeout or cancel a second channel sends SIGTERM,
then SIGKILL, to the group and to every descendant of the PID (which also catches
children that ``sudo`` moved to a new session).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import getpass
import hashlib
import hmac
import os
import re
import select
import shlex
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .local import KILL_GRACE, CommandResult, run_local
from .output import LineStream, OutputBuffer

if TYPE_CHECKING:
    import paramiko

DEFAULT_TIMEOUT = 10.0  # seconds to connect (TCP + banner + auth), as ansible's default timeout
DEFAULT_KEEPALIVE = 30  # seconds between keepalives, so idle connections survive NAT/firewalls
PID_MARKER = re.compile(rb"\x1erunproc-pid (\d+)\n")
MAX_PREAMBLE = 64 * 1024  # output a login shell may print before our PID marker
SSH_CONNECTIONS = frozenset({"ssh", "paramiko", "smart", "paramiko_ssh"})
SECRET_VARS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password",
               "ansible_become_password", "ansible_become_pass")

Notify = Callable[[str], None]


# ---------------------------------------------------------------- errors


class SshError(Exception):
    """A host could not be reached or refused us; the message says what to do about it."""


class UnknownHostKey(SshError):
    """The host presented a key that no known_hosts file lists (and new hosts are not accepted)."""


class ChangedHostKey(SshError):
    """The host presented a key other than the recorded one: refused whatever the options."""


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class Become:
    user: str = "root"
    exe: str = "sudo"
    flags: tuple[str, ...] = ()

    def argv(self, script: str, shell: str = "/bin/sh") -> list[str]:
        # -n: never prompt. A prompt would hang a fan-out with no terminal to answer it.
        return [self.exe, "-n", *self.flags, "-u", self.user, shell, "-c", script]


@dataclass(frozen=True)
class Jump:
    host: str
    port: int | None = None
    user: str | None = None


@dataclass(frozen=True)
class SshSettings:
    """How to reach one host, resolved from its inventory vars and the run's options."""

    name: str
    address: str
    port: int = 22
    user: str = field(default_factory=getpass.getuser)
    key_files: tuple[str, ...] = ()
    password: str | None = field(default=None, repr=False)
    allow_agent: bool = True
    look_for_keys: bool = True
    timeout: float = DEFAULT_TIMEOUT
    keepalive: int = DEFAULT_KEEPALIVE
    known_hosts: str = "~/.ssh/known_hosts"
    global_known_hosts: tuple[str, ...] = ("/etc/ssh/ssh_known_hosts",)
    accept_new: bool = False
    host_key_alias: str | None = None
    jumps: tuple[Jump, ...] = ()
    proxy_command: str | None = None
    become: Become | None = None

    @property
    def label(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH looks up and records: ``host`` on port 22, else ``[host]:port``."""
        if self.host_key_alias:
            return self.host_key_alias
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    @property
    def resource_key(self) -> str:
        via = ",".join(f"{j.user or ''}@{j.host}:{j.port or ''}" for j in self.jumps)
        # settings are part of the key: the same address reached another way is another connection
        return f"ssh:{self.label}" + (f" via {via}" if via else "") + f" #{hash(self) & 0xFFFFFFFF:08x}"


def truthy(value: Any) -> bool:
    """Ansible's boolean reading of an inventory value (INI values are often strings)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "y", "t")
    return bool(value)


def parse_ssh_args(text: str) -> dict[str, str]:
    """OpenSSH command-line options (``-o Key=Value``, ``-J``, ``-i``, ``-p``, ``-l``) as lowercase keys.

    Only the options that change where or how we connect are understood; others (ControlMaster,
    ``-C``, ``-q``...) are ignored, as they only tune the OpenSSH client. ``-i`` may repeat.
    """
    out: dict[str, str] = {}
    words = shlex.split(text or "")
    flags = {"-J": "proxyjump", "-i": "identityfile", "-p": "port", "-l": "user"}
    i = 0
    while i < len(words):
        word = words[i]
        value: str | None = None
        if word.startswith("-o"):
            value = word[2:] or (words[i + 1] if i + 1 < len(words) else "")
            i += 1 if word[2:] else 2
            key, _, rest = value.partition("=") if "=" in value else value.partition(" ")
            key = key.strip().lower()
            rest = rest.strip()
            if key == "identityfile" and key in out:
                out[key] += "\n" + rest
            else:
                out[key] = rest
            continue
        if word[:2] in flags:
            value = word[2:] or (words[i + 1] if i + 1 < len(words) else "")
            i += 1 if word[2:] else 2
            key = flags[word[:2]]
            out[key] = out[key] + "\n" + value if key == "identityfile" and key in out else value
            continue
        i += 1
    return out


def parse_jumps(spec: str) -> tuple[Jump, ...]:
    """``[user@]host[:port][,...]`` (ProxyJump / -J), ``ssh://`` URLs included; ``none`` is none."""
    if not spec or spec.strip().lower() == "none":
        return ()
    jumps = []
    for part in spec.split(","):
        part = part.strip().removeprefix("ssh://")
        user, _, hostport = part.rpartition("@")
        port: int | None = None
        if hostport.startswith("["):  # [v6addr]:port
            host, _, rest = hostport[1:].partition("]")
            if rest.startswith(":"):
                port = int(rest[1:])
        elif hostport.count(":") == 1:
            host, _, p = hostport.partition(":")
            port = int(p)
        else:
            host = hostport
        jumps.append(Jump(host, port, user or None))
    return tuple(jumps)


def _first(vars_: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if vars_.get(name) is not None:
            return vars_[name]
    return None


def settings_for(name: str, vars_: Mapping[str, Any], *, accept_new: bool = False,
                 known_hosts: str | None = None) -> SshSettings:
    """Resolve a host's Ansible connection vars (and ssh args) into SshSettings."""
    args = parse_ssh_args(" ".join(str(vars_.get(k) or "") for k in
                                   ("ansible_ssh_common_args", "ansible_ssh_extra_args")))
    address = str(_first(vars_, "ansible_host", "ansible_ssh_host") or args.get("hostname") or name)
    port = int(_first(vars_, "ansible_port", "ansible_ssh_port") or args.get("port") or 22)
    user = str(_first(vars_, "ansible_user", "ansible_ssh_user") or args.get("user") or getpass.getuser())
    keys = [str(k) for k in (_first(vars_, "ansible_ssh_private_key_file", "ansible_private_key_file"),) if k]
    keys += [k for k in args.get("identityfile", "").split("\n") if k]
    keys = [os.path.expanduser(k) for k in keys]
    password = _first(vars_, "ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
    identities_only = truthy(args.get("identitiesonly", "no"))
    agent = args.get("identityagent", "").lower() != "none" and not (identities_only and keys)
    timeout = float(_first(vars_, "ansible_ssh_timeout", "ansible_timeout") or args.get("connecttimeout")
                    or DEFAULT_TIMEOUT)
    keepalive = int(args.get("serveraliveinterval") or DEFAULT_KEEPALIVE)
    strict = args.get("stricthostkeychecking", "").lower()
    accept = (accept_new or truthy(vars_.get("runproc_accept_new_hosts", False))
              or strict in ("accept-new", "no", "off")
              or any(k in vars_ and not truthy(vars_[k])
                     for k in ("ansible_host_key_checking", "ansible_ssh_host_key_checking")))
    user_files = args.get("userknownhostsfile", "").split()
    kh = str(_first(vars_, "ansible_ssh_known_hosts_file") or (user_files[0] if user_files else None)
             or known_hosts or "~/.ssh/known_hosts")
    global_files = tuple(args["globalknownhostsfile"].split()) if "globalknownhostsfile" in args \
        else ("/etc/ssh/ssh_known_hosts",)
    proxy_command = args.get("proxycommand")
    if proxy_command and proxy_command.lower() == "none":
        proxy_command = None
    become = None
    if truthy(vars_.get("ansible_become", False)):
        method = str(vars_.get("ansible_become_method") or "sudo")
        if method != "sudo":
            raise SshError(f"host {name}: ansible_become_method={method!r} is not supported (only sudo)")
        if _first(vars_, "ansible_become_password", "ansible_become_pass") is not None:
            raise SshError(f"host {name}: ansible_become_password is not supported: become runs "
                           "'sudo -n', so allow the command without a password (NOPASSWD) on the host")
        flags = tuple(f for f in shlex.split(str(vars_.get("ansible_become_flags") or ""))
                      if f not in ("-n", "-S", "--non-interactive", "--stdin"))
        become = Become(str(vars_.get("ansible_become_user") or "root"),
                        str(vars_.get("ansible_become_exe") or "sudo"), flags)
    return SshSettings(
        name=name, address=address, port=port, user=user, key_files=tuple(keys),
        password=None if password is None else str(password), allow_agent=agent,
        look_for_keys=not (identities_only and keys), timeout=timeout, keepalive=keepalive,
        known_hosts=os.path.expanduser(kh), global_known_hosts=global_files, accept_new=accept,
        host_key_alias=args.get("hostkeyalias"), jumps=parse_jumps(args.get("proxyjump", "")),
        proxy_command=proxy_command, become=become)


# ---------------------------------------------------------------- known_hosts


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass(frozen=True)
class KnownEntry:
    file: str
    line: int
    patterns: str
    keytype: str
    blob: bytes
    marker: str | None = None

    def matches(self, name: str) -> bool:
        """OpenSSH's host pattern rules: hashed names, ``*``/``?`` wildcards, ``!`` negation."""
        hit = False
        for pattern in self.patterns.split(","):
            if pattern.startswith("|1|"):
                try:
                    salt, digest = (base64.b64decode(p) for p in pattern[3:].split("|", 1))
                except ValueError:
                    continue
                if hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest):
                    hit = True
                continue
            negated = pattern.startswith("!")
            pattern = pattern.lstrip("!")
            regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
            if re.fullmatch(regex, name, re.IGNORECASE):
                if negated:
                    return False
                hit = True
        return hit


def read_known_hosts(path: str) -> list[KnownEntry]:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return []
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = None
        if fields[0].startswith("@"):
            marker, fields = fields[0], fields[1:]
        if len(fields) < 3:
            continue
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except ValueError:
            continue
        entries.append(KnownEntry(path, number, fields[0], fields[1], blob, marker))
    return entries


class KnownHosts:
    """known_hosts lookups and recording for one user file (plus read-only global files)."""

    _write_lock = threading.Lock()

    def __init__(self, user_file: str, global_files: tuple[str, ...] = ()) -> None:
        self.user_file = user_file
        self.global_files = global_files

    def entries(self, name: str) -> list[KnownEntry]:
        out = []
        for path in (self.user_file, *self.global_files):
            out += [e for e in read_known_hosts(path) if e.marker != "@cert-authority" and e.matches(name)]
        return out

    def known_types(self, name: str) -> list[str]:
        return list(dict.fromkeys(e.keytype for e in self.entries(name) if e.marker is None))

    def verify(self, name: str, keytype: str, blob: bytes) -> KnownEntry | str:
        """The matching entry; else 'unknown'; raises ChangedHostKey for a mismatch or a revoked key."""
        entries = self.entries(name)
        for e in entries:
            if e.marker == "@revoked" and e.blob == blob:
                raise ChangedHostKey(
                    f"the host key of {name} ({keytype} {fingerprint(blob)}) is marked @revoked in "
                    f"{e.file}:{e.line}: refusing to connect")
        plain = [e for e in entries if e.marker is None]
        for e in plain:
            if e.keytype == keytype and e.blob == blob:
                return e
        if plain:
            old = next((e for e in plain if e.keytype == keytype), plain[0])
            raise ChangedHostKey(
                f"HOST KEY CHANGED for {name}: it presented {keytype} {fingerprint(blob)}, but "
                f"{old.file}:{old.line} records {old.keytype} {fingerprint(old.blob)}. Someone may be "
                "intercepting the connection, or the host was reinstalled. Refused, with or without "
                f"--accept-new-hosts. If the change is expected, remove line {old.line} of {old.file} "
                f"(ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(old.file)}) and accept the new key.")
        return "unknown"

    def record(self, name: str, keytype: str, blob: bytes) -> None:
        """Append ``name keytype key`` to the user file (created 0600 in a 0700 directory)."""
        path = Path(self.user_file)
        line = f"{name} {keytype} {base64.b64encode(blob).decode()}\n"
        with self._write_lock:  # threads of this run; flock below guards against other processes
            if str(path) != os.devnull:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "r+b") as f:
                with contextlib.suppress(OSError):
                    fcntl.flock(f, fcntl.LOCK_EX)
                size = f.seek(0, os.SEEK_END)
                if size:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        line = "\n" + line
                f.write(line.encode())


class _VerifyHostKey:
    """paramiko's host key policy hook, called after key exchange and before authentication.

    The client is given no host keys of its own, so paramiko calls this for every
    connection, and whatever it raises aborts the connection before any credential is sent.
    """

    def __init__(self, settings: SshSettings, known: KnownHosts, notify: Notify | None) -> None:
        self.settings = settings
        self.known = known
        self.notify = notify

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        s = self.settings
        name = s.known_hosts_name
        keytype, blob = key.get_name(), key.asbytes()
        if self.known.verify(name, keytype, blob) != "unknown":
            return
        fp = fingerprint(blob)
        if not s.accept_new:
            keyscan = f"ssh-keyscan -p {s.port} {shlex.quote(s.address)} >> {shlex.quote(s.known_hosts)}"
            raise UnknownHostKey(
                f"unknown host key for {name} ({keytype} {fp}): it is not in {s.known_hosts}. Refused "
                "before authenticating. If this is the right host, run again with --accept-new-hosts "
                f"(or set runproc_accept_new_hosts: true in the inventory), or record it first: {keyscan}")
        self.known.record(name, keytype, blob)
        if self.notify is not None:
            self.notify(f"accepted the new host key of {name} ({keytype} {fp}); recorded in {s.known_hosts}")


# ---------------------------------------------------------------- connecting


Resolver = Callable[[str], "Mapping[str, Any] | None"]


def _jump_settings(target: SshSettings, jump: Jump, before: tuple[Jump, ...],
                   resolve: Resolver | None) -> SshSettings:
    """A bastion: its inventory vars when it is an inventory host, else the target's credentials.

    The target's password is never offered to a bastion: only keys and the agent are.
    """
    vars_ = resolve(jump.host) if resolve is not None else None
    if vars_ is not None:
        base = settings_for(jump.host, vars_, accept_new=target.accept_new, known_hosts=target.known_hosts)
    else:
        base = replace(target, name=jump.host, address=jump.host, port=22, user=getpass.getuser(),
                       password=None, host_key_alias=None, proxy_command=None, become=None)
    return replace(base, port=jump.port or base.port, user=jump.user or base.user, jumps=before,
                   become=None)


def open_client(settings: SshSettings, *, resources: Any = None, notify: Notify | None = None,
                resolve: Resolver | None = None) -> paramiko.SSHClient:
    """A connected, authenticated SSHClient whose host key was verified first."""
    import paramiko

    s = settings
    known = KnownHosts(s.known_hosts, s.global_known_hosts)
    sock: Any = None
    if s.jumps:
        hop = _jump_settings(s, s.jumps[-1], s.jumps[:-1], resolve)
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

    def transport(sock_: Any, disabled_algorithms: Any = None) -> paramiko.Transport:
        t = paramiko.Transport(sock_, disabled_algorithms=disabled_algorithms)
        # Ask for the key type we already know for this host, as OpenSSH does; otherwise a host
        # with several keys could present one we have not recorded and look "changed".
        known_types = known.known_types(s.known_hosts_name)
        if known_types:
            opts = t.get_security_options()
            wanted = [k for t_ in known_types for k in
                      (("rsa-sha2-512", "rsa-sha2-256") if t_ == "ssh-rsa" else (t_,)) if k in opts.key_types]
            opts.key_types = [*wanted, *(k for k in opts.key_types if k not in wanted)]
        return t

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(_VerifyHostKey(s, known, notify))
    try:
        client.connect(s.address, s.port, username=s.user, password=s.password,
                       key_filename=list(s.key_files) or None, timeout=s.timeout,
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
        raise SshError(f"{s.label}: unreachable: {exc or type(exc).__name__}") from exc
    t = client.get_transport()
    assert t is not None
    t.set_keepalive(s.keepalive)
    return client


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


def script(cmd: str, env: Mapping[str, str] | None, cwd: str | None) -> str:
    """The command with its environment and directory, for ``/bin/sh -c``.

    The environment goes in as ``export`` lines because sshd's AcceptEnv refuses most names.
    """
    lines = [f"export {k}={shlex.quote(str(v))}" for k, v in (env or {}).items()]
    if cwd:
        lines.append(f"cd {shlex.quote(cwd)} || exit 1")
    return "\n".join([*lines, cmd])


def wrapped(cmd: str, env: Mapping[str, str] | None, cwd: str | None, become: Become | None,
            shell: str = "/bin/sh") -> str:
    """What the remote login shell is given: report our PID (= process group), then exec the command."""
    inner = script(cmd, env, cwd)
    argv = become.argv(inner, shell) if become else [shell, "-c", inner]
    reporter = "printf '\\036runproc-pid %s\\n' \"$$\"; exec \"$@\""
    return shlex.join(["exec", "/bin/sh", "-c", reporter, "runproc", *argv])


def kill_script(pid: int, grace: float = KILL_GRACE) -> str:
    """SIGTERM the process group and every descendant of ``pid``; SIGKILL what is left after ``grace``."""
    tree = ("ps -e -o pid= -o ppid= 2>/dev/null | awk -v root=$p '{kids[$2] = kids[$2] \" \" $1} "
            "END {q = root; out = \"\"; while (q != \"\") {n = split(q, a, \" \"); q = \"\"; "
            "for (i = 1; i <= n; i++) {m = split(kids[a[i]], c, \" \"); "
            "for (j = 1; j <= m; j++) {out = out \" \" c[j]; q = q \" \" c[j]}}} print out}'")
    steps = int(grace / 0.1)
    # dash's kill takes no "--" but reads "-SIG -PGID" as a group; procps' /bin/kill wants "--".
    group = "{{ kill -{sig} -$p 2>/dev/null || /bin/kill -{sig} -- -$p 2>/dev/null; }}"
    # "anything left?": ps, so that zombies waiting for a reaper do not count; without ps,
    # kill -0 one pid at a time (on several it fails as soon as one is gone)
    alive = ("alive() { if [ -n \"$t$(ps -o pid= -p $$ 2>/dev/null)\" ]; then "
             "ps -e -o pgid= -o pid= -o stat= 2>/dev/null | awk -v p=$p -v t=\" $p $t \" "
             "'$3 !~ /^Z/ && ($1 == p || index(t, \" \" $2 \" \")) {f = 1} END {exit !f}'; return; fi; "
             "kill -0 -$p 2>/dev/null && return 0; "
             "for x in $p $t; do kill -0 $x 2>/dev/null && return 0; done; return 1; }")
    return (f"p={pid}; t=$({tree}); {alive}; {group.format(sig='TERM')}; kill -TERM $p $t 2>/dev/null; "
            f"i=0; while [ $i -lt {steps} ] && alive; do sleep 0.1; i=$((i+1)); done; "
            f"{group.format(sig='KILL')}; kill -KILL $p $t 2>/dev/null; exit 0")


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
        command = _Command(chan, out, err, on_output)
        try:
            chan.exec_command(wrapped(cmd, env, cwd, self.settings.become, shell))
            if stdin:
                threading.Thread(target=_feed, args=(chan, stdin), daemon=True).start()
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


def _feed(chan: Any, data: bytes) -> None:
    try:
        chan.sendall(data)
        chan.shutdown_write()
    except Exception:  # noqa: BLE001 - the command exited before reading all of it
        pass


class _Command:
    """Reads one running channel into bounded buffers, separating our PID marker from its output."""

    def __init__(self, chan: Any, out: OutputBuffer, err: OutputBuffer,
                 on_output: Callable[[str, str], None] | None) -> None:
        self.chan = chan
        self.out = out
        self.err = err
        # whole lines only: a secret cut across two reads would escape redaction (output.py)
        self.lines = ({name: LineStream(name, on_output) for name in ("stdout", "stderr")}
                      if on_output is not None else {})
        self.pid: int | None = None
        self.preamble = bytearray()
        self.searching = True

    def pump(self, deadline: float | None, cancel: threading.Event) -> str | None:
        """Read until the command ends; 'timed_out' or 'cancelled' when stopped early."""
        chan = self.chan
        exited_at: float | None = None
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return "timed_out"
            if cancel.is_set():
                return "cancelled"
            wait = 0.25 if deadline is None else min(0.25, max(0.0, deadline - now))
            select.select([chan], [], [], wait)
            self.drain()
            if chan.eof_received and not chan.recv_ready() and not chan.recv_stderr_ready():
                # output is complete; the exit status is normally already here or right behind
                chan.status_event.wait(5.0 if deadline is None else max(0.0, min(5.0, deadline - now)))
                return None
            if chan.closed:
                return None
            if chan.exit_status_ready():
                exited_at = exited_at or now
                if now - exited_at > 1.0:
                    return None  # a background child still holds the output open; not ours to wait for

    def drain(self) -> None:
        chan = self.chan
        while chan.recv_ready():
            self._stdout(chan.recv(65536))
        while chan.recv_stderr_ready():
            data = chan.recv_stderr(65536)
            self.err.write(data)
            self._emit("stderr", data)

    def wait_pid(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.pid is None and self.searching and time.monotonic() < end and not self.chan.closed:
            select.select([self.chan], [], [], 0.05)
            self.drain()

    def drain_until_closed(self, seconds: float) -> None:
        """After a kill: collect the last output and the exit status, for a bounded time."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (self.chan.eof_received and self.chan.status_event.is_set()):
            select.select([self.chan], [], [], 0.05)
            self.drain()
            if self.chan.closed:
                break

    def _stdout(self, data: bytes) -> None:
        if not self.searching:
            self.out.write(data)
            self._emit("stdout", data)
            return
        self.preamble += data
        m = PID_MARKER.search(self.preamble)
        if m is not None:
            self.pid = int(m.group(1))
            rest = bytes(self.preamble[: m.start()] + self.preamble[m.end():])
        elif len(self.preamble) > MAX_PREAMBLE:
            rest = bytes(self.preamble)  # no marker: a strange login shell; keep its output as output
        else:
            return
        self.searching = False
        self.preamble.clear()
        self._stdout(rest)

    def flush(self) -> None:
        if self.searching and self.preamble:
            self.searching = False
            self._stdout(bytes(self.preamble))

    def _emit(self, stream: str, data: bytes) -> None:
        if data and stream in self.lines:
            self.lines[stream].feed(data)

    def close_lines(self) -> None:
        for line in self.lines.values():
            line.close()


# ---------------------------------------------------------------- local hosts


class LocalHostTransport:
    """``ansible_connection=local``: the same ``run`` as SshTransport, on this machine."""

    def __init__(self, name: str, workdir: Path, become: Become | None = None) -> None:
        self.name = name
        self.workdir = workdir
        self.become = become

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
