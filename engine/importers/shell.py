"""A shell runbook as a procedure: ``runproc import shell SCRIPT.sh``.

The script is cut into command blocks at its comment headers (``# Step 1: Backup`` when it
numbers its steps, else each comment that opens a paragraph), one step each. Cutting needs
to know where a command ends, so a small lexer follows quotes, ``$( )``, here-documents,
line continuations and compound commands (``if``/``fi``, loops, ``case``, ``{ }``); a
block never ends inside one.

What changes, and why:

- **``set -e`` in every step**: a step fails at its first failing command, as the seed's
  scripts ask with ``set -e`` (said in the summary when the script did not).
- **Variables at the top are params** (``NAME=value``, ``NAME="$1"``,
  ``NAME=${NAME:-default}``, ``NAME="${2:-false}"``; a ``[ -z "$NAME" ]`` usage guard makes
  it required and is dropped). A step gets each param it reads through ``env:``, so the
  value reaches the script as an environment variable and never as script text.
- **Each step is its own shell**: a variable one step sets and a later one reads cannot
  cross; the later step gets a ``# TODO(import)`` and a ``${NAME:?...}`` guard that fails it
  with that message rather than running with an empty value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .common import Ids, Imported, finish, looks_secret, slug
from .emit import TODO, Procedure, Step

_OPEN = frozenset({"if", "case", "for", "while", "until", "select", "{"})
_CLOSE = frozenset({"fi", "esac", "done", "}"})
# what may stand before a word for it to be a command word (where keywords count)
_COMMAND_START = frozenset({";", "&&", "||", "|", "(", "then", "do", "else", "elif", "{", "&", "!", "", "in"})
_ASSIGN = re.compile(r"^(?:export\s+|readonly\s+|local\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_STEP_HEADER = re.compile(r"^#\s*step\s*\d+\b", re.I)
_GUARD = re.compile(r'^if\s+\[\s+-z\s+"?\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?"?\s+\]\s*;?\s*then\b', re.S)


@dataclass
class _Unit:
    kind: str  # blank | comment | command
    start: int  # 1-based line of its first line
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _units(lines: list[str], file: str, offset: int) -> list[_Unit]:
    """The script as blank lines, comment lines and complete (top-level) commands."""
    out: list[_Unit] = []
    current: _Unit | None = None
    depth = 0
    parens = 0
    quote: str | None = None
    heredocs: list[tuple[str, bool]] = []
    in_heredoc: tuple[str, bool] | None = None
    case_depth = 0
    for n, line in enumerate(lines, 1):
        if in_heredoc is not None:
            assert current is not None
            current.lines.append(line)
            delim, tabs = in_heredoc
            if (line.lstrip("\t") if tabs else line) == delim:
                in_heredoc = heredocs.pop(0) if heredocs else None
                if in_heredoc is None and depth == 0 and parens == 0 and quote is None:
                    out.append(current)
                    current = None
            continue
        if current is None:
            stripped = line.strip()
            if not stripped:
                out.append(_Unit("blank", n + offset, [line]))
                continue
            if stripped.startswith("#"):
                out.append(_Unit("comment", n + offset, [line]))
                continue
            current = _Unit("command", n + offset)
        current.lines.append(line)
        continued = False
        word = ""
        prev = ""
        i = 0

        def end_word() -> None:
            nonlocal word, prev, depth, case_depth
            if word:
                if prev in _COMMAND_START:  # only called outside quotes
                    if word in _OPEN:
                        depth += 1
                        if word == "case":
                            case_depth += 1
                    elif word in _CLOSE:
                        depth = max(0, depth - 1)
                        if word == "esac":
                            case_depth = max(0, case_depth - 1)
                prev = word
                word = ""

        while i < len(line):
            c = line[i]
            if quote == "'":
                if c == "'":
                    quote = None
                i += 1
                continue
            if c == "\\":
                if i == len(line) - 1:
                    continued = True
                word += line[i:i + 2]
                i += 2
                continue
            if quote == '"':
                if c == '"':
                    quote = None
                elif c == "$" and line[i + 1:i + 2] == "(":
                    parens += 1
                    i += 1
                elif c == ")" and parens:
                    parens -= 1
                i += 1
                continue
            if c in "'\"":
                quote = c
                word += "q"  # a quoted word is no keyword
                i += 1
                continue
            if c == "#" and not word:
                break  # a comment to the end of the line
            if c.isspace():
                end_word()
                i += 1
                continue
            if c == "<" and line[i:i + 2] == "<<" and line[i:i + 3] != "<<<":
                m = re.match(r"<<(-?)\s*(['\"]?)([A-Za-z0-9_.-]+)\2", line[i:])
                if m:
                    heredocs.append((m.group(3), bool(m.group(1))))
                    i += m.end()
                    continue
            if c in ";&|()":
                end_word()
                op = line[i:i + 2] if line[i:i + 2] in ("&&", "||", ";;") else c
                if c == "(":
                    parens += 1
                elif c == ")" and case_depth == 0 or c == ")" and parens:
                    parens = max(0, parens - 1)
                prev = op if op != ";;" else ";"
                i += len(op)
                continue
            word += c
            i += 1
        end_word()
        if heredocs:
            in_heredoc = heredocs.pop(0)
            continue
        if not continued and quote is None and depth == 0 and parens == 0:
            out.append(current)
            current = None
    if current is not None:
        if quote is not None or in_heredoc is not None:
            from ..errors import Problem, ProcedureError

            what = f"here-document (no line {in_heredoc[0]!r})" if in_heredoc else f"quote ({quote})"
            raise ProcedureError(Problem(file, current.start, 1, f"unterminated {what} in the command "
                                                                 f"starting here: the script cannot run"))
        out.append(current)
    return out


@dataclass
class _Block:
    title: str | None
    line: int
    comments: list[str] = field(default_factory=list)
    units: list[_Unit] = field(default_factory=list)

    @property
    def commands(self) -> list[_Unit]:
        return [u for u in self.units if u.kind == "command"]

    def body(self) -> str:
        lines: list[str] = []
        for u in self.units:
            lines.extend(u.lines)
        # a line of blanks only is written empty: the step's text stays a readable YAML block
        lines = [line if line.strip() else "" for line in lines]
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        return "\n".join(lines)


def _echo_only(block: _Block) -> bool:
    return all(re.match(r"^\s*(echo|printf)\b", u.text) and "$(" not in u.text for u in block.commands)


def _param_value(raw: str) -> tuple[str | None, int | None, bool] | None:
    """(default, positional argument, from the environment) of a top assignment, or None when
    the value is computed (a command substitution, arithmetic)."""
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        if value[0] == "'":
            return inner, None, False
        value = inner
    m = re.fullmatch(r"\$\{?(\d)\}?", value)
    if m:
        return None, int(m.group(1)), False
    m = re.fullmatch(r"\$\{(\d):?-([^}$`]*)\}", value)
    if m:
        return m.group(2), int(m.group(1)), False
    m = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?-([^}$`]*)\}", value)
    if m:
        return m.group(2), None, True
    if re.search(r"[$`]|\\", value):
        return None
    return value, None, False


class _ScriptImporter:
    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.lines = text.splitlines()
        self.proc = Procedure(name="imported")
        self.ids = Ids()
        self.notes: list[str] = []
        self.params: dict[str, str] = {}  # shell NAME -> param name
        self.interpreter = "/bin/sh"
        self.flags: set[str] = set()

    def run(self) -> Imported:
        from ..errors import Problem, ProcedureError

        if "\x00" in self.text:
            raise ProcedureError(Problem(self.file, 1, 1, "not a shell script: the file is binary"))
        first = self.lines[0] if self.lines else ""
        if first.startswith("#!"):
            if "bash" in first:
                self.interpreter = "/bin/bash"
            elif not re.search(r"\b(sh|dash|ksh|zsh|ash)\b", first):
                raise ProcedureError(Problem(self.file, 1, 1, f"not a shell script: its interpreter is "
                                                              f"{first[2:].strip()!r}"))
        offset = 1 if first.startswith("#!") else 0
        units = _units(self.lines[offset:], self.file, offset)
        if not any(u.kind == "command" for u in units):
            raise ProcedureError(Problem(self.file, 1, 1, "not a shell script: it has no command"))
        stem = Path(self.file).stem
        self.proc.name = slug(stem, "imported").replace("_", "-").strip("-") or "imported"
        if not re.match(r"^[a-z0-9]", self.proc.name):
            self.proc.name = f"p{self.proc.name}"
        rest = self.prologue(units)
        blocks = self.blocks(rest)
        self.steps(blocks)
        outside = self.environment_reads(blocks)
        if outside:
            self.proc.header.append(f"Read from the environment, as the script did: {', '.join(outside)}")
        if "e" not in self.flags:
            self.notes.append(f"{self.file}: the script does not `set -e`; each step now stops at its first "
                              f"failing command (append `|| true` where a failure was fine)")
        return finish(self.proc, self.file, {}, self.notes)

    # ------------------------------------------------------------ the top

    def prologue(self, units: list[_Unit]) -> list[_Unit]:
        """Read the description, set flags, variables and usage guards; return the rest."""
        description: list[str] = []
        required: set[str] = set()
        i = 0
        while i < len(units):
            u = units[i]
            text = u.text.strip()
            if u.kind == "blank":
                i += 1
                continue
            if u.kind == "comment":
                nxt = units[i + 1] if i + 1 < len(units) else None
                if nxt is not None and nxt.kind == "command" and self._top_kind(nxt) is None:
                    break  # a comment straight above a command heads the first block
                description.append(text.lstrip("#").strip())
                i += 1
                continue
            kind = self._top_kind(u)
            if kind is None:
                break
            if kind == "set":
                for flag in re.findall(r"(?<!\S)-([a-z]+)", text):
                    self.flags.update(flag)
                # the long names of -o: set -o errexit is set -e
                for name in re.findall(r"-[a-z]*o\s+(\w+)", text):
                    self.flags.update({"errexit": "e", "nounset": "u", "pipefail": ["pipefail"]}.get(name, ""))
            elif kind == "guard":
                m = _GUARD.match(text)
                assert m
                required.add(m.group(1))
            elif kind == "assign":
                m = _ASSIGN.match(text)
                assert m
                self.param(m.group(1), m.group(2), u)
            i += 1
        for name in required:
            if name in self.params:
                spec = self.proc.params[self.params[name]]
                spec.pop("default", None)
                spec["required"] = True
        if description:
            self.proc.description = description[0][:200]
            self.proc.header = [f"Imported from {Path(self.file).name} by `runproc import shell`.",
                                f"Review every {TODO} below, then: runproc validate FILE; runproc FILE --dry-run",
                                *description]
        else:
            self.proc.header = [f"Imported from {Path(self.file).name} by `runproc import shell`."]
        return units[i:]

    def _top_kind(self, u: _Unit) -> str | None:
        text = u.text.strip()
        # set -e, set -eu, set -euo pipefail, set -e -o pipefail, set -o errexit...
        if re.fullmatch(r"set(\s+[-+][a-z]*o\s+\w+|\s+[-+][a-z]+)+", text):
            return "set"
        if _GUARD.match(text) and text.endswith("fi") and re.search(r"\bexit\s+[1-9]", text):
            return "guard"
        m = _ASSIGN.match(text)
        if m and len(u.lines) == 1 and _param_value(m.group(2)) is not None:
            return "assign"
        return None

    def param(self, name: str, raw: str, u: _Unit) -> None:
        parsed = _param_value(raw)
        assert parsed is not None
        default, position, _ = parsed
        pname = slug(name, "value")
        spec: dict[str, object] = {"type": "str"}
        if default is not None:
            spec["default"] = default
        elif position is not None:
            spec["default"] = ""
        if position is not None:
            spec["help"] = f"the script's argument ${position}"
        if looks_secret(name):
            spec["secret"] = True
        self.proc.params[pname] = spec
        self.params[name] = pname

    # ------------------------------------------------------------ blocks

    def blocks(self, units: list[_Unit]) -> list[_Block]:
        numbered = any(u.kind == "comment" and _STEP_HEADER.match(u.text.strip()) for u in units)
        blocks: list[_Block] = [_Block(None, units[0].start if units else 1)]
        after_blank = True
        i = 0
        while i < len(units):
            u = units[i]
            if u.kind == "comment":
                text = u.text.strip()
                header = _STEP_HEADER.match(text) if numbered else after_blank
                if header:
                    title = re.sub(r"^#\s*", "", text)
                    title = re.sub(r"^step\s*\d+\s*[:.)-]?\s*", "", title, flags=re.I) or title
                    blocks.append(_Block(title, u.start))
                    # the header's own paragraph of comments stays with it
                    while i + 1 < len(units) and units[i + 1].kind == "comment":
                        i += 1
                        blocks[-1].comments.append(units[i].text.strip().lstrip("#").strip())
                    after_blank = False
                    i += 1
                    continue
            blocks[-1].units.append(u)
            after_blank = u.kind == "blank"
            i += 1
        blocks = [b for b in blocks if b.commands or b.title and b.units]
        # a block of echo lines only (a banner, a "done") joins its neighbour
        merged: list[_Block] = []
        pending: list[_Block] = []
        for b in blocks:
            if not b.commands:
                continue
            if _echo_only(b) and not b.title and len(blocks) > 1:
                pending.append(b)
                continue
            if pending:
                b.units = [u for p in pending for u in p.units] + b.units
                b.title = b.title or next((p.title for p in pending if p.title), None)
                b.line = pending[0].line
                pending = []
            merged.append(b)
        if pending:
            if merged:
                merged[-1].units.extend(u for p in pending for u in p.units)
            else:
                merged = pending
        return merged

    def environment_reads(self, blocks: list[_Block]) -> list[str]:
        """Variables the steps read and nothing sets: the script took them from its environment,
        and so do the steps (runproc's environment is theirs), e.g. DB_HOST."""
        text = "\n".join(b.body() for b in blocks)
        used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))
        set_here = set(re.findall(r"(?m)(?:^|[;&|]\s*|\b(?:export|local|readonly)\s+)([A-Za-z_][A-Za-z0-9_]*)=", text))
        set_here |= set(re.findall(r"\b(?:for|select)\s+([A-Za-z_][A-Za-z0-9_]*)\s+in\b", text))
        set_here |= {n for m in re.findall(r"\bread\s+(?:-\w+\s+)*([A-Za-z_ ][A-Za-z0-9_ ]*)", text)
                     for n in m.split()}
        return sorted(used - set_here - set(self.params) - _SHELL_NAMES)

    def steps(self, blocks: list[_Block]) -> None:
        assigned: dict[str, str] = {}  # a variable a step sets -> that step's id
        for n, block in enumerate(blocks):
            body = block.body()
            title = block.title or _title_of(block)
            sid = self.ids.new(title)
            step = Step(sid, {}, list(block.comments), origin=f"{self.file}:{block.line}")
            used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", body))
            # inside a function, $1 is the function's own argument: left alone there
            functions = re.search(r"(?m)^\s*(function\s+\w+|\w+\s*\(\s*\))", body)
            positional = [] if functions else sorted(set(re.findall(r"\$\{?([1-9])\b", body)))
            for pos in positional:
                name = f"ARG{pos}"
                if name not in self.params:
                    self.params[name] = f"arg{pos}"
                    self.proc.params[f"arg{pos}"] = {"type": "str", "default": "",
                                                     "help": f"the script's argument ${pos}"}
                body = re.sub(rf"\$\{{{pos}\}}|\${pos}\b", f"${{{name}}}", body)
                used.add(name)
            if re.search(r"\$[@*#]", body):
                step.comments.append(f"{TODO}: $@, $* and $# were the script's arguments; there are none here")
                step.todo = "$@/$*/$# have no value in a step"
            crossed = sorted(v for v in used if v in assigned and v not in self.params)
            guards = []
            for var in crossed:
                msg = f"{TODO}: {var} is set by step {assigned[var]}; each step is its own shell"
                step.comments.append(f"{TODO}: ${var} is set by step '{assigned[var]}', and each step runs in "
                                     f"its own shell: hand it over (steps.{assigned[var]}.stdout) through env:")
                guards.append(f': "${{{var}:?{msg}}}"')
                step.todo = f"uses ${var}, which step '{assigned[var]}' sets"
            for m in re.finditer(r"(?m)^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", body):
                assigned.setdefault(m.group(1), sid)
            if re.search(r"(?m)^cd\s", body) and n < len(blocks) - 1:
                step.review("cd: the next step starts in the procedure's folder again, not here")
            prefix = "set -e" + ("u" if "u" in self.flags else "")
            if "pipefail" in self.flags and self.interpreter == "/bin/bash":
                prefix += " -o pipefail"
            cmd = "\n".join([prefix, *guards, body])
            shell: object = {"cmd": cmd, "shell": self.interpreter} if self.interpreter != "/bin/sh" else cmd
            step.body = {"name": title, "shell": shell}
            env = {v: "{{ params." + self.params[v] + " }}" for v in sorted(used) if v in self.params}
            if env:
                step.body["env"] = env
            self.proc.steps.append(step)
            if step.todo:
                self.notes.append(f"{step.origin}: {TODO}: {step.todo}")


_SHELL_NAMES = frozenset({"HOME", "PATH", "PWD", "OLDPWD", "USER", "LOGNAME", "SHELL", "HOSTNAME", "RANDOM",
                          "LINENO", "SECONDS", "IFS", "UID", "EUID", "PPID", "BASH_SOURCE", "FUNCNAME", "REPLY",
                          "OPTARG", "OPTIND", "TMPDIR", "LANG", "TERM", "PIPESTATUS", "BASH_VERSION"})


def _title_of(block: _Block) -> str:
    first = block.commands[0].lines[0].strip() if block.commands else "step"
    return " ".join(first.split()[:4])


def import_script(text: str, file: str) -> Imported:
    """Translate a shell script's text; ``file`` names it in messages."""
    return _ScriptImporter(text, file).run()
