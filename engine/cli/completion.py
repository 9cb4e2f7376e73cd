"""Shell completion for bash, zsh and fish, by argcomplete (docs/install.md, "Shell completion").

``runproc completion SHELL`` prints argcomplete's script for that shell. The script calls
``runproc`` itself with ``_ARGCOMPLETE=1``, the line (``COMP_LINE``) and the cursor
(``COMP_POINT``) in its environment; ``main_entry`` sees that variable before anything else
and calls ``complete()``, which writes the candidates to the shell's file descriptor 8 (or the
file ``_ARGCOMPLETE_STDOUT_FILENAME`` names) and exits. A normal command never imports this
module nor argcomplete.

The command line has no single argparse tree: ``runproc FILE`` is the run's parser, and each
other command builds its own parser in its module (engine/cli/app.py's ``_COMMAND_MODULES``).
So the names are read from that registry, and the parser of the command being completed is
taken from the command itself: it is called with ``parse_known_args`` intercepted, which every
command reaches before doing anything (they parse first, then import and work). A command
added to the registry completes, flags and all, with no change here. A command that picks a
verb from its first words itself (``serve token add``) is called with the words typed, so the
parser captured is the verb's.

What is offered for a value is decided by the argument's ``dest``: procedure files for
``file``, step ids of that file for ``--only``, its param names (then their choices) for
``-p``, recorded run ids for ``run`` (``show``, ``resume``, ``rollback``, ``approve``), plans,
inventories and params files by their suffixes. A completer never fails the shell: whatever
goes wrong gives no candidates.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .common import Parser

SHELLS = ("bash", "zsh", "fish")
PROCEDURE_SUFFIXES = ("yml", "yaml")
# at most this many run ids are offered (the newest): a long history must not flood the screen
RUN_IDS = 50


class _Built(BaseException):
    """Raised by the intercepted ``parse_known_args``: carries the parser a command built.
    A BaseException, so a command's own ``except Exception`` does not swallow it."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__()
        self.parser = parser


# ---------------------------------------------------------------- runproc completion SHELL


def _completion(argv: list[str]) -> int:
    p = Parser(prog="runproc completion",
               description="Print the shell code that completes runproc's commands, flags, procedure files, "
                           "step ids (--only), params (-p) and run ids (show, resume, rollback).",
               epilog='bash: eval "$(runproc completion bash)" in ~/.bashrc; zsh (after compinit): '
                      'eval "$(runproc completion zsh)" in ~/.zshrc; fish: runproc completion fish | source '
                      "in ~/.config/fish/config.fish (docs/install.md)")
    p.add_argument("shell", choices=SHELLS)
    ns = p.parse_args(argv)
    import argcomplete

    # for zsh this is the bash code, which tells the two apart when it runs (zsh's compdef)
    sys.stdout.write(argcomplete.shellcode(["runproc"], shell=ns.shell))
    return 0


# ---------------------------------------------------------------- answering the shell


def complete(exit_method: Callable[[int], Any] = os._exit) -> None:
    """Answer the shell's completion request described by the environment, then exit."""
    import argcomplete

    line = os.environ.get("COMP_LINE", "")
    try:
        point = int(os.environ.get("COMP_POINT", len(line)))
    except ValueError:
        point = len(line)
    words = argcomplete.split_line(line, point)[3]  # the words before the one being completed
    start = int(os.environ.get("_ARGCOMPLETE", "1") or 1)
    parser = completion_parser(words[start:])
    argcomplete.autocomplete(parser, always_complete_options=False, exit_method=exit_method)
    exit_method(0)  # not reached when autocomplete answered; it exits itself


def commands() -> list[str]:
    """Every command name the dispatcher knows (app.py), ``run`` first."""
    from . import app

    names = dict.fromkeys(("run", *app.SUBCOMMANDS, *app.RUN_COMMANDS, *app._COMMAND_MODULES, "completion"))
    return list(names)


def completion_parser(words: list[str]) -> argparse.ArgumentParser:
    """The parser that reads ``words`` (the complete words after ``runproc``): the named command's
    under a ``runproc`` parser (as argcomplete walks subcommands), else the run's (``runproc FILE``),
    whose first word is also offered the command names."""
    if words and words[0] in commands():
        return _nest("runproc", [words[0]], command_parser(words[0], words[1:]))
    from .app import _run_parser

    run = _run_parser()
    run.add_argument("-V", "--version", action="store_true", help="print the version and the git commit")
    _annotate(run, first_word=not words)
    return run


