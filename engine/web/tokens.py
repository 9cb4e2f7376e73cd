"""Who may use ``runproc serve``: API tokens in a YAML file, each with a name and a role, kept
as the SHA-256 of the token and never the token itself (``runproc serve token add`` prints a new
token once). Plain Python and PyYAML: the token commands work without the web extra.

    # runproc serve tokens (docs/web.md)
    tokens:
      - name: alice
        role: operator
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

A token is long and random (256 bits), so one unsalted hash is enough: nobody guesses it from
the hash, and a fast hash keeps each request's check cheap. The presented token's hash is
compared with every stored hash (``hmac.compare_digest``, no early exit), so how long the check
takes says nothing about which token nearly matched.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

# viewer reads; operator starts, cancels, resumes and rolls back runs; approver answers confirm
# steps. Each role reads too. The write actions arrive with later work (docs/web.md).
ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "operator": frozenset({"read", "start", "cancel", "resume", "rollback"}),
    "approver": frozenset({"read", "approve"}),
}
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_HASH_PATTERN = re.compile(r"[0-9a-f]{64}")
# a presented token longer than this is no token of ours: refused before it is hashed
MAX_TOKEN_LENGTH = 512
_HEADER = "# runproc serve tokens: each token's SHA-256, never the token (runproc serve token add; docs/web.md)\n"


@dataclass(frozen=True)
class Token:
    """One configured token: who it is, what it may do, and the SHA-256 of the token (hex)."""

    name: str
    role: str
    sha256: str

    def can(self, action: str) -> bool:
        return action in ROLES.get(self.role, frozenset())


@dataclass(frozen=True)
class TokenBook:
    """The configured tokens; none configured means the server is open (loopback only)."""

    tokens: tuple[Token, ...] = ()
    path: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.tokens)

    def match(self, presented: str | None) -> Token | None:
        """The token whose hash is the presented token's, or None; constant in the tokens' count."""
        if not presented or len(presented) > MAX_TOKEN_LENGTH:
            return None
        digest = token_hash(presented)
        found: Token | None = None
        for token in self.tokens:  # every one compared: no early exit
            if hmac.compare_digest(digest, token.sha256):
                found = token
        return found


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    """A new random token; the prefix lets secret scanners and people recognise one."""
    return "rpt_" + secrets.token_urlsafe(32)


def _problem(path: str | Path, message: str) -> InvalidInputError:
    return InvalidInputError(f"--tokens {path}: {message}")  # the CLI says "runproc: " before it


def load_tokens(path: str | Path | None) -> TokenBook:
    """The tokens of ``path`` (None: no tokens). A file that is missing or cannot be read is
    invalid input, said in one line: a server must not start open when its tokens were meant."""
    if path is None:
        return TokenBook()
    entries = _read(path, missing_ok=False)
    return TokenBook(tuple(entries), str(path))


def _read(path: str | Path, *, missing_ok: bool) -> list[Token]:
    import yaml

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return []
        raise _problem(path, "no such file (runproc serve token add NAME --role ROLE --tokens FILE makes one)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _problem(path, f"cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise _problem(path, f"not valid YAML{where}") from None
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("tokens", []), list) or set(data) - {"tokens"}:
        raise _problem(path, "expected a mapping with one key, tokens: a list of {name, role, sha256}")
    out: list[Token] = []
    seen: set[str] = set()
    for number, entry in enumerate(data.get("tokens") or [], start=1):
        out.append(_entry(path, number, entry, seen))
    return out


def _entry(path: str | Path, number: int, entry: Any, seen: set[str]) -> Token:
    where = f"token {number}"
    if not isinstance(entry, dict) or set(entry) != {"name", "role", "sha256"}:
        raise _problem(path, f"{where}: expected exactly name, role and sha256 (the token itself is never stored)")
    name, role, digest = entry["name"], entry["role"], entry["sha256"]
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise _problem(path, f"{where}: name {name!r}: letters, digits and . _ @ - only, at most 64")
    if name in seen:
        raise _problem(path, f"{where}: name {name!r} is used twice")
    if role not in ROLES:
        raise _problem(path, f"{where} ({name}): role {role!r}: expected one of {', '.join(ROLES)}")
    if not isinstance(digest, str) or not _HASH_PATTERN.fullmatch(digest.lower()):
        raise _problem(path, f"{where} ({name}): sha256 must be 64 hex digits (the hash, not the token)")
    seen.add(name)
    return Token(name, role, digest.lower())


def add_token(path: str | Path, name: str, role: str) -> str:
    """Make a token for ``name`` with ``role``, store its hash in ``path`` (created, mode 0600)
    and return the token: the only time it is ever seen."""
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInputError(f"serve token add: name {name!r}: letters, digits and . _ @ - only, "
                                "at most 64")
    if role not in ROLES:
        raise InvalidInputError(f"serve token add: --role {role!r}: expected one of {', '.join(ROLES)}")
    tokens = _read(path, missing_ok=True)
    if any(t.name == name for t in tokens):
        raise InvalidInputError(f"serve token add: {name!r} already has a token in {path} "
                                "(runproc serve token remove it first to replace it)")
    token = new_token()
    _write(path, [*tokens, Token(name, role, token_hash(token))])
    return token


def remove_token(path: str | Path, name: str) -> Token:
    """Remove ``name``'s token from ``path``; the token removed."""
    tokens = _read(path, missing_ok=False)
    gone = [t for t in tokens if t.name == name]
    if not gone:
        known = ", ".join(t.name for t in tokens) or "none"
        raise InvalidInputError(f"serve token remove: no token named {name!r} in {path} (there: {known})")
    _write(path, [t for t in tokens if t.name != name])
    return gone[0]


def _write(path: str | Path, tokens: list[Token]) -> None:
    """Replace the file in one rename, so a server reading it never sees half of it."""
    import yaml

    file = Path(path)
    body = yaml.safe_dump({"tokens": [{"name": t.name, "role": t.role, "sha256": t.sha256} for t in tokens]},
                          sort_keys=False)
    folder = file.parent if str(file.parent) else Path(".")
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{file.name}.", dir=folder)
    except OSError as exc:
        raise _problem(path, f"cannot write in {folder}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:  # mkstemp made it 0600: only its owner reads it
            out.write(_HEADER + body)
        os.replace(temp, file)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise _problem(path, f"cannot write it: {exc.strerror or exc}") from None
