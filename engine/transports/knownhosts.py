"""Host keys, checked against known_hosts files with OpenSSH's semantics before any credential.

Keys are checked against ``~/.ssh/known_hosts`` (or ``ansible_ssh_known_hosts_file``,
``-o UserKnownHostsFile=`` in ``ansible_ssh_common_args``, or the run's own setting) and
``/etc/ssh/ssh_known_hosts``, with OpenSSH's semantics: ``[host]:port`` names for ports
other than 22, hashed names, wildcards and ``@revoked`` lines. The check runs right after
the key exchange and *before* any credential is offered, so an impostor never sees a
password or a signature. An unknown key is refused unless new hosts are accepted
(``--accept-new-hosts``, ``runproc_accept_new_hosts: true``, ``StrictHostKeyChecking=
accept-new``), in which case it is appended to the user known_hosts file. A key that
differs from a recorded one is always refused, naming the file and line to fix.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import hashlib
import hmac
import os
import re
import shlex
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .sshconfig import Notify, SshError, SshSettings


class UnknownHostKey(SshError):
    """The host presented a key that no known_hosts file lists (and new hosts are not accepted)."""


class ChangedHostKey(SshError):
    """The host presented a key other than the recorded one: refused whatever the options."""


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
            if _host_pattern(pattern.lstrip("!")).fullmatch(name):
                if negated:
                    return False
                hit = True
        return hit


@functools.lru_cache(maxsize=4096)
def _host_pattern(pattern: str) -> re.Pattern[str]:
    """A known_hosts name pattern (``*``, ``?``) as a compiled regex: compiled once per process,
    not once per entry per lookup (50 hosts against a 50-line file made 90,000 re.escape calls)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, re.IGNORECASE)


class _Parsed:
    """A known_hosts file's entries, with those naming plain hosts indexed by name: a 50-host
    fan-out against a 50-line file matched every line for every lookup."""

    def __init__(self, entries: list[KnownEntry]) -> None:
        self.entries = entries
        self.by_name: dict[str, list[KnownEntry]] = {}
        self.others: list[KnownEntry] = []  # hashed names, wildcards, negations: matched in turn
        for e in entries:
            names = e.patterns.split(",")
            if any(n.startswith(("|", "!")) or "*" in n or "?" in n for n in names):
                self.others.append(e)
                continue
            for n in dict.fromkeys(n.lower() for n in names):
                self.by_name.setdefault(n, []).append(e)

    def matching(self, name: str) -> list[KnownEntry]:
        found = self.by_name.get(name.lower(), []) + [e for e in self.others if e.matches(name)]
        return sorted(found, key=lambda e: e.line) if self.others else found


# path -> (the file's bytes, its entries): a fan-out looks a file up several times per host; the
# file is read each time (a host recorded meanwhile is seen) but parsed again only when changed
_parsed: dict[str, tuple[bytes, _Parsed]] = {}
_parsed_lock = threading.Lock()


def _known_hosts(path: str) -> _Parsed | None:
    try:
        data = Path(path).read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    with _parsed_lock:
        hit = _parsed.get(path)
    if hit is not None and hit[0] == data:
        return hit[1]
    parsed = _Parsed(_parse_known_hosts(path, data.decode("utf-8", errors="replace")))
    with _parsed_lock:
        _parsed[path] = (data, parsed)
    return parsed


def read_known_hosts(path: str) -> list[KnownEntry]:
    parsed = _known_hosts(path)
    return [] if parsed is None else list(parsed.entries)


def _parse_known_hosts(path: str, text: str) -> list[KnownEntry]:
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
            parsed = _known_hosts(path)
            if parsed is not None:
                out += [e for e in parsed.matching(name) if e.marker != "@cert-authority"]
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


class VerifyHostKey:
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
