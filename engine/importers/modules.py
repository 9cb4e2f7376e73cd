"""Ansible modules as runproc step bodies: one function per module of the common subset.

Each translator gets the task's module arguments (a mapping; the free form already parsed)
and a ``Ctx`` for what crosses tasks (connections, params, rewriting of templates), and
returns a ``Translation``: the step body, and how the registered result's fields are named
in runproc. An option that would change what the task does and that has no counterpart
raises ``Untranslatable`` (the task becomes a TODO); an option that only tunes Ansible's
own behaviour (``return_content``, ``force``) is dropped with a note.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .jinja import Untranslatable

# command/shell results: Ansible's field names, runproc's spelling after steps.<id>
SHELL_FIELDS = {"stdout_lines": ".stdout.splitlines()", "stderr_lines": ".stderr.splitlines()",
                "stdout": ".stdout", "stderr": ".stderr", "rc": ".rc"}
HTTP_FIELDS = {"status": ".status_code", "json": ".json", "content": ".text", "elapsed": ".elapsed",
               "msg": ".error"}
SQL_FIELDS = {"query_result": ".rows", "rowcount": ".rowcount", "query_all_results": ".rows"}
KUBECTL_FIELDS = {"stdout": ".stdout", "result": ".json"}
S3_FIELDS = {"contents": ".text", "s3_keys": ".objects | map(attribute='key') | list"}


class Ctx(Protocol):
    """What a translator may ask of the importer."""

    def tpl(self, value: Any) -> Any: ...  # a value with its templates rewritten (recursively)
    def expr(self, text: str) -> str: ...  # an expression rewritten
    def connection(self, kind: str, spec: dict[str, Any], hint: str) -> str: ...  # a named connection
    def note(self, text: str) -> None: ...  # a comment above the step
    def drop(self, option: str, why: str) -> None: ...  # an option not carried over


@dataclass
class Translation:
    body: dict[str, Any]
    fields: dict[str, str] = field(default_factory=dict)
    host_side: bool = False  # Ansible runs it on the target host: a step with ``on:`` here
    # steps to run before this one (a check a state: present needs): (id suffix, body)
    before: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _bool(value: Any) -> bool:
    """Ansible's booleans (YAML 1.1 and its own strings)."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("yes", "true", "on", "1", "y")


def _only(args: dict[str, Any], module: str, known: set[str], ignored: dict[str, str], ctx: Ctx) -> None:
    for key in args:
        if key in known:
            continue
        if key in ignored:
            ctx.drop(key, ignored[key])
            continue
        raise Untranslatable(f"{module}: option '{key}' is not translated")


# ---------------------------------------------------------------- command, shell, script

_TEMPLATE = re.compile(r"(\{\{.*?\}\}|\{%.*?%\})", re.S)
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def split_words(text: str) -> list[str]:
    """Split a command line as Ansible's ``command`` does (shlex), keeping ``{{ }}`` whole."""
    holes: list[str] = []

    def hide(m: re.Match[str]) -> str:
        holes.append(m.group(0))
        return f"\x00{len(holes) - 1}\x00"

    try:
        words = shlex.split(_TEMPLATE.sub(hide, text))
    except ValueError as exc:
        raise Untranslatable(f"cannot split the command line: {exc}") from None
    return [re.sub(r"\x00(\d+)\x00", lambda m: holes[int(m.group(1))], w) for w in words]


def shell_word(word: str) -> str:
    """One argv word as shell text: literal parts quoted, ``{{ }}`` left for runproc to quote."""
    parts = _TEMPLATE.split(word)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(part)  # a template: the shell executor quotes its value
        elif part:
            out.append(part if _SAFE_WORD.match(part) else shlex.quote(part))
    return "".join(out) or "''"


def _guards(args: dict[str, Any], ctx: Ctx) -> str:
    """``creates``/``removes``: Ansible skips the command; here the command exits 0 first."""
    out = ""
    if "creates" in args:
        out += f"if [ -e {shell_word(ctx.tpl(str(args['creates'])))} ]; then exit 0; fi  # creates\n"
    if "removes" in args:
        out += f"if [ ! -e {shell_word(ctx.tpl(str(args['removes'])))} ]; then exit 0; fi  # removes\n"
    return out


