"""``runproc serve``: the control room, a web page and a JSON API over the state (docs/web.md);
``runproc serve token add|list|remove``: the tokens it accepts.

The only module that imports ``engine.web`` (the layering contract in pyproject.toml). The
web extra (starlette, uvicorn, sse-starlette) is imported when the server starts, never
before: ``runproc --version`` and the token commands do without it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from .common import STATE_HELP, Parser

DEFAULT_BIND = "127.0.0.1:8480"


def _serve(argv: list[str]) -> int:
    if argv and argv[0] == "token":
        return _token(argv[1:])
    p = Parser(prog="runproc serve",
               description="Serve the control room: the recorded runs of a state (filters, paging), each run with "
                           "its graph, steps, rollbacks and approvals, the procedure catalogue, and the same as JSON "
                           "under /api/v1 (docs/web.md). Binds to loopback; another address needs --tokens.",
               epilog="tokens: runproc serve token add NAME --role viewer|operator|approver --tokens FILE "
                      "(prints the token once); runproc serve token list|remove")
    p.add_argument("--bind", default=DEFAULT_BIND, metavar="HOST:PORT",
                   help=f"where to listen (default {DEFAULT_BIND}; port 0 picks a free one). A non-loopback address "
                        "is refused unless --tokens names configured tokens")
    p.add_argument("--state", help=STATE_HELP)
    p.add_argument("--procedures", metavar="DIR",
                   help="the catalogue: the procedure files of DIR and its subfolders (default ./procedures if it "
                        "exists)")
    p.add_argument("--tokens", metavar="FILE",
                   help="the tokens file (runproc serve token add); without it the server is open to this machine "
                        "only")
    p.add_argument("--triggers", metavar="FILE",
                   help="the Alertmanager rules: which alert starts which procedure with which params "
                        "(POST /api/v1/alertmanager; docs/web.md)")
    p.add_argument("--no-scheduler", action="store_true",
                   help="do not fire the schedules here (runproc scheduler does it elsewhere)")
    ns = p.parse_args(argv)
    from ..errors import UsageError
    from ..web import require_web
    from ..web.server import is_loopback, parse_bind
    from ..web.tokens import load_tokens

    bind = parse_bind(ns.bind)
    book = load_tokens(ns.tokens)
    loopback = is_loopback(bind.host)
    if not loopback and not book.configured:
        given = f"{ns.tokens} holds no token" if ns.tokens else "no --tokens"
        raise UsageError(f"runproc serve: --bind {bind} is not a loopback address and {given}: anyone who can reach "
                         "it would read every run; add tokens first (runproc serve token add NAME --role viewer "
                         "--tokens FILE) and give --tokens FILE")
    procedures = _procedures(ns.procedures)
    require_web()
    from ..web.app import Settings, create_app
    from ..web.server import bound, listen, run

    app = create_app(Settings(state=ns.state, procedures=procedures, tokens=ns.tokens, loopback=loopback,
                              triggers=ns.triggers, scheduler=not ns.no_scheduler))
    sock = listen(bind)
    where = bound(sock, bind)
    access = f"tokens from {ns.tokens} ({len(book.tokens)})" if book.configured else "open to this machine (no tokens)"
    catalogue = f"procedures {procedures}" if procedures is not None else "no procedures folder"
    from ..state.opening import shown_url

    state = shown_url(str(app.state.store.url))  # without its password
    extra = "; scheduler off" if ns.no_scheduler else "; scheduler on"
    extra += f"; alert rules from {ns.triggers}" if ns.triggers else ""
    print(f"runproc serve: http://{where}/ (state {state}; {catalogue}; {access}{extra}); Ctrl-C stops it",
          flush=True)
    run(app, sock)
    return 0


def _procedures(given: str | None) -> Path | None:
    from ..errors import UsageError

    if given is None:
        default = Path("procedures")
        return default.resolve() if default.is_dir() else None
    folder = Path(given)
    if not folder.is_dir():
        raise UsageError(f"runproc serve: --procedures {given}: not a directory")
    return folder.resolve()


# ---------------------------------------------------------------- tokens


def _token(argv: list[str]) -> int:
    verbs = ("add", "list", "remove")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in verbs:
        from ..errors import UsageError

        usage = ("usage: runproc serve token add NAME --role viewer|operator|approver --tokens FILE\n"
                 "       runproc serve token list --tokens FILE\n"
                 "       runproc serve token remove NAME --tokens FILE")
        if argv and argv[0] in ("-h", "--help"):
            print(usage)
            return 0
        what = f"unknown token command {argv[0]!r}" if argv else "a token command is needed"
        raise UsageError(f"runproc serve token: {what} (add, list or remove)\n{usage}".splitlines()[0])
    verb, rest = argv[0], argv[1:]
    from ..web import tokens

    p = Parser(prog=f"runproc serve token {verb}")
    if verb != "list":
        p.add_argument("name", help="who the token is for (letters, digits, . _ @ -)")
    if verb == "add":
        # no argparse choices: add_token says what is wrong in one line, without the usage block
        p.add_argument("--role", required=True, metavar="|".join(tokens.ROLES),
                       help="viewer reads; operator also starts, cancels, resumes and rolls back; approver also "
                            "answers confirm steps")
    p.add_argument("--tokens", required=True, metavar="FILE", help="the tokens file (created when missing)")
    ns = p.parse_args(rest)
    if verb == "add":
        token = tokens.add_token(ns.tokens, ns.name, ns.role)
        print(token)  # alone on stdout: TOKEN=$(runproc serve token add ...) works
        print(f"runproc serve: token for {ns.name} ({ns.role}) added to {ns.tokens}; it is shown this once "
              "(only its SHA-256 is kept)", file=sys.stderr)
        return 0
    if verb == "remove":
        gone = tokens.remove_token(ns.tokens, ns.name)
        print(f"runproc serve: token of {gone.name} ({gone.role}) removed from {ns.tokens}", file=sys.stderr)
        return 0
    book = tokens.load_tokens(ns.tokens)
    for t in book.tokens:
        print(f"{t.name:<24} {t.role:<9} sha256 {t.sha256[:12]}…")
    if not book.tokens:
        print(f"no tokens in {ns.tokens}", file=sys.stderr)
    return 0


# the commands of this module by name, for engine.cli's dispatcher
COMMANDS: dict[str, Callable[[list[str]], int]] = {"serve": _serve}
