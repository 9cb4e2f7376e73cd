"""Starting out (docs/install.md): ``runproc init [NAME]`` writes an annotated starter procedure
and an inventory beside it; ``runproc schema --install vscode`` writes the JSON Schema into
``.vscode/`` and maps it to procedure files in ``.vscode/settings.json`` (merged, never
clobbered), so yaml-language-server validates and completes procedures while they are typed.

Neither ever overwrites a file that someone wrote: init refuses (exit 2) when the procedure
exists and keeps an existing inventory; the settings are merged key by key, and a settings file
with comments (VS Code allows them) is refused (exit 3) with the lines to add by hand, as
rewriting it would lose the comments. ``--dry-run`` says what would be written and writes nothing.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import EXIT_INVALID, Parser

EXIT_REFUSED = 3
NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
INVENTORY = "inventory.yml"
SCHEMA_FILE = ".vscode/runproc.schema.json"
SETTINGS_FILE = ".vscode/settings.json"
# where procedures usually live (runproc list looks in procedures/ too), and what init writes
DEFAULT_GLOBS = ("procedures/**/*.yml", "procedures/**/*.yaml", "*.procedure.yml", "procedure.yml")

STARTER = """\
# {file}: a starter procedure written by `runproc init` (edit it: it is yours).
#
#   runproc validate {file}                     # check it: file:line:col for each problem
#   runproc {file} --dry-run --offline          # the plan, connecting to nothing
#   runproc {file} --dry-run                    # the plan; readonly steps and checks run for real
#   runproc {file} -p version=1.2.0             # run it (the confirm step asks; --yes answers)
#   runproc graph {file}                        # its steps as a graph (Mermaid)
#
# The format: docs/format.md. Editors complete and check this file once the schema is
# installed: runproc schema --install vscode (docs/install.md for other editors).
procedure: {name}                # the name runs are recorded under: [a-z0-9][a-z0-9-]*
description: A release into a scratch folder, checked, confirmed and undone on failure
owner: your-team                 # shown by `runproc list`

params:                          # typed inputs: -p version=1.2.0, or --params-file FILE
  version: {{type: str, default: "1.0.0", pattern: '^\\d+\\.\\d+\\.\\d+$', help: the version to release}}
  fail: {{type: bool, default: false, help: "fail after the release, to watch it rolled back"}}

vars:                            # static values; templates may use params, env, run
  # one folder per run, under the system's temporary folder; removed in `finally`
  dir: "{{{{ env.TMPDIR | default('/tmp') }}}}/runproc-{name}-{{{{ run.id }}}}"

# hosts for steps with `on:` (an Ansible inventory, relative to this file; -i overrides it)
inventory: {inventory}

steps:                           # a DAG: each step waits for the one above it unless `needs` says
  - id: prepare
    name: create the release folder
    shell: mkdir -p {{{{ vars.dir }}}} && echo 0.9.0 > {{{{ vars.dir }}}}/current
    timeout: 30s

  - id: hosts_up
    name: every app host answers
    needs: []                    # no dependency: runs at the same time as `prepare`
    on: app                      # once per host of the inventory's group `app`
    readonly: true               # changes nothing, so a dry run runs it too
    shell: echo "{{{{ host.name }}}} is up"

  - id: release
    name: release {{{{ params.version }}}}
    needs: [prepare, hosts_up]
    shell: |
      cp {{{{ vars.dir }}}}/current {{{{ vars.dir }}}}/previous
      echo {{{{ params.version }}}} > {{{{ vars.dir }}}}/current
    verify:                      # checked right after; a failed check fails the step
      - name: the new version is current
        shell: cat {{{{ vars.dir }}}}/current
        expect: result.stdout.strip() == params.version
    rollback:                    # how to undo it, run if a later step fails
      shell: mv {{{{ vars.dir }}}}/previous {{{{ vars.dir }}}}/current

  - id: go_ahead
    name: ask before going on
    confirm: "Version {{{{ params.version }}}} is released. Go on?"

  - id: smoke_test
    name: the release is in place
    when: not params.fail        # a step whose `when` is false is skipped
    shell: test "$(cat {{{{ vars.dir }}}}/current)" = {{{{ params.version }}}}
    retry: {{attempts: 3, delay: 1s}}

  - id: injected_failure
    name: an injected failure (-p fail=true), to watch the rollback
    when: params.fail
    shell: echo "failing on purpose" >&2; exit 1