def _shell_body(cmd: str, args: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if "chdir" in args:
        opts["cwd"] = ctx.tpl(str(args["chdir"]))
    if "stdin" in args:
        opts["stdin"] = ctx.tpl(str(args["stdin"]))
    if "executable" in args:
        opts["shell"] = str(args["executable"])
    cmd = _guards(args, ctx) + cmd
    if opts:
        return {"shell": {"cmd": cmd, **opts}}
    return {"shell": cmd}


_SHELL_IGNORED = {"warn": "Ansible's own warning switch", "strip_empty_ends": "runproc keeps output as is",
                  "stdin_add_newline": "the stdin text is given as written"}


def command(args: dict[str, Any], ctx: Ctx) -> Translation:
    _only(args, "command", {"cmd", "argv", "_raw_params", "chdir", "creates", "removes", "stdin"},
          {**_SHELL_IGNORED, "expand_argument_vars": "no shell expands anything here either"}, ctx)
    if "argv" in args:
        words = [str(w) for w in args["argv"]]
    else:
        text = args.get("cmd", args.get("_raw_params"))
        if not isinstance(text, str) or not text.strip():
            raise Untranslatable("command: no command given")
        words = split_words(text)
    # command runs no shell: each word is quoted so that `|`, `>` and `$` stay literal
    cmd = " ".join(shell_word(ctx.tpl(w)) for w in words)
    return Translation(_shell_body(cmd, args, ctx), SHELL_FIELDS, host_side=True)


def shell(args: dict[str, Any], ctx: Ctx) -> Translation:
    _only(args, "shell", {"cmd", "_raw_params", "chdir", "creates", "removes", "stdin", "executable"},
          _SHELL_IGNORED, ctx)
    text = args.get("cmd", args.get("_raw_params"))
    if not isinstance(text, str) or not text.strip():
        raise Untranslatable("shell: no command given")
    return Translation(_shell_body(ctx.tpl(text.rstrip("\n")), args, ctx), SHELL_FIELDS, host_side=True)


def script(args: dict[str, Any], ctx: Ctx) -> Translation:
    _only(args, "script", {"cmd", "_raw_params", "chdir", "creates", "removes", "executable"},
          {"decrypt": "vault-encrypted scripts are not decrypted"}, ctx)
    text = args.get("cmd", args.get("_raw_params"))
    if not isinstance(text, str) or not text.strip():
        raise Untranslatable("script: no script given")
    words = split_words(text)
    exe = args.get("executable")
    cmd = " ".join(shell_word(ctx.tpl(w)) for w in ([str(exe)] if exe else []) + words)
    ctx.note(f"script: {words[0]} is read from the folder runproc runs this procedure in (relative paths "
             f"are relative to the procedure file)")
    return Translation(_shell_body(cmd, {k: v for k, v in args.items() if k != "executable"}, ctx),
                       SHELL_FIELDS, host_side=True)


# ---------------------------------------------------------------- services

def service(args: dict[str, Any], ctx: Ctx) -> Translation:
    _only(args, "service", {"name", "state", "enabled", "daemon_reload", "daemon-reload"},
          {"scope": "the system manager is used", "no_block": "systemctl waits as usual"}, ctx)
    if "name" not in args:
        if _bool(args.get("daemon_reload", args.get("daemon-reload", False))):
            return Translation({"shell": "systemctl daemon-reload"}, SHELL_FIELDS, host_side=True)
        raise Untranslatable("service: no name given")
    name = shell_word(ctx.tpl(str(args["name"])))
    lines = []
    if _bool(args.get("daemon_reload", args.get("daemon-reload", False))):
        lines.append("systemctl daemon-reload")
    if "enabled" in args:
        lines.append(f"systemctl {'enable' if _bool(args['enabled']) else 'disable'} {name}")
    verbs = {"started": "start", "stopped": "stop", "restarted": "restart", "reloaded": "reload"}
    state = args.get("state")
    if state is not None:
        if state not in verbs:
            raise Untranslatable(f"service: state '{state}' is not translated")
        lines.append(f"systemctl {verbs[state]} {name}")
    if not lines:
        raise Untranslatable("service: neither state nor enabled given")
    return Translation({"shell": "\n".join(lines) if len(lines) == 1 else "set -e\n" + "\n".join(lines)},
                       SHELL_FIELDS, host_side=True)


# ---------------------------------------------------------------- uri

def uri(args: dict[str, Any], ctx: Ctx) -> Translation:
    _only(args, "uri", {"url", "method", "body", "body_format", "headers", "status_code", "timeout",
                        "validate_certs", "follow_redirects"},
          {"return_content": "the body is always in the result (text, json)",
           "use_proxy": "proxies come from the environment (HTTPS_PROXY, NO_PROXY)",
           "force": "there is no cache to bypass", "http_agent": "httpx's User-Agent is sent",
           "use_netrc": "no netrc is read"}, ctx)
    if "url" not in args:
        raise Untranslatable("uri: no url given")
    http: dict[str, Any] = {"url": ctx.tpl(str(args["url"]))}
    method = str(args.get("method", "GET")).upper()
    if method != "GET":
        http["method"] = method
    if "headers" in args:
        http["headers"] = ctx.tpl(args["headers"])
    if "body" in args:
        fmt = str(args.get("body_format", "raw"))
        if fmt == "json":
            body = args["body"]
            http["json"] = ctx.tpl(body)
        elif fmt == "raw":
            http["body"] = ctx.tpl(args["body"] if isinstance(args["body"], str) else str(args["body"]))
        else:
            raise Untranslatable(f"uri: body_format '{fmt}' is not translated")
    if "status_code" in args:
        codes = args["status_code"]
        codes = [int(c) for c in codes] if isinstance(codes, list) else int(codes)
        http["expect_status"] = codes
    if "timeout" in args:
        http["timeout"] = f"{args['timeout']}s"
    if "validate_certs" in args:
        http["verify"] = _bool(args["validate_certs"])
    if "follow_redirects" in args:
        http["follow_redirects"] = str(args["follow_redirects"]).lower() in ("all", "safe", "yes", "true",
                                                                              "urllib2")
    return Translation({"http": http}, HTTP_FIELDS)


# ---------------------------------------------------------------- postgresql

_PG_LOGIN = ("db", "login_db", "login_host", "login_user", "login_password", "port", "login_port",
             "login_unix_socket", "ssl_mode", "ca_cert", "connect_params")
_READONLY_SQL = re.compile(r"^\s*(select|show|explain|with\s.*\bselect\b|values|table)\b", re.I | re.S)
_WRITE_SQL = re.compile(r"\b(insert|update|delete|merge|create|drop|alter|truncate|grant|revoke|copy|"
                        r"vacuum|reindex|cluster|lock|call|do|refresh|nextval|setval|pg_terminate_backend|"
                        r"pg_cancel_backend|set_config)\b", re.I)


def _pg_connection(args: dict[str, Any], ctx: Ctx) -> str:
    spec: dict[str, Any] = {}
    parts = []
    db = args.get("login_db", args.get("db"))
    for key, value in (("host", args.get("login_host", args.get("login_unix_socket"))),
                       ("port", args.get("login_port", args.get("port"))),
                       ("dbname", db), ("user", args.get("login_user", "postgres")),
                       ("sslmode", args.get("ssl_mode"))):
        if value is not None:
            parts.append(f"{key}={ctx.tpl(str(value))}")
    spec["postgres"] = " ".join(parts) if parts else "dbname=postgres"
    if "login_password" in args:
        spec["password"] = ctx.tpl(str(args["login_password"]))
    if "ca_cert" in args or "connect_params" in args:
        raise Untranslatable("postgresql: ca_cert and connect_params are not translated")
    return ctx.connection("postgres", spec, str(db or "postgres"))


def _bind(query: str, args: dict[str, Any], ctx: Ctx) -> str:
    """psycopg2's ``%s`` and ``%(name)s`` placeholders as ``{{ }}``: runproc binds each value."""
    positional = args.get("positional_args")
    named = args.get("named_args")
    if positional is None and named is None:
        return query

    def value(v: Any) -> str:
        if isinstance(v, str):
            whole = re.fullmatch(r"\s*\{\{(.*)\}\}\s*", v, re.S)
            if whole and "{{" not in whole.group(1):
                return "{{ " + ctx.expr(whole.group(1)) + " }}"
            if "{{" in v or "{%" in v:
                raise Untranslatable("postgresql_query: an argument mixing text and templates")
        return "{{ " + repr(v) + " }}" if not isinstance(v, bool) else "{{ " + str(v).lower() + " }}"

    values = iter(positional or [])
    out: list[str] = []
    pos = 0
    for m in re.finditer(r"%%|%s|%\((\w+)\)s", query):
        out.append(query[pos:m.start()])
        pos = m.end()
        if m.group(0) == "%%":
            out.append("%")
        elif m.group(0) == "%s":
            try:
                out.append(value(next(values)))
            except StopIteration:
                raise Untranslatable("postgresql_query: more %s than positional_args") from None
        else:
            if not named or m.group(1) not in named:
                raise Untranslatable(f"postgresql_query: named_args has no '{m.group(1)}'")
            out.append(value(named[m.group(1)]))
    out.append(query[pos:])
    return "".join(out)


def postgresql_query(args: dict[str, Any], ctx: Ctx) -> Translation:
    _only(args, "postgresql_query", {*_PG_LOGIN, "query", "positional_args", "named_args", "autocommit"},
          {"encoding": "the server's client encoding is used", "as_single_query": "the statements run in "
           "one transaction either way", "search_path": "set it in the query", "trust_input": "values are "
           "bind parameters here"}, ctx)
    if "query" not in args:
        raise Untranslatable("postgresql_query: no query given (path_to_script is not translated)")
    if "{{" in str(args["query"]):
        ctx.note("each {{ }} in the query is sent as a bind parameter (Ansible pasted it as text): a table or "
                 "column name there needs | ident")
    query = _bind(ctx.tpl(str(args["query"])), args, ctx)
    sql: dict[str, Any] = {"query": query, "connection": _pg_connection(args, ctx)}
    if _bool(args.get("autocommit", False)):
        sql["autocommit"] = True
    body: dict[str, Any] = {"sql": sql}
    if _READONLY_SQL.match(query) and not _WRITE_SQL.search(query):
        body["readonly"] = True  # a dry run may run it: it only reads
    return Translation(body, SQL_FIELDS)


def postgresql_ping(args: dict[str, Any], ctx: Ctx) -> Translation:
    _only(args, "postgresql_ping", set(_PG_LOGIN), {}, ctx)
    return Translation({"sql": {"query": "SELECT 1", "connection": _pg_connection(args, ctx)}, "readonly": True},
                       {"is_available": ".ok"})


def postgresql_db(args: dict[str, Any], ctx: Ctx) -> Translation:
    _only(args, "postgresql_db", {*_PG_LOGIN, "name", "state", "maintenance_db"},
          {"encoding": "CREATE DATABASE uses the template's encoding", "lc_collate": "not carried over",
           "lc_ctype": "not carried over", "template": "not carried over", "owner": "not carried over"}, ctx)
    if "name" not in args:
        raise Untranslatable("postgresql_db: no name given")
    login = {k: v for k, v in args.items() if k in _PG_LOGIN and k not in ("db", "login_db")}
    login["login_db"] = args.get("maintenance_db", "postgres")
    conn = _pg_connection(login, ctx)
    name = ctx.tpl(str(args["name"]))
    literal = "{{ " + repr(name) + " }}" if "{{" not in name else name
    ident = "{{ " + repr(name) + " | ident }}" if "{{" not in name else name.replace("}}", "| ident }}")
    state = args.get("state", "present")
    if state == "absent":
        return Translation({"sql": {"query": f"DROP DATABASE IF EXISTS {ident}", "connection": conn,
                                    "autocommit": True}})
    if state != "present":
        raise Untranslatable(f"postgresql_db: state '{state}' is not translated")
    # CREATE DATABASE has no IF NOT EXISTS: a read decides, as the module does
    check = {"sql": {"query": f"SELECT count(*) FROM pg_database WHERE datname = {literal}", "connection": conn},
             "readonly": True}
    return Translation({"sql": {"query": f"CREATE DATABASE {ident}", "connection": conn, "autocommit": True}},
                       before=[("exists", check)])


# ---------------------------------------------------------------- kubernetes

def _kube_flags(args: dict[str, Any], ctx: Ctx) -> list[str]:
    flags = []
    if "kubeconfig" in args:
        flags += ["--kubeconfig", ctx.tpl(str(args["kubeconfig"]))]
    if "context" in args:
        flags += ["--context", ctx.tpl(str(args["context"]))]
    if "namespace" in args:
        flags += ["--namespace", ctx.tpl(str(args["namespace"]))]
    return flags


def _resource(args: dict[str, Any], ctx: Ctx) -> str:
    kind = str(args.get("kind", ""))
    if not kind:
        raise Untranslatable("k8s: no kind given")
    api = str(args.get("api_version", "v1"))
    if "/" in api:  # apps/v1 Deployment: deployment.v1.apps, unambiguous for kubectl
        group, version = api.split("/", 1)
        return f"{kind.lower()}.{version}.{group}"
    return kind.lower()


def _json_values(value: Any, ctx: Ctx) -> Any:
    """A manifest whose strings hold templates: each such string becomes ``{{ (...) | to_json }}``,
    so a value is always one JSON (and so YAML) scalar and never manifest structure."""
    if isinstance(value, dict):
        return {k: _json_values(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_values(v, ctx) for v in value]
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        if "{%" in value:
            raise Untranslatable("k8s: a manifest with {% %} blocks is not translated")
        whole = re.fullmatch(r"\{\{(.*)\}\}", value.strip(), re.S)
        if whole and "{{" not in whole.group(1):  # one value: its type kept (replicas: 3, not "3")
            return _Raw("{{ (" + ctx.expr(whole.group(1)) + ") | to_json }}")
        parts = _TEMPLATE.split(value)
        pieces = []
        for i, part in enumerate(parts):
            if i % 2:
                pieces.append("(" + ctx.expr(part[2:-2]) + ")|string")
            elif part:
                pieces.append(repr(part))
        return _Raw("{{ (" + " ~ ".join(pieces) + ") | to_json }}")
    return value


class _Raw(str):
    """Text to be written into a manifest as is (a template that renders to a JSON scalar)."""


def _manifest(definition: Any, ctx: Ctx) -> str:
    docs = definition if isinstance(definition, list) else [definition]
    if not all(isinstance(doc, dict) for doc in docs):
        raise Untranslatable("k8s: a definition is a mapping (a manifest) or a list of them")
    return "---\n".join(_yaml_with_raw(_json_values(doc, ctx)) for doc in docs)


def _yaml_with_raw(value: Any) -> str:
    """YAML text of a manifest in which ``_Raw`` strings are written unquoted."""
    from .emit import dump

    raws: list[str] = []

    def hide(v: Any) -> Any:
        if isinstance(v, _Raw):
            raws.append(str(v))
            return f"__RUNPROC_RAW_{len(raws) - 1}__"
        if isinstance(v, dict):
            return {k: hide(x) for k, x in v.items()}
        if isinstance(v, list):
            return [hide(x) for x in v]
        return v

    text = dump(hide(value), flow_from=99)
    return re.sub(r"__RUNPROC_RAW_(\d+)__", lambda m: raws[int(m.group(1))], text)


def k8s(args: dict[str, Any], ctx: Ctx) -> Translation:
    _only(args, "k8s", {"state", "definition", "src", "kind", "name", "namespace", "api_version", "context",
                        "kubeconfig", "apply", "force", "wait", "wait_timeout"},
          {"validate_certs": "kubectl's configuration decides", "wait_sleep": "kubectl wait polls itself",
           "server_side_apply": "a client-side apply is made"}, ctx)
    flags = _kube_flags(args, ctx)
    state = args.get("state", "present")
    body: dict[str, Any]
    if "src" in args:
        verb = {"present": "apply", "absent": "delete"}.get(state)
        if verb is None:
            raise Untranslatable(f"k8s: state '{state}' with src is not translated")
        body = {"kubectl": [*flags, verb, "-f", ctx.tpl(str(args["src"]))]}
    elif "definition" in args:
        definition = args["definition"]
        if isinstance(definition, str):
            raise Untranslatable("k8s: a definition given as a string (a lookup, a template) is not translated")
        if state == "present":
            verb = ["replace", "--force"] if _bool(args.get("force", False)) else ["apply"]
            body = {"kubectl": {"args": [*flags, *verb, "-f", "-"], "stdin": _manifest(definition, ctx)}}
        elif state == "absent":
            body = {"kubectl": {"args": [*flags, "delete", "--ignore-not-found", "-f", "-"],
                                "stdin": _manifest(definition, ctx)}}
        else:
            raise Untranslatable(f"k8s: state '{state}' is not translated")
    else:
        if state != "absent" or "name" not in args:
            raise Untranslatable("k8s: neither definition nor src given")
        body = {"kubectl": [*flags, "delete", "--ignore-not-found", _resource(args, ctx),
                            ctx.tpl(str(args["name"]))]}
    if _bool(args.get("wait", False)) and state == "present":
        timeout = args.get("wait_timeout", 120)
        ctx.note(f"wait: true became a rollout check of up to {timeout}s: adjust the resource it watches")
        if "definition" in args and isinstance(args["definition"], dict):
            d = args["definition"]
            kind = str(d.get("kind", "")).lower()
            name = d.get("metadata", {}).get("name")
            if kind in ("deployment", "statefulset", "daemonset") and isinstance(name, str):
                body["verify"] = [{"kubectl": [*flags, "rollout", "status", f"{kind}/{ctx.tpl(name)}",
                                               f"--timeout={timeout}s"]}]
    return Translation(body, KUBECTL_FIELDS)


def k8s_info(args: dict[str, Any], ctx: Ctx) -> Translation:
    _only(args, "k8s_info", {"kind", "name", "namespace", "api_version", "label_selectors", "field_selectors",
                             "context", "kubeconfig"},
          {"validate_certs": "kubectl's configuration decides", "wait": "the listing is taken at once"}, ctx)
    argv = [*_kube_flags(args, ctx), "get", _resource(args, ctx)]
    if "name" in args:
        argv.append(ctx.tpl(str(args["name"])))
    for key, flag in (("label_selectors", "-l"), ("field_selectors", "--field-selector")):
        if key in args:
            sel = args[key]
            argv += [flag, ",".join(ctx.tpl(str(s)) for s in (sel if isinstance(sel, list) else [sel]))]
    argv += ["-o", "json"]
    # Ansible's `resources` is always a list; kubectl gives one object for a name, a List otherwise
    fields = {"stdout": ".stdout", "resources": ".json['items']"}
    if "name" in args:
        fields["resources"] = "__LIST__.json"  # [steps.x.json]: see jinja._registered
    return Translation({"kubectl": argv}, fields)


# ---------------------------------------------------------------- s3

def s3_object(args: dict[str, Any], ctx: Ctx) -> Translation:
    _only(args, "s3_object", {"bucket", "object", "mode", "src", "dest", "prefix", "max_keys", "region",
                              "endpoint_url", "s3_url", "profile", "aws_profile", "copy_src", "content_type"},
          {"overwrite": "put replaces, get overwrites", "encrypt": "the bucket's default encryption applies",
           "retries": "botocore retries (standard mode)", "validate_certs": "botocore's defaults apply",
           "permission": "the bucket's ACL defaults apply", "ignore_nonexistent_bucket": "not needed"}, ctx)
    mode = str(args.get("mode", ""))
    if "bucket" not in args:
        raise Untranslatable("s3_object: no bucket given")
    bucket = ctx.tpl(str(args["bucket"]))
    spec: dict[str, Any] = {"bucket": bucket}
    for key, src in (("region", "region"), ("endpoint_url", "endpoint_url"), ("endpoint_url", "s3_url"),
                     ("profile", "profile"), ("profile", "aws_profile")):
        if src in args:
            spec[key] = ctx.tpl(str(args[src]))
    s3: dict[str, Any] = {"connection": ctx.connection("s3", {"s3": spec}, str(args["bucket"]))}
    key = ctx.tpl(str(args["object"])) if "object" in args else None
    if mode in ("get", "getstr", "put", "delobj", "copy") and key is None:
        raise Untranslatable(f"s3_object: mode {mode} needs object")
    readonly = False
    if mode == "get":
        s3.update(op="get", key=key, file=ctx.tpl(str(args.get("dest", ""))) or None)
        if s3["file"] is None:
            raise Untranslatable("s3_object: mode get needs dest")
    elif mode == "getstr":
        s3.update(op="get", key=key)
        readonly = True
    elif mode == "put":
        if "src" not in args:
            raise Untranslatable("s3_object: mode put needs src (content is not translated)")
        s3.update(op="put", key=key, file=ctx.tpl(str(args["src"])))
    elif mode == "delobj":
        s3.update(op="delete", key=key)
    elif mode == "list":
        s3["op"] = "list"
        if "prefix" in args:
            s3["prefix"] = ctx.tpl(str(args["prefix"]))
        if "max_keys" in args:
            s3["max_keys"] = int(args["max_keys"])
        readonly = True
    elif mode == "copy":
        src = args.get("copy_src") or {}
        if not isinstance(src, dict) or "object" not in src:
            raise Untranslatable("s3_object: copy needs copy_src with object")
        s3.update(op="copy", key=key, source_key=ctx.tpl(str(src["object"])))
        if "bucket" in src:
            s3["source_bucket"] = ctx.tpl(str(src["bucket"]))
    else:
        raise Untranslatable(f"s3_object: mode '{mode}' is not translated")
    if "content_type" in args and s3["op"] in ("put", "copy"):
        s3["content_type"] = ctx.tpl(str(args["content_type"]))
    s3 = {k: v for k, v in s3.items() if v is not None}
    body: dict[str, Any] = {"s3": s3}
    if readonly:
        body["readonly"] = True
    return Translation(body, S3_FIELDS)


# ---------------------------------------------------------------- waiting, asking, asserting

def _seconds(value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise Untranslatable(f"{what}: '{value}' is not a number of seconds") from None


def wait_for(args: dict[str, Any], ctx: Ctx) -> Translation:
    _only(args, "wait_for", {"host", "port", "path", "state", "timeout", "delay", "search_regex", "sleep",
                             "connect_timeout"},
          {"msg": "the step's own error says what timed out", "active_connection_states": "not checked",
           "exclude_hosts": "not checked"}, ctx)
    timeout = _seconds(args.get("timeout", 300), "wait_for timeout")
    sleep = _seconds(args.get("sleep", 1), "wait_for sleep")
    state = str(args.get("state", "started"))
    delay = _seconds(args.get("delay", 0), "wait_for delay")
    if "port" in args:
        host = shell_word(ctx.tpl(str(args.get("host", "127.0.0.1"))))
        port = shell_word(ctx.tpl(str(args["port"])))
        probe = f"(: < /dev/tcp/{host}/{port}) 2>/dev/null"
        if state in ("started", "present"):
            test = probe
        elif state in ("stopped", "absent", "drained"):
            test = f"! {probe}"
        else:
            raise Untranslatable(f"wait_for: state '{state}' is not translated")
        body = {"cmd": test, "shell": "/bin/bash"}  # /dev/tcp is bash's
    elif "path" in args:
        path = shell_word(ctx.tpl(str(args["path"])))
        if "search_regex" in args:
            test = f"grep -Eq {shell_word(ctx.tpl(str(args['search_regex'])))} {path}"
        else:
            test = f"[ -e {path} ]"
        if state in ("absent",):
            test = f"! {test}" if "search_regex" not in args else f"! {test}"
        elif state not in ("started", "present"):
            raise Untranslatable(f"wait_for: state '{state}' with path is not translated")
        body = {"cmd": test}
    else:
        # no host, port or path: a pause of `timeout` seconds
        return Translation({"wait": f"{timeout + delay:g}s"})
    if delay:
        ctx.note(f"delay: {delay:g}s before the first check was not carried over")
    attempts = max(1, int(timeout // max(sleep, 0.001)))
    return Translation({"shell": body, "retry": {"attempts": attempts, "delay": f"{sleep:g}s"},
                        "timeout": f"{timeout + 5:g}s", "readonly": True}, SHELL_FIELDS, host_side=True)


def pause(args: dict[str, Any], ctx: Ctx) -> Translation:
    _only(args, "pause", {"prompt", "seconds", "minutes"}, {"echo": "the answer is yes or no"}, ctx)
    if "seconds" in args or "minutes" in args:
        secs = _seconds(args.get("seconds", 0), "pause seconds") + 60 * _seconds(args.get("minutes", 0),
                                                                                 "pause minutes")
        return Translation({"wait": f"{secs:g}s"})
    message = ctx.tpl(str(args.get("prompt", "Continue?")))
    return Translation({"confirm": message}, {"user_input": ".approved"})


def assert_(args: dict[str, Any], ctx: Ctx) -> Translation:
    _only(args, "assert", {"that", "fail_msg", "msg"}, {"success_msg": "success is the step's status",
                                                        "quiet": "nothing extra is printed"}, ctx)
    that = args.get("that")
    if that is None:
        raise Untranslatable("assert: no 'that' given")
    exprs = [ctx.expr(str(t)) for t in (that if isinstance(that, list) else [that])]
    body: dict[str, Any] = {"assert": {"that": exprs[0] if len(exprs) == 1 else exprs}}
    message = args.get("fail_msg", args.get("msg"))
    if message is not None:
        body["assert"]["message"] = ctx.tpl(str(message))
    return Translation(body)


def fail(args: dict[str, Any], ctx: Ctx) -> Translation:
    _only(args, "fail", {"msg"}, {}, ctx)
    message = ctx.tpl(str(args.get("msg", "Failed as requested from task")))
    return Translation({"assert": {"that": "false", "message": message}})


TRANSLATORS: dict[str, Callable[[dict[str, Any], Ctx], Translation]] = {
    "command": command, "shell": shell, "raw": shell, "script": script,
    "service": service, "systemd": service, "systemd_service": service,
    "uri": uri,
    "postgresql_query": postgresql_query, "postgresql_ping": postgresql_ping, "postgresql_db": postgresql_db,
    "k8s": k8s, "k8s_info": k8s_info,
    "s3_object": s3_object, "aws_s3": s3_object, "s3": s3_object,
    "wait_for": wait_for, "pause": pause, "assert": assert_, "fail": fail,
}
# modules whose free form (``command: ls -l``) is the command itself, not key=value pairs
FREE_FORM = frozenset({"command", "shell", "raw", "script"})
# the collections their long names come from
PREFIXES = ("ansible.builtin.", "ansible.legacy.", "ansible.posix.", "community.postgresql.",
            "community.general.", "kubernetes.core.", "amazon.aws.", "community.aws.")
# modules that are not translated on purpose, with what to do instead (the TODO says it)
ADVICE = {
    "debug": "dropped: runproc prints each step's output; a value to show belongs in a step's stdout",
    "set_fact": "compute the value where it is used, or in vars:",
    "include_tasks": "a procedure: step runs another procedure file",
    "import_tasks": "a procedure: step runs another procedure file",
    "include_role": "a procedure: step runs another procedure file",
    "import_role": "a procedure: step runs another procedure file",
    "copy": "a shell step (install, cp) or an s3 step",
    "template": "a shell step that writes the file",
    "file": "a shell step (mkdir -p, chmod, rm)",
    "lineinfile": "a shell step (sed, grep || echo >>)",
    "apt": "a shell step: apt-get install -y ...", "package": "a shell step with the package manager",
    "yum": "a shell step: yum install -y ...", "dnf": "a shell step: dnf install -y ...",
    "meta": "runproc has no handlers or play control",
}
