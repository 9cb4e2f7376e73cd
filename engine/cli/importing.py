"""``runproc import ansible PLAYBOOK.yml`` and ``runproc import shell SCRIPT.sh``: a procedure
from what operators already have (engine/importers, docs/import.md).

The procedure goes to stdout, or to ``-o FILE`` (never over an existing file without
``--force``); the summary (steps, each TODO(import) with the line it came from) goes to
stderr, so ``runproc import ansible x.yml > x.proc.yml`` keeps the two apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .common import EXIT_INVALID, Parser


def _import(argv: list[str]) -> int:
    p = Parser(prog="runproc import",
               description="Write a procedure translated from an Ansible playbook or a shell script. What "
                           "cannot be translated is marked # TODO(import) and listed on stderr; the result "
                           "validates (runproc validate).")
    p.add_argument("kind", choices=("ansible", "shell"), help="what the file is")
    p.add_argument("file", help="the playbook (.yml) or script (.sh)")
    # --out, not --output: elsewhere --output chooses text or json, and `--output json` must not
    # quietly write a file named json
    p.add_argument("-o", "--out", dest="output", metavar="FILE", help="write the procedure here (default: stdout)")
    p.add_argument("--force", action="store_true", help="with -o: replace FILE if it exists")
    ns = p.parse_args(argv)
    from ..errors import UsageError

    source = Path(ns.file)
    if ns.output is not None and Path(ns.output).exists() and not ns.force:
        raise UsageError(f"runproc import: {ns.output} exists; not overwriting it (--force replaces it)")
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"runproc import: {ns.file}: no such file") from None
    except UnicodeDecodeError:
        raise UsageError(f"runproc import: {ns.file}: not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"runproc import: {ns.file}: cannot read: {exc.strerror}") from None
    from .. import importers

    _wrong_kind(ns.kind, ns.file, text)
    run = importers.import_playbook if ns.kind == "ansible" else importers.import_script
    result = run(text, ns.file)  # a ProcedureError (not a playbook, YAML error) is printed located, exit 2
    if ns.output is None:
        sys.stdout.write(result.text)
        sys.stdout.flush()
    else:
        try:
            with open(ns.output, "w" if ns.force else "x", encoding="utf-8") as out:
                out.write(result.text)
        except FileExistsError:
            raise UsageError(f"runproc import: {ns.output} exists; not overwriting it (--force replaces it)") from None
        except OSError as exc:
            raise UsageError(f"runproc import: {ns.output}: cannot write: {exc.strerror}") from None
    where = ns.output or "stdout"
    print(f"imported {ns.file} -> {where}: procedure '{result.name}', {result.steps} step{'' if result.steps == 1 else 's'}, "
          f"{len(result.todos)} TODO(import)", file=sys.stderr)
    for todo in result.todos:
        print(f"  TODO(import) {todo}", file=sys.stderr)
    for note in result.notes:
        if "TODO(import)" not in note:
            print(f"  note: {note}", file=sys.stderr)
    for problem in result.problems:  # would be a bug of the importer: said, never hidden
        print(f"  does not validate: {problem}", file=sys.stderr)
    return 1 if result.problems else 0


def _wrong_kind(kind: str, file: str, text: str) -> None:
    """A script given as a playbook, or YAML given as a script: said as such, with the command
    that fits (it read as a YAML syntax error, or as a script of one odd step)."""
    from ..errors import Problem, ProcedureError

    first = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    if kind == "ansible" and (text.startswith("#!") or file.endswith((".sh", ".bash"))):
        raise ProcedureError(Problem(file, 1, 1, "this is a shell script, not an Ansible playbook",
                                     hint=f"runproc import shell {file}"))
    if kind == "shell" and (file.endswith((".yml", ".yaml")) or first == "---" or first.startswith("- hosts:")):
        raise ProcedureError(Problem(file, 1, 1, "this is YAML, not a shell script",
                                     hint=f"an Ansible playbook: runproc import ansible {file}"))


COMMANDS = {"import": _import}
__all__ = ["COMMANDS", "EXIT_INVALID"]
