"""An Ansible playbook as a procedure: ``runproc import ansible PLAYBOOK.yml``.

Plays become one procedure, their tasks its steps in order (runproc's implicit ``needs``
is Ansible's top-to-bottom order). What maps, and how (docs/import.md has the table):
``hosts:`` is ``on:`` for the tasks Ansible runs on the hosts, play ``vars`` are params,
``register`` names the step (``r.stdout`` is ``steps.r.stdout``), ``when`` is ``when``,
``loop`` is ``foreach``, ``retries``/``until`` is ``retry``, ``ignore_errors`` is
``continue_on_error``, a block's ``rescue`` runs in ``on_failure`` and its ``always`` in
``finally``, each guarded to the block. A task that does not translate becomes a step that
fails with a ``# TODO(import)`` comment; the result is validated before it is returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import Problem, ProcedureError
from . import jinja, modules
from .common import Ids, Imported, finish, looks_secret, placeholder, slug
from .emit import TODO, Procedure, Step, dump
from .jinja import Registered, Scope, Untranslatable

# task keys that are not the module
_TASK_KEYWORDS = frozenset({
    "name", "when", "register", "loop", "loop_control", "become", "become_user", "become_method",
    "become_flags", "ignore_errors", "tags", "vars", "environment", "args", "retries", "delay", "until",
    "failed_when", "changed_when", "no_log", "delegate_to", "run_once", "notify", "timeout", "check_mode",
    "diff", "any_errors_fatal", "throttle", "connection", "listen", "debugger", "collections",
    "module_defaults", "ignore_unreachable", "delegate_facts", "block", "rescue", "always", "port",
    "remote_user", "become_exe", "local_action", "action"})
_DROPPED_KEYWORDS = {"tags": "runproc selects steps with --only", "changed_when": "runproc has no 'changed'",
                     "diff": "runproc shows the rendered action in a dry run",
                     "any_errors_fatal": "a failed step stops the run", "throttle": "steps run one host "
                     "batch at a time with serial:", "debugger": "no debugger", "collections": "not needed",
                     "module_defaults": "not carried over", "ignore_unreachable": "an unreachable host fails",
                     "check_mode": "runproc --dry-run plans the whole procedure", "connection": "the inventory "
                     "says how to reach a host", "port": "the inventory says how to reach a host",
                     "remote_user": "the inventory's ansible_user is used", "delegate_facts": "no facts"}
# modules Ansible runs once for the play (pause), or whose per-host run checks nothing host-side
_ONCE = frozenset({"pause", "assert", "fail"})
_LOCAL = ("localhost", "127.0.0.1", "::1", "local")
_PLAY_TASKS = ("pre_tasks", "tasks", "post_tasks")
_PLAY_KEYS = frozenset({"name", "hosts", "vars", "vars_prompt", "vars_files", "tasks", "pre_tasks", "post_tasks",
                        "handlers", "roles", "become", "become_user", "become_method", "gather_facts", "serial",
                        "max_fail_percentage", "any_errors_fatal", "connection", "environment", "tags",
                        "collections", "module_defaults", "strategy", "order", "remote_user", "force_handlers",
                        "ignore_errors", "no_log", "check_mode", "diff", "run_once", "throttle", "timeout",
                        "when", "port", "fact_path", "gather_subset", "gather_timeout", "ignore_unreachable",
                        "become_flags", "become_exe", "debugger", "import_playbook"})


@dataclass
class _Context:
    """What a task inherits from its play and enclosing blocks."""

    on: str | None = None  # the play's hosts as a runproc pattern; None: this machine
    serial: Any = None
    max_fail: Any = None
    become: bool = False
    become_user: str | None = None
    when: list[str] = field(default_factory=list)  # already translated
    environment: dict[str, Any] = field(default_factory=dict)  # already translated
    section: str = "steps"  # steps | finally | on_failure
    guard: str | None = None  # a rescue's or always's condition on its block


class _Importer:
    def __init__(self, text: str, file: str) -> None:
        from ..format.yamlsrc import parse_text

        self.file = file
        if not text.strip():
            raise ProcedureError(Problem(file, 1, 1, "the file is empty; a playbook is a list of plays"))
        self.source = parse_text(text, file, keep_going=True)
        self.lines = text.splitlines()
        self.proc = Procedure(name="imported")
        self.ids = Ids()
        self.scope = Scope(unknown=self._unknown)
        self.originals: dict[str, Any] = {}
        self.fields: dict[str, dict[str, str]] = {}
        self.unknowns: set[str] = set()  # names made params by _unknown: they stay optional-aware  # step id -> its registered fields' spelling
        self.notes: list[str] = []
        self._comment_lines = _comments(text)
        self._comments_used: set[int] = set()
        self._step_notes: list[str] = []
        self._step_reviews: list[str] = []  # where the step behaves otherwise: TODO(import) to review
        self.play_todos: list[str] = []  # what a play has that no step stands for (roles, handlers)
        self.carry: list[str] = []  # comments waiting for the next step (a dropped task's)
        self._conns: dict[str, str] = {}
        self.block_steps: list[list[str]] = []  # ids of the steps of the blocks being read

    # ------------------------------------------------------------ names

    def _unknown(self, name: str, optional: bool) -> str:
        """A variable the playbook uses and never defines: an extra var, an inventory var. It is a
        param (required unless every use allows it unset), or a secret when its name says so."""
        if looks_secret(name):
            self.scope.secrets.add(name)
            self.proc.secrets[name] = {"env": name.upper(), **({"optional": True} if optional else {})}
            return f"secrets.{name}"
        spec = self.proc.params.setdefault(name, {"type": "str", "help": "an Ansible variable the playbook "
                                                                        "does not define (-e, inventory)"})
        if not optional:
            spec["required"] = True
        self.unknowns.add(name)
        return f"params.{name}"

    def tpl(self, value: Any) -> Any:
        if isinstance(value, str):
            return jinja.template(value, self.scope)
        if isinstance(value, dict):
            return {k: self.tpl(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.tpl(v) for v in value]
        return value

    def expr(self, text: str) -> str:
        return jinja.expression(text, self.scope)

    def connection(self, kind: str, spec: dict[str, Any], hint: str) -> str:
        key = repr(sorted(spec.items(), key=str))
        if key not in self._conns:
            name = slug(hint, kind)
            n = 2
            while name in self.proc.connections:
                name, n = f"{slug(hint, kind)}_{n}", n + 1
            self.proc.connections[name] = spec
            self._conns[key] = name
        return self._conns[key]

    def note(self, text: str) -> None:
        self._step_notes.append(text)

    def drop(self, option: str, why: str) -> None:
        self._step_notes.append(f"{option}: not carried over ({why})")

    # ------------------------------------------------------------ reading

    def where(self, path: tuple[Any, ...]) -> int:
        return self.source.where(path)[0]

    def refuse(self, path: tuple[Any, ...], message: str, hint: str | None = None) -> ProcedureError:
        line, col = self.source.where(path)
        return ProcedureError(Problem(self.file, line, col, message, hint))

    def comments_before(self, line: int) -> list[str]:
        """The source's comment lines above ``line`` not given to an earlier step."""
        out = []
        for n in sorted(self._comment_lines):
            if n >= line:
                break
            if n not in self._comments_used:
                self._comments_used.add(n)
                out.append(self._comment_lines[n])
        return out

    def run(self) -> Imported:
        data = self.source.data
        if not isinstance(data, list) or not data or not all(isinstance(p, dict) for p in data):
            raise self.refuse((), "not an Ansible playbook: a playbook is a list of plays (mappings with hosts: "
                                  "and tasks:)")
        if not any("hosts" in p or "import_playbook" in p for p in data):
            hint = "this looks like a list of tasks (a role's tasks file): put them under a play's tasks:" \
                if any(set(p) - _PLAY_KEYS for p in data) else None
            raise self.refuse((), "not an Ansible playbook: no play has hosts:", hint)
        first = data[0]
        stem = Path(self.file).stem
        self.proc.name = slug(str(first.get("name") or stem), "imported").replace("_", "-").strip("-") or "imported"
        if not re.match(r"^[a-z0-9]", self.proc.name):
            self.proc.name = f"p{self.proc.name}"
        names = [str(p["name"]) for p in data if p.get("name")]
        if names:
            self.proc.description = "; ".join(names)
        self.proc.header = [f"Imported from {Path(self.file).name} by `runproc import ansible`.",
                            f"Review every {TODO} below, then: runproc validate FILE; runproc FILE --dry-run"]
        self.proc.header.extend(self.comments_before(self.where((0,))))
        for i, play in enumerate(data):
            self.play(play, (i,))
        self.proc.trailer.extend([*self.carry, *self.comments_before(len(self.lines) + 1)])
        result = finish(self.proc, self.file, self.originals, self.notes)
        result.todos.extend(self.play_todos)  # roles, handlers, vars_files: no step stands for them
        return result

    def play(self, play: dict[str, Any], path: tuple[Any, ...]) -> None:
        for key, kind in (("vars", dict), ("tasks", list), ("pre_tasks", list), ("post_tasks", list),
                          ("handlers", list), ("vars_prompt", list), ("roles", list)):
            if play.get(key) is not None and not isinstance(play[key], kind):
                raise self.refuse((*path, key), f"{key}: expected a {'mapping' if kind is dict else 'list'}, "
                                                f"got {type(play[key]).__name__}")
        if "import_playbook" in play:
            self.todo_comment(path, f"import_playbook {play['import_playbook']}: import that playbook too and "
                                    f"call it with a procedure: step")
            return
        ctx = _Context()
        hosts = play.get("hosts")
        if isinstance(hosts, list):
            hosts = ":".join(str(h) for h in hosts)
        if hosts is None or str(hosts) in _LOCAL or play.get("connection") == "local":
            ctx.on = None
        elif "{{" in str(hosts):
            self.notes.append(f"{self.file}:{self.where(path)}: hosts '{hosts}' is a template; its tasks run "
                              f"on this machine: give them on: PATTERN")
        else:
            ctx.on = str(hosts)
            if self.proc.header[-1:] and "-i INVENTORY" not in self.proc.header[-1]:
                self.proc.header.append("Steps with on: run on the hosts of an Ansible inventory: "
                                        "runproc FILE -i INVENTORY (or inventory: in this file)")
        if "serial" in play:
            ctx.serial = play["serial"]
        if "max_fail_percentage" in play:
            ctx.max_fail = f"{play['max_fail_percentage']}%"
        elif modules._bool(play.get("any_errors_fatal", False)):
            ctx.max_fail = 0
        ctx.become = modules._bool(play.get("become", False))
        ctx.become_user = play.get("become_user")
        self.play_vars(play, path)
        if "environment" in play and isinstance(play["environment"], dict):
            ctx.environment = self.tpl(play["environment"])
        if play.get("when") is not None:
            ctx.when = [self.when_of(play["when"])]
        if "vars_files" in play:
            self.todo_comment(path, f"vars_files {play['vars_files']}: their variables became required params")
        if play.get("roles"):
            self.todo_comment((*path, "roles"), "roles are not imported: import each role's tasks as a "
                                                "playbook and call it with a procedure: step")
        for section in _PLAY_TASKS:
            tasks = play.get(section) or []
            if isinstance(tasks, list):
                for j, task in enumerate(tasks):
                    self.task(task, (*path, section, j), ctx)
        if play.get("handlers"):
            names = ", ".join(str(h.get("name", "?")) for h in play["handlers"] if isinstance(h, dict))
            self.todo_comment((*path, "handlers"), f"handlers ({names}) are not imported: runproc has no "
                                                   f"notify; make each a step with a when: on the steps that "
                                                   f"notified it")

    def todo_comment(self, path: tuple[Any, ...], text: str) -> None:
        line = self.where(path)
        self.proc.trailer.append(f"{TODO}: {text} ({Path(self.file).name}:{line})")
        self.play_todos.append(f"{self.file}:{line}: {text}")

    def play_vars(self, play: dict[str, Any], path: tuple[Any, ...]) -> None:
        for name, value in (play.get("vars") or {}).items():
            name = str(name)
            if name in self.proc.params or name in self.proc.vars or name in self.proc.secrets:
                continue  # a later play's value for a name the first play set: the first stands
            if looks_secret(name) or value is None:
                self.scope.secrets.add(name)
                self.proc.secrets[name] = {"env": name.upper()}
                self.notes.append(f"{self.file}:{self.where((*path, 'vars', name))}: var '{name}' became the "
                                  f"secret {name.upper()} (from the environment)")
                continue
            if isinstance(value, bool | int | float | list) or isinstance(value, str) and "{{" not in value:
                if isinstance(value, list) and any(isinstance(v, str) and "{{" in v or isinstance(v, dict)
                                                   for v in value):
                    pass
                else:
                    typ = {bool: "bool", int: "int", float: "float", list: "list", str: "str"}[type(value)]
                    self.proc.params[name] = {"type": typ, "default": value}
                    self.scope.params.add(name)
                    continue
            # a template or a mapping: a var (params cannot hold either)
            self.proc.vars[name] = self.tpl(value)
            self.scope.vars.add(name)
        for prompt in play.get("vars_prompt") or []:
            if not isinstance(prompt, dict) or "name" not in prompt:
                continue
            name = str(prompt["name"])
            spec: dict[str, Any] = {"type": "str", "help": str(prompt.get("prompt", name))}
            if "default" in prompt:
                spec["default"] = str(prompt["default"])
            else:
                spec["required"] = True
            if modules._bool(prompt.get("private", True)):
                spec["secret"] = True
            self.proc.params[name] = spec
            self.scope.params.add(name)

    def when_of(self, value: Any) -> str:
        items = value if isinstance(value, list) else [value]
        parts = []
        for item in items:
            if isinstance(item, bool):
                parts.append("true" if item else "false")
            else:
                parts.append(self.expr(str(item)))
        return parts[0] if len(parts) == 1 else " and ".join(f"({p})" for p in parts)

    # ------------------------------------------------------------ tasks

    def task(self, task: Any, path: tuple[Any, ...], ctx: _Context) -> None:
        if not isinstance(task, dict):
            raise self.refuse(path, f"a task is a mapping, got {type(task).__name__}")
        if "block" in task:
            self.block(task, path, ctx)
            return
        line = self.where(path)
        comments = self.carry + self.comments_before(line)
        self.carry = []
        if (_module_key(task) or "").rsplit(".", 1)[-1] == "debug":
            # debug only shows a value: runproc shows each step's output, so it is dropped, visibly
            self.carry = [*comments, "dropped (debug shows a value; runproc shows each step's output):",
                          *(f"  {line}" for line in dump(task).splitlines())]
            self.notes.append(f"{self.file}:{line}: debug task dropped")
            return
        name = task.get("name")
        wanted = str(task.get("register") or name or (_module_key(task) or "task").rsplit(".", 1)[-1])
        sid = self.ids.new(wanted)
        step = Step(sid, {}, comments, origin=f"{self.file}:{line}")
        self.originals[sid] = task
        self._step_notes = []
        target = {"steps": self.proc.steps, "finally": self.proc.finally_, "on_failure": self.proc.on_failure}
        target[ctx.section].append(step)
        if self.block_steps:
            for ids in self.block_steps:
                ids.append(sid)
        try:
            self.translate(task, step, path, ctx)
        except Untranslatable as exc:
            module = _module_key(task) or "?"
            placeholder(step, f"{module}: {exc}", task)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            # a value of an unexpected shape ("{{ n }}" where a number is due, a list for a
            # mapping): this task is left to a person, the rest of the playbook still imports
            module = _module_key(task) or "?"
            placeholder(step, f"{module}: a value of an unexpected shape ({type(exc).__name__}: {exc})", task)
        if "register" in task:
            reg = str(task["register"])
            self.scope.registered[reg] = Registered(sid, self.fields.get(sid, {}), fanned="on" in step.body)
        # comments written inside the task (between its keys) stay with its step
        end = max((pos[0] for p, pos in self.source.values.items() if p[:len(path)] == path), default=line)
        step.comments.extend(self.comments_before(end + 1))
        step.comments.extend(self._step_notes)
        self._step_notes = []
        for text in self._step_reviews:
            step.review(text)
        self._step_reviews = []

    def translate(self, task: dict[str, Any], step: Step, path: tuple[Any, ...], ctx: _Context) -> None:
        module, args = _module_and_args(task)
        short = module
        for prefix in modules.PREFIXES:
            if short.startswith(prefix):
                short = short[len(prefix):]
        local = "local_action" in task or str(task.get("delegate_to", "")) in _LOCAL or \
            modules._bool(task.get("run_once", False))
        if "delegate_to" in task and str(task["delegate_to"]) not in _LOCAL:
            raise Untranslatable(f"delegate_to {task['delegate_to']}: give the step on: with that host")
        if task.get("vars"):
            raise Untranslatable("task vars are not translated: make them params or vars")
        body: dict[str, Any] = {}
        step.body = body  # filled in place: a TODO made half-way keeps the name and when
        when = list(ctx.when)
        if ctx.guard:
            when.insert(0, ctx.guard)
        # the loop first: the item is a name in when, the action and retries
        loop_key = next((k for k in ("loop", "with_items", "with_list") if k in task), None)
        other_loop = next((k for k in task if k.startswith("with_") and k not in ("with_items", "with_list")), None)
        if other_loop:
            raise Untranslatable(f"{other_loop} is not translated: write it as loop: with a list")
        saved_loop = self.scope.loop_var
        saved_hosts = self.scope.on_hosts
        translator = modules.TRANSLATORS.get(short)
        host_side = short in ("command", "shell", "raw", "script", "service", "systemd", "systemd_service",
                              "wait_for")
        on = ctx.on if (ctx.on and not local) else None
        try:
            if loop_key:
                control = task.get("loop_control") or {}
                var = str(control.get("loop_var", "item"))
                body["foreach"] = self.loop_items(task[loop_key])
                if var != "item":
                    body["as"] = var
                self.scope.loop_var = var
                if loop_key == "with_items":
                    self._step_notes.append("with_items flattened nested lists one level; foreach does not")
            self.scope.on_hosts = bool(on) and not loop_key
            if task.get("name") is not None:  # after the loop: a name may show the item
                body["name"] = self.tpl(str(task["name"]))
            if task.get("when") is not None:
                when.append(self.when_of(task["when"]))
            if when:
                body["when"] = when[0] if len(when) == 1 else " and ".join(f"({w})" for w in when)
            if translator is None:
                advice = modules.ADVICE.get(short)
                raise Untranslatable(f"the module {module} is not translated" + (f" ({advice})" if advice else ""))
            if short == "raw" and not isinstance(args.get("_raw_params"), str):
                raise Untranslatable("raw: no command given")
            translation = translator(args, self)
            self.fields[step.id] = translation.fields
            action = translation.body
            if on and short in _ONCE:
                on = None
            if on and not (host_side or self._reads_host(action)):
                self._step_notes.append(f"Ansible ran this on each host of '{ctx.on}'; it runs once here, on "
                                        f"the machine running runproc")
                on = None
            if "host." in body.get("when", "") and (not on or "shell" not in action):
                raise Untranslatable("a when that reads the host (or a result per host) decides per host; "
                                     "runproc decides a step's when once")
            if on and "host." in body.get("when", ""):
                # runproc decides `when` once per step; a per-host condition moves into the command
                cond = body.pop("when")
                shell = action["shell"]
                guard = "{% if not (" + cond + ") %}exit 0  # when: false on this host\n{% endif %}"
                if isinstance(shell, dict):
                    shell["cmd"] = guard + shell["cmd"]
                else:
                    action["shell"] = guard + shell
                self._step_notes.append("when: read per host, so it is the command's first line here")
            if on:
                if loop_key:
                    raise Untranslatable("a loop on every host of a play: runproc loops or fans out, not both")
                body["on"] = on
                if ctx.serial is not None:
                    body["serial"] = ctx.serial
                if ctx.max_fail is not None:
                    body["max_fail"] = ctx.max_fail
            self.become(task, ctx, action, on, short)
            body.update(action)
            self.task_keywords(task, body, step, ctx.environment)
        finally:
            self.scope.loop_var = saved_loop
            self.scope.on_hosts = saved_hosts
        for suffix, before in translation.before:
            pre = Step(self.ids.new(f"{step.id}_{suffix}"), {**({"when": body["when"]} if "when" in body else {}),
                                                              **before}, origin=step.origin)
            body["when"] = f"{body['when']} and " if "when" in body else ""
            body["when"] += f"steps.{pre.id}.scalar == 0"
            sect = {"steps": self.proc.steps, "finally": self.proc.finally_,
                    "on_failure": self.proc.on_failure}[ctx.section]
            sect.insert(sect.index(step), pre)
        first = [k for k in ("name", "when", "foreach", "as", "on", "serial", "max_fail") if k in body]
        step.body = {**{k: body[k] for k in first}, **{k: v for k, v in body.items() if k not in first}}

    def _reads_host(self, action: dict[str, Any]) -> bool:
        return "host." in repr(action)

    def loop_items(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.tpl(v) for v in value]
        if isinstance(value, str):
            text = value.strip()
            whole = re.fullmatch(r"\{\{(.*)\}\}", text, re.S)
            if whole and "{{" not in whole.group(1):
                return self.expr(whole.group(1))
            raise Untranslatable(f"loop {value!r}: a list or one {{{{ expression }}}} is translated")
        raise Untranslatable(f"loop of {type(value).__name__}")

    def become(self, task: dict[str, Any], ctx: _Context, action: dict[str, Any], on: str | None,
               short: str) -> None:
        become = modules._bool(task.get("become", ctx.become))
        user = task.get("become_user", ctx.become_user)
        if not become:
            return
        if "shell" not in action:
            if short.startswith("postgresql"):
                self._step_notes.append("become: the connection's user is the one connecting here")
            return
        if on:
            self._step_notes.append(f"become: give these hosts ansible_become: true"
                                    f"{f' and ansible_become_user: {user}' if user else ''} in the inventory; "
                                    f"runproc's SSH transport then runs the command through sudo (docs/fanout.md)")
            return
        shell = action["shell"]
        cmd = shell if isinstance(shell, str) else shell["cmd"]
        if "{{" in cmd or "{%" in cmd:
            raise Untranslatable("become on a command with templated values: sudo would read the values as "
                                 "code; run it with on: and ansible_become in the inventory")
        sudo = "sudo -n" + (f" -u {modules.shell_word(str(user))}" if user else "")
        interpreter = shell.get("shell", "/bin/sh") if isinstance(shell, dict) else "/bin/sh"
        wrapped = f"{sudo} {interpreter} -c {modules.shlex.quote(cmd)}"
        if isinstance(shell, dict):
            shell["cmd"] = wrapped
            shell.pop("shell", None)
        else:
            action["shell"] = wrapped

    def task_keywords(self, task: dict[str, Any], body: dict[str, Any], step: Step,
                      inherited_env: dict[str, Any]) -> None:
        reg = task.get("register")

        def as_result(text: str) -> str:
            # a condition on the task's own registered result reads `result` in runproc
            if reg is None:
                return text
            text = text.replace(f"steps.{step.id}.hosts[host.name]", "result")
            return re.sub(rf"\bsteps\.{re.escape(step.id)}\b", "result", text)

        if reg is not None:
            # the task's own result, for until/failed_when, under its step id
            self.scope.registered[str(reg)] = Registered(step.id, self.fields.get(step.id, {}),
                                                         fanned="on" in body)
        if "until" in task or "retries" in task:
            retries = int(task.get("retries", 3))
            retry: dict[str, Any] = {"attempts": retries + 1, "delay": f"{task.get('delay', 5)}s"}
            if "until" in task:
                retry["until"] = as_result(self.when_of(task["until"]))
            body["retry"] = retry
        if "failed_when" in task:
            fw = task["failed_when"]
            if fw is False or str(fw).strip().lower() in ("false", "no"):
                body["continue_on_error"] = True
            else:
                body["verify"] = [{"name": "failed_when", "expect": f"not ({as_result(self.when_of(fw))})"}]
                if "shell" in body:
                    self._step_reviews.append("failed_when: a non-zero exit still fails the step here; accept "
                                              "an exit code in the command itself (cmd || [ $? -eq 1 ])")
        if modules._bool(task.get("ignore_errors", False)):
            body["continue_on_error"] = True
        if "timeout" in task:
            body["timeout"] = f"{task['timeout']}s"
        # the play's and blocks' environment (translated already), then the task's own
        env = dict(inherited_env)
        if isinstance(task.get("environment"), dict):
            env.update({str(k): self.tpl(v) for k, v in task["environment"].items()})
        if env:
            if not any(k in body for k in ("shell", "kubectl")):
                self._step_notes.append("environment: only shell and kubectl steps take env")
            else:
                body["env"] = {str(k): (v if isinstance(v, int | float) and not isinstance(v, bool) else str(v))
                               for k, v in env.items()}
        if modules._bool(task.get("no_log", False)):
            self._step_notes.append("no_log: runproc shows output; declare the values it must hide as secrets")
        if task.get("notify"):
            self._step_notes.append(f"notify {task['notify']}: handlers are not imported")
        for key, why in _DROPPED_KEYWORDS.items():
            if key in task:
                self._step_notes.append(f"{key}: not carried over ({why})")

    # ------------------------------------------------------------ blocks

    def block(self, task: dict[str, Any], path: tuple[Any, ...], ctx: _Context) -> None:
        inner = replace(ctx, when=list(ctx.when), environment=dict(ctx.environment))
        if task.get("when") is not None:
            try:
                inner.when.append(self.when_of(task["when"]))
            except Untranslatable as exc:
                self.notes.append(f"{self.file}:{self.where(path)}: block when not translated: {exc}")
        if "become" in task:
            inner.become = modules._bool(task["become"])
        if "become_user" in task:
            inner.become_user = task["become_user"]
        if isinstance(task.get("environment"), dict):
            inner.environment.update(self.tpl(task["environment"]))
        for key in ("block", "rescue", "always"):
            if task.get(key) is not None and not isinstance(task[key], list):
                raise self.refuse((*path, key), f"{key}: expected a list of tasks, got {type(task[key]).__name__}")
        ids: list[str] = []
        self.block_steps.append(ids)
        if task.get("name"):  # the block's name heads its first step
            self.carry.append(f"block: {task['name']}")
        for j, sub in enumerate(task.get("block") or []):
            self.task(sub, (*path, "block", j), inner)
        self.block_steps.pop()
        for outer in self.block_steps:
            outer.extend(ids)
        if not ids:
            return
        failed = " or ".join(f"steps.{i}.status in ('failed', 'timed_out')" for i in ids)
        if task.get("rescue"):
            rescue = replace(inner, section="on_failure" if ctx.section == "steps" else ctx.section,
                             guard=failed if len(ids) < 8 else None, when=list(inner.when))
            first = len(self.proc.on_failure)
            for j, sub in enumerate(task["rescue"]):
                self.task(sub, (*path, "rescue", j), rescue)
            if len(self.proc.on_failure) > first:
                self.proc.on_failure[first].comments.insert(
                    0, "rescue: runs after the run failed in the block (Ansible would then go on; runproc "
                       "ends the run failed)")
        if task.get("always"):
            started = f"steps.{ids[0]}.status != 'pending'"
            always = replace(inner, section="finally" if ctx.section == "steps" else ctx.section, guard=started,
                             when=list(inner.when))
            first = len(self.proc.finally_)
            for j, sub in enumerate(task["always"]):
                self.task(sub, (*path, "always", j), always)
            if len(self.proc.finally_) > first:
                self.proc.finally_[first].comments.insert(0, "always: runs last, whether the run failed or not")


