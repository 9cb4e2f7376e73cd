"""How to reach an inventory host over SSH: its Ansible vars and OpenSSH args, as SshSettings.

Only reads variables and option strings: nothing here connects or imports paramiko, so a bad
setting (an unsupported become method, say) is reported before any connection is tried. A
ProxyJump bastion gets its settings here too (``jump_settings``), from its own vars when the
inventory knows it.
"""

from __future__ import annotations

import getpass
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import FailedError

DEFAULT_TIMEOUT = 10.0  # seconds to connect (TCP + banner + auth), as ansible's default timeout
DEFAULT_KEEPALIVE = 30  # seconds between keepalives, so idle connections survive NAT/firewalls
SECRET_VARS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password",
               "ansible_become_password", "ansible_become_pass")

Notify = Callable[[str], None]  # a warning for the run's output (an accepted key, a failed kill)
Resolver = Callable[[str], "Mapping[str, Any] | None"]  # a bastion's inventory vars, None if not a host


class SshError(FailedError):
    """A host could not be reached or refused us; the message says what to do about it."""


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


# ---------------------------------------------------------------- bastions


def jump_settings(target: SshSettings, jump: Jump, before: tuple[Jump, ...],
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
