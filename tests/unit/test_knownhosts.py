"""known_hosts lookups: OpenSSH's name rules, with the parsed file cached and its plain names indexed."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from engine.transports.knownhosts import ChangedHostKey, KnownHosts

KEY_A = base64.b64encode(b"key-a" * 8).decode()
KEY_B = base64.b64encode(b"key-b" * 8).decode()


def hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def test_plain_hashed_wildcard_and_negated_names_match_as_openssh_says(tmp_path: Path) -> None:
    f = tmp_path / "known_hosts"
    f.write_text("\n".join([
        f"[127.0.0.2]:2222,web1 ssh-ed25519 {KEY_A}",
        f"{hashed('db1')} ssh-ed25519 {KEY_A}",
        f"*.internal,!bad.internal ssh-ed25519 {KEY_B}",
        f"WEB2 ssh-ed25519 {KEY_B}",
        f"@cert-authority * ssh-ed25519 {KEY_A}",
        "# a comment",
    ]) + "\n")
    known = KnownHosts(str(f))
    lines = {name: [e.line for e in known.entries(name)] for name in
             ("[127.0.0.2]:2222", "web1", "db1", "a.internal", "bad.internal", "web2", "nowhere")}
    assert lines == {"[127.0.0.2]:2222": [1], "web1": [1], "db1": [2], "a.internal": [3], "bad.internal": [],
                     "web2": [4], "nowhere": []}


def test_entries_keep_the_files_line_order_across_plain_and_wildcard_lines(tmp_path: Path) -> None:
    f = tmp_path / "known_hosts"
    f.write_text(f"web* ssh-rsa {KEY_B}\nweb1 ssh-ed25519 {KEY_A}\n")
    known = KnownHosts(str(f))
    assert [e.line for e in known.entries("web1")] == [1, 2]
    # the changed-key message names the first recorded line of the presented type
    with pytest.raises(ChangedHostKey, match=r"known_hosts:2"):
        known.verify("web1", "ssh-ed25519", b"other")


def test_a_file_changed_on_disk_is_read_again(tmp_path: Path) -> None:
    f = tmp_path / "known_hosts"
    f.write_text(f"web1 ssh-ed25519 {KEY_A}\n")
    known = KnownHosts(str(f))
    assert known.verify("web1", "ssh-ed25519", base64.b64decode(KEY_A)) != "unknown"
    f.write_text(f"web1 ssh-ed25519 {KEY_B}\n")  # same length, same inode: only the bytes differ
    with pytest.raises(ChangedHostKey):
        known.verify("web1", "ssh-ed25519", base64.b64decode(KEY_A))
    f.unlink()
    assert known.verify("web1", "ssh-ed25519", base64.b64decode(KEY_A)) == "unknown"