def command_parser(name: str, rest: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser command ``name`` builds for the words typed after it (``rest``), with the
    completers its arguments call for. A command that picks a verb from its first words itself
    (``serve token add``, ``schedule add``) builds that verb's parser when given them: it is then
    nested under those words, as argcomplete expects subcommands."""
    if name == "run":
        from .app import _run_parser

        parser: argparse.ArgumentParser | None = _run_parser("runproc run")
        lead: list[str] = []
    else:
        lead = []
        for word in (rest or [])[:2]:
            if word.startswith("-"):
                break
            lead.append(word)
        for n in range(len(lead), -1, -1):  # the verb's parser, else the command's own
            parser = _capture(name, lead[:n])
            if parser is not None:
                break
    parser = parser or argparse.ArgumentParser(prog=f"runproc {name}")
    _annotate(parser)
    path = parser.prog.split()[2:]  # "runproc serve token add": the verb words below the command
    if not path or path != lead[:len(path)]:
        return parser
    return _nest(f"runproc {name}", path, parser)


def _nest(prog: str, path: list[str], parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` as the subcommand ``path`` of a parser named ``prog`` (one level per word)."""
    for depth in range(len(path), 0, -1):
        outer = argparse.ArgumentParser(prog=" ".join([prog, *path[:depth - 1]]), add_help=False)
        outer.add_subparsers(dest=f"command{depth}", parser_class=lambda _inner=parser, **_: _inner) \
            .add_parser(path[depth - 1])
        parser = outer
    return parser


def _capture(name: str, argv: list[str]) -> argparse.ArgumentParser | None:
    """Call the command on ``argv`` with argparse's parse step replaced by a raise of the parser
    it built (its output muted: a command that prints its usage when it has no verb yet)."""
    import contextlib
    import io

    from .app import _command

    def capture(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Built(self)

    real = argparse.ArgumentParser.parse_known_args
    argparse.ArgumentParser.parse_known_args = capture  # type: ignore[method-assign]
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            _command(name)(list(argv))
    except _Built as built:
        return built.parser
    except BaseException:  # noqa: BLE001 - a command that does something else first: no flags offered
        return None
    finally:
        argparse.ArgumentParser.parse_known_args = real  # type: ignore[method-assign]
    return None


def _annotate(parser: argparse.ArgumentParser, *, first_word: bool = False) -> None:
    """Give each argument (and those of subcommands) the completer its ``dest`` calls for."""
    from argcomplete.completers import DirectoriesCompleter, FilesCompleter

    procedures = FilesCompleter(PROCEDURE_SUFFIXES)
    by_dest: dict[str, Any] = {
        "file": _first_word(procedures) if first_word else procedures,
        "files": procedures,
        "plan": FilesCompleter(("json",)),
        "params_file": FilesCompleter(("yml", "yaml", "json")),
        "inventory": FilesCompleter(("yml", "yaml", "ini")),
        "only": _step_ids,
        "param": _params,
        "run": _run_ids,
        "dir": DirectoriesCompleter(),
        "report_dir": DirectoriesCompleter(),
    }
    for action in parser._actions:  # argparse keeps its arguments here; argcomplete reads the same
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                _annotate(sub)
        elif action.dest in by_dest and not action.choices and getattr(action, "completer", None) is None:
            action.completer = by_dest[action.dest]  # type: ignore[attr-defined]


def _first_word(files: Callable[..., Iterable[str]]) -> Callable[..., list[str]]:
    """``runproc <TAB>``: the commands, then procedure files and folders."""
    def complete(prefix: str, **kwargs: Any) -> list[str]:
        return [c for c in commands() if c.startswith(prefix)] + list(files(prefix, **kwargs))

    return complete


# ---------------------------------------------------------------- what a value may be


def _procedure(parsed_args: argparse.Namespace) -> dict[str, Any]:
    """The procedure file named on the line, read as plain YAML (no validation: a file being
    written still completes, and quickly); {} when there is none or it does not read."""
    file = getattr(parsed_args, "file", None)
    if not isinstance(file, str) or not Path(file).is_file():
        return {}
    try:
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = yaml.load(Path(file).read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader
    except Exception:  # noqa: BLE001 - not YAML (yet): nothing to offer
        return {}
    return data if isinstance(data, dict) else {}


def _step_ids(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """``--only``: the ids of the procedure's steps (what --only selects among)."""
    steps = _procedure(parsed_args).get("steps")
    ids = [s.get("id") for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []
    return [i for i in ids if isinstance(i, str) and i.startswith(prefix)]


def _params(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """``-p``: ``name=`` for each declared param; after ``name=``, its choices (or true/false)."""
    params = _procedure(parsed_args).get("params")
    if not isinstance(params, dict):
        return []
    name, sep, _value = prefix.partition("=")
    if not sep:
        return [f"{n}=" for n in params if isinstance(n, str) and n.startswith(prefix)]
    spec = params.get(name)
    if not isinstance(spec, dict):
        return []
    values = spec.get("choices") or (["true", "false"] if spec.get("type") == "bool" else [])
    return [c for c in (f"{name}={v}" for v in values if isinstance(v, str | int | float)) if c.startswith(prefix)]


def _run_ids(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """``show``/``resume``/``rollback``/``approve RUN``: the newest recorded runs' ids, from the
    state the line names (``--state``, else $RUNPROC_STATE or the default). A SQLite state that
    does not exist yet is not created."""
    from ..state.opening import default_state_url, is_postgres, state_path

    url = getattr(parsed_args, "state", None) or default_state_url()
    try:
        if not is_postgres(url) and not state_path(url).is_file():
            return []
        from ..state.opening import open_store

        store = open_store(url, upload_spool=False)
        try:
            ids = [str(r["id"]) for r in store.runs(RUN_IDS)]
        finally:
            store.close()
    except Exception:  # noqa: BLE001 - an unreachable or unreadable state: nothing to offer
        return []
    return [i for i in ids if i.startswith(prefix)]


# the commands of this module by name, for engine.cli's dispatcher
COMMANDS: dict[str, Callable[[list[str]], int]] = {"completion": _completion}