finally:                         # always runs last, success or failure
  - id: cleanup
    shell: rm -rf {{{{ vars.dir }}}}
"""

STARTER_INVENTORY = """\
# An Ansible inventory (YAML form) for {file}: the group `app` with two hosts, both this
# machine (ansible_connection: local), so the starter runs anywhere. For real hosts give
# ansible_host and ansible_user (runproc connects over SSH: docs/fanout.md), or keep this file
# for rehearsals and pass a production inventory with -i.
all:
  children:
    app:
      hosts:
        app-1:
        app-2:
      vars:
        ansible_connection: local
"""

PRE_COMMIT = """\
  - repo: local                  # or this project's repository, with its hook runproc-validate
    hooks:
      - id: runproc-validate
        name: runproc validate
        entry: runproc validate
        language: system
        files: '(^|/)(procedures/.*|([^/]*\\.)?procedure)\\.ya?ml$'"""


# ---------------------------------------------------------------- runproc init


def _init(argv: list[str]) -> int:
    p = Parser(prog="runproc init",
               description="Write an annotated starter procedure (NAME.yml) and, unless one exists, an inventory "
                           f"beside it ({INVENTORY}). An existing procedure file is never overwritten.",
               epilog="then: runproc validate NAME.yml; runproc NAME.yml --dry-run --offline (docs/install.md)")
    p.add_argument("name", nargs="?", default="procedure",
                   help="the procedure's name, or a path ending in .yml/.yaml (default: procedure, "
                        "written to procedure.yml)")
    p.add_argument("--dry-run", action="store_true", help="say what would be written; write nothing")
    ns = p.parse_args(argv)

    path, name = _target(ns.name)
    if name is None:
        print(f"runproc init: {ns.name!r}: a procedure name is lowercase letters, digits and dashes, starting "
              "with a letter or digit (e.g. deploy-api)", file=sys.stderr)
        return EXIT_INVALID
    if path.exists() or path.is_symlink():
        print(f"runproc init: {path} already exists; not overwritten (give another name: runproc init NAME)",
              file=sys.stderr)
        return EXIT_INVALID
    if not path.parent.is_dir():
        print(f"runproc init: {path.parent}: no such folder", file=sys.stderr)
        return EXIT_INVALID
    inventory = path.parent / INVENTORY
    writes = [(path, STARTER.format(file=path.name, name=name, inventory=INVENTORY))]
    keep = inventory.exists()
    if not keep:
        writes.append((inventory, STARTER_INVENTORY.format(file=path.name)))
    verb = "would write" if ns.dry_run else "wrote"
    for target, text in writes:
        if not ns.dry_run:
            _create(target, text)
        print(f"{verb} {target}")
    if keep:
        print(f"kept {inventory} (it exists): the starter's step hosts_up runs on its group 'app'", file=sys.stderr)
    shown = str(path)
    print(f"\nnext: runproc validate {shown} && runproc {shown} --dry-run --offline\n"
          f"editor: runproc schema --install vscode (docs/install.md)\n"
          f"pre-commit: add to .pre-commit-config.yaml under repos:\n{PRE_COMMIT}", file=sys.stderr)
    return 0


def _target(given: str) -> tuple[Path, str | None]:
    """The file to write and the procedure's name (None when the name is not one)."""
    path = Path(given)
    if path.suffix not in (".yml", ".yaml"):
        path = path.with_name(path.name + ".yml")
    stem = path.name.rsplit(".", 1)[0]
    stem = stem.removesuffix(".procedure")  # deploy.procedure.yml is the procedure deploy
    return path, stem if NAME.fullmatch(stem) else None


def _create(path: Path, text: str) -> None:
    """Write a new file; one that appeared meanwhile is not overwritten (exclusive create)."""
    with path.open("x", encoding="utf-8") as f:
        f.write(text)


# ---------------------------------------------------------------- runproc schema --install vscode