def _module_key(task: dict[str, Any]) -> str | None:
    if "action" in task or "local_action" in task:
        action = task.get("action", task.get("local_action"))
        if isinstance(action, str):
            return action.split(None, 1)[0] if action.strip() else None
        if isinstance(action, dict):
            return str(action.get("module")) if action.get("module") else None
    keys = [k for k in task if k not in _TASK_KEYWORDS and not str(k).startswith("with_")]
    return str(keys[0]) if len(keys) == 1 else None


def _module_and_args(task: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The module's name and its arguments as a mapping (free form parsed, ``args:`` merged)."""
    keys = [k for k in task if k not in _TASK_KEYWORDS and not str(k).startswith("with_")]
    if "action" in task or "local_action" in task:
        action = task.get("action", task.get("local_action"))
        if isinstance(action, str):
            parts = action.strip().split(None, 1)
            if not parts:
                raise Untranslatable("action: empty")
            module, raw = parts[0], (parts[1] if len(parts) > 1 else "")
        elif isinstance(action, dict) and action.get("module"):
            module, raw = str(action["module"]), {k: v for k, v in action.items() if k != "module"}
        else:
            raise Untranslatable("action: no module given")
    elif len(keys) != 1:
        raise Untranslatable(f"a task has one module; found {keys or 'none'}")
    else:
        module, raw = str(keys[0]), task[keys[0]]
    short = module
    for prefix in modules.PREFIXES:
        if short.startswith(prefix):
            short = short[len(prefix):]
    args: dict[str, Any]
    if isinstance(raw, list):
        raise Untranslatable(f"{module}: arguments given as a list")
    if isinstance(raw, dict):
        args = dict(raw)
    elif raw is None:
        args = {}
    elif short in modules.FREE_FORM or short in modules.ADVICE:
        # include_tasks: other.yml and the like are not translated: their TODO says what to do
        # instead, whatever the form of their argument
        args = {"_raw_params": str(raw)}
    else:
        args = _parse_kv(str(raw))
    if isinstance(task.get("args"), dict):
        args.update(task["args"])
    return module, args


def _parse_kv(text: str) -> dict[str, Any]:
    """``url=http://x method=POST``: Ansible's key=value free form."""
    out: dict[str, Any] = {}
    for word in modules.split_words(text):
        if "=" not in word:
            raise Untranslatable(f"free-form argument {word!r} is not key=value")
        key, value = word.split("=", 1)
        out[key] = value
    return out


def _comments(text: str) -> dict[int, str]:
    """Line number -> text of each comment line (``# ...`` on a line of its own) outside scalars."""
    import yaml

    covered: set[int] = set()
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, yaml.ScalarToken) and token.end_mark.line > token.start_mark.line:
                covered.update(range(token.start_mark.line + 1, token.end_mark.line + 2))
    except yaml.YAMLError:
        return {}
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#") and n not in covered and not stripped.startswith("#!"):
            out[n] = stripped[1:].strip() if not stripped.startswith("# ") else stripped[2:]
    return out


def import_playbook(text: str, file: str) -> Imported:
    """Translate a playbook's text; ``file`` names it in messages. Raises ProcedureError (located)
    for input that is not a playbook."""
    return _Importer(text, file).run()
