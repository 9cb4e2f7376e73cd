"""The commands that read procedures and inventories without running anything: validate,
graph, schema, list and inventory. Each imports the loader or the inventory only once its own
arguments parsed, so ``--help`` and usage errors stay cheap.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import EXIT_INVALID, Parser, is_tty, print_problems


def _validate(argv: list[str]) -> int:
    p = Parser(prog="runproc validate", description="Check procedures: schema, references, cycles, expressions.")
    p.add_argument("files", nargs="+")
    p.add_argument("--output", choices=("text", "json"), default="text")
    ns = p.parse_args(argv)
    from ..api import load
    from ..errors import ProcedureError

    report = []
    bad = False
    for file in ns.files:
        try:
            proc = load(file)
            report.append({"file": file, "ok": True, "procedure": proc.procedure, "problems": []})
        except ProcedureError as exc:
            bad = True
            report.append({"file": file, "ok": False, "problems": [p.as_dict() for p in exc.problems]})
            if ns.output == "text":
                print_problems(exc)
    if ns.output == "json":
        print(json.dumps({"ok": not bad, "files": report}, indent=2))
    elif not bad:
        for item in report:
            print(f"{item['file']}: ok ({item['procedure']})")
    return EXIT_INVALID if bad else 0


def _graph(argv: list[str]) -> int:
    p = Parser(prog="runproc graph", description="Print the step DAG.")
    p.add_argument("file")
    p.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    ns = p.parse_args(argv)
    from ..api import load
    from ..errors import ProcedureError
    from ..format import graph

    try:
        proc = load(ns.file)
    except ProcedureError as exc:
        print_problems(exc)
        return EXIT_INVALID
    dag = graph.build(proc.steps)
    labels = {s.id: s.name or s.id for s in proc.steps}
    out = graph.to_dot(dag, labels, proc.procedure) if ns.format == "dot" else graph.to_mermaid(dag, labels)
    sys.stdout.write(out)
    return 0


def _schema(argv: list[str]) -> int:
    p = Parser(prog="runproc schema", description="Print the JSON Schema of the procedure format, or install it "
                                                   "for an editor (docs/install.md, Editor setup).")
    p.add_argument("--install", choices=("vscode",),
                   help="vscode: write .vscode/runproc.schema.json and map it to procedure files in "
                        ".vscode/settings.json (merged with the settings there)")
    p.add_argument("--glob", action="append", default=[], metavar="GLOB",
                   help="with --install: the procedure files to map (repeatable; default: procedures/**, "
                        "*.procedure.yml and the procedure files at the top of the workspace)")
    p.add_argument("--workspace", default=".", metavar="DIR", help="with --install: the workspace folder (default .)")
    p.add_argument("--dry-run", action="store_true", help="with --install: say what would be written; write nothing")
    ns = p.parse_args(argv)
    from ..format.schema import json_schema

    if ns.install is None:
        if ns.glob or ns.dry_run or ns.workspace != ".":
            p.error("--glob, --workspace and --dry-run go with --install")
        print(json.dumps(json_schema(), indent=2))
        return 0
    from .scaffold import default_globs, install_vscode

    workspace = Path(ns.workspace)
    if not workspace.is_dir():
        print(f"runproc schema: {workspace}: no such folder", file=sys.stderr)
        return EXIT_INVALID
    return install_vscode(workspace, ns.glob or default_globs(workspace), json_schema(), dry_run=ns.dry_run)


def _list(argv: list[str]) -> int:
    p = Parser(prog="runproc list",
                description="List procedures with file, description, owner and params: the *.yml and *.yaml "
                            "files of DIR and of its subfolders one level down (examples/local/*.yml).")
    p.add_argument("dir", nargs="?", help="the folder (default: ./procedures if it exists, else .)")
    p.add_argument("--output", choices=("text", "json"), default="text")
    ns = p.parse_args(argv)
    from ..api import load, procedure_files
    from ..errors import ProcedureError

    folder = Path(ns.dir or ("procedures" if Path("procedures").is_dir() else "."))
    if not folder.is_dir():
        print(f"runproc list: {folder}: not a directory", file=sys.stderr)
        return EXIT_INVALID
    rows = []
    for path in procedure_files(folder):
        try:
            proc = load(path)
            params = ", ".join(f"{n}{'*' if s.required else ''}:{s.type}" for n, s in proc.params.items())
            rows.append({"file": str(path), "procedure": proc.procedure, "description": proc.description or "",
                         "owner": proc.owner or "", "params": params, "ok": True})
        except ProcedureError as exc:
            rows.append({"file": str(path), "procedure": path.stem, "description": f"INVALID: {exc.problems[0]}",
                         "owner": "", "params": "", "ok": False})
    if ns.output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    if not is_tty(sys.stdout):
        _list_plain(rows)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"procedures in {folder}")
    for col in ("file", "procedure", "description", "owner", "params"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["file"], r["procedure"], r["description"], r["owner"], r["params"])
    Console(no_color=bool(os.environ.get("NO_COLOR"))).print(table)
    return 0


def _list_plain(rows: list[dict[str, Any]]) -> None:
    """For a pipe or a file: whole words, one line a procedure (grep finds it by file, name or
    owner), the description on an indented line below."""
    fw = max((len(r["file"]) for r in rows), default=0)
    nw = max((len(r["procedure"]) for r in rows), default=0)
    for r in rows:
        line = f"{r['file']:<{fw}}  {r['procedure']:<{nw}}"
        if r["owner"]:
            line += f"  owner: {r['owner']}"
        if r["params"]:
            line += f"  params: {r['params']}"
        print(line.rstrip())
        if r["description"]:
            print(f"    {' '.join(r['description'].split())}")


def _inventory(argv: list[str]) -> int:
    p = Parser(prog="runproc inventory", description="Print an inventory as ansible-inventory does.")
    p.add_argument("-i", "--inventory", required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--list", action="store_true")
    group.add_argument("--host")
    ns = p.parse_args(argv)
    from ..inventory import InventoryError, load_inventory

    try:
        inv = load_inventory(ns.inventory)
        if ns.list:
            data = inv.to_ansible_list()
        else:
            if ns.host not in inv.hosts:
                print(f"runproc inventory: no host {ns.host!r} in {ns.inventory}", file=sys.stderr)
                return EXIT_INVALID
            data = inv.host_vars_json(ns.host)
    except InventoryError as exc:
        print(f"runproc inventory: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(json.dumps(data, indent=4, sort_keys=True, default=str))
    return 0


# the commands of this module by name, for engine.cli's dispatcher
COMMANDS: dict[str, Callable[[list[str]], int]] = {"validate": _validate, "graph": _graph, "schema": _schema,
                                                   "list": _list, "inventory": _inventory}