def install_vscode(workspace: Path, globs: list[str], schema: dict[str, Any], *, dry_run: bool) -> int:
    """Write the schema to .vscode/runproc.schema.json and map it to ``globs`` in
    .vscode/settings.json, keeping every other setting; 0, 2 (unreadable settings) or 3 (refused)."""
    settings_path = workspace / SETTINGS_FILE
    schema_key = "./" + SCHEMA_FILE  # yaml.schemas: a path relative to the workspace folder
    text = settings_path.read_text(encoding="utf-8") if settings_path.is_file() else ""
    settings, problem = _settings(text, settings_path)
    if settings is None:
        print(problem, file=sys.stderr)
        return EXIT_INVALID
    mapping = settings.get("yaml.schemas", {})
    if not isinstance(mapping, dict):
        print(f"runproc schema: {settings_path}: \"yaml.schemas\" is not an object; not changed", file=sys.stderr)
        return EXIT_INVALID
    had = mapping.get(schema_key, [])
    had = [had] if isinstance(had, str) else list(had) if isinstance(had, list) else []
    mapped = list(dict.fromkeys([*had, *globs]))
    if problem is not None:  # JSON with comments: refused, with what to add by hand
        snippet = json.dumps({"yaml.schemas": {schema_key: mapped}}, indent=2)
        print(f"runproc schema: {problem}; not changed (rewriting it would lose them). Add this to it, and "
              f"write the schema with: runproc schema > {SCHEMA_FILE}\n{snippet}", file=sys.stderr)
        return EXIT_REFUSED
    new_settings = {**settings, "yaml.schemas": {**mapping, schema_key: mapped}}
    out = json.dumps(new_settings, indent=_indent(text)) + "\n"
    schema_text = json.dumps(schema, indent=2) + "\n"
    verb = "would write" if dry_run else "wrote"
    if not dry_run:
        (workspace / ".vscode").mkdir(exist_ok=True)
        _replace(workspace / SCHEMA_FILE, schema_text)
        if out != text:
            _replace(settings_path, out)
    print(f"{verb} {workspace / SCHEMA_FILE}")
    print(f"{verb} {settings_path}: yaml.schemas maps {schema_key} to {', '.join(mapped)}"
          if out != text else f"{settings_path}: already maps {schema_key} to {', '.join(mapped)}")
    print("VS Code needs the YAML extension (redhat.vscode-yaml); other editors: docs/install.md", file=sys.stderr)
    return 0


def default_globs(workspace: Path) -> list[str]:
    """Where procedures usually are, and the procedure files at the workspace's top (a YAML file
    whose first key is ``procedure:``), so the file `runproc init` wrote is mapped too."""
    found = [p.name for p in sorted([*workspace.glob("*.yml"), *workspace.glob("*.yaml")])
             if p.is_file() and _is_procedure(p)]
    return list(dict.fromkeys([*DEFAULT_GLOBS, *found]))


def _is_procedure(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as f:
            head = f.read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    return re.search(r"^procedure:", head, re.MULTILINE) is not None


def _settings(text: str, path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(settings, None); (None, why) when it is no settings file; ({...}, why) when it is JSON
    with comments or trailing commas (VS Code's own dialect), which is refused."""
    if not text.strip():
        return {}, None
    try:
        data = json.loads(text)
        problem = None
    except json.JSONDecodeError as exc:
        try:
            data = json.loads(_strip_comments(text))
        except json.JSONDecodeError:
            return None, f"{path}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg}); not changed"
        problem = f"{path} has comments or trailing commas"
    if not isinstance(data, dict):
        return None, f"{path}:1:1: the settings are not a JSON object; not changed"
    return data, problem


def _strip_comments(text: str) -> str:
    """JSON with comments as VS Code writes it, without the comments and trailing commas
    (strings kept whole: a URL's // is not a comment)."""
    token = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/|,(?=\s*[}\]])', re.DOTALL)
    return token.sub(lambda m: m.group(0) if m.group(0).startswith('"') else "", text)


def _indent(text: str) -> int | str:
    """The settings file's own indentation (VS Code writes 4 spaces or a tab), kept."""
    m = re.search(r"^([ \t]+)\S", text, re.MULTILINE)
    if not m:
        return 4
    return "\t" if m.group(1).startswith("\t") else len(m.group(1))


def _replace(path: Path, text: str) -> None:
    """Write beside, then rename over: a crash never leaves half a settings file."""
    path = path.resolve()  # a settings file linked from a dotfiles folder stays a link
    tmp = path.with_name(f".{path.name}.runproc-tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# the commands of this module by name, for engine.cli's dispatcher
COMMANDS: dict[str, Callable[[list[str]], int]] = {"init": _init}
