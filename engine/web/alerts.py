"""The Alertmanager webhook receiver of ``runproc serve`` (``POST /api/v1/alertmanager``,
docs/web.md "Alerts start runs"): which alert starts which procedure with which params, read
from the file ``--triggers FILE``, and what one notification does.

    alertmanager:
      - name: api-down                      # names the rule; its runs are started by alertmanager:api-down
        match: {alertname: ApiDown, severity: [critical, page]}   # label: value, or a list of values
        match_re: {service: "api|web"}       # label: a regular expression the whole value meets
        procedure: incident-triage          # a procedure of the catalogue (--procedures)
        params:                             # each a template over the alert group (Jinja, sandboxed)
          deployment: "{{ labels.service }}"
          platform: "{{ labels.platform | default('all') }}"
        dry_run: false

A rule matches an alert group when its ``match`` and ``match_re`` hold for the group's common
labels; the first rule that matches is taken. The params' templates see ``labels`` (the
group's common labels), ``annotations`` (its common annotations), ``group_labels``,
``status``, ``receiver``, ``external_url`` and ``alerts``; what they render is text, read as
``-p NAME=VALUE`` reads it and checked as the command line checks it. A value never becomes
code: it is a param, typed and checked, given to the run as JSON on its stdin.

One run per alert group while it fires: the group's key (Alertmanager's ``groupKey``) is
claimed in the state (``alert_groups``) by the one notification that turns it firing; repeats
of a firing group (Alertmanager's repeat_interval, an HA pair that both send, a retry) start
nothing; a resolved group that fires again starts a new run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, Problem, ProcedureError

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
USER_PREFIX = "alertmanager:"
_RULE_KEYS = {"name", "match", "match_re", "procedure", "params", "dry_run"}


class BadPayload(InvalidInputError):
    """Not Alertmanager's webhook JSON (a 400)."""


class Unprocessable(InvalidInputError):
    """A good payload the matching rule cannot turn into a run: a param's template or its value (a 422)."""


@dataclass(frozen=True)
class Rule:
    name: str
    procedure: str
    match: dict[str, tuple[str, ...]] = field(default_factory=dict)
    match_re: dict[str, re.Pattern[str]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False

    def matches(self, labels: dict[str, str]) -> bool:
        return (all(labels.get(k) in values for k, values in self.match.items())
                and all(k in labels and bool(p.fullmatch(labels[k])) for k, p in self.match_re.items()))

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "procedure": self.procedure, "match": {k: list(v) for k, v in self.match.items()},
                "match_re": {k: p.pattern for k, p in self.match_re.items()}, "params": dict(self.params),
                "dry_run": self.dry_run, "user": USER_PREFIX + self.name}


def load_rules(path: str | None, procedures: set[str] | None = None) -> list[Rule]:
    """The rules of a triggers file; a ProcedureError with each problem located (file:line:col).
    ``procedures``: the catalogue's names, to refuse a rule naming none of them."""
    if path is None:
        return []
    from ..format.yamlsrc import read_file

    if not Path(path).is_file():
        raise InvalidInputError(f"--triggers {path}: no such file")
    source = read_file(path)
    data = source.data
    problems: list[Problem] = []
    if not isinstance(data, dict) or set(data) - {"alertmanager"} or not isinstance(data.get("alertmanager"), list):
        raise ProcedureError(source.problem((), "a triggers file is a mapping with one key, alertmanager: a list "
                                                "of rules ({name, match, match_re, procedure, params, dry_run})"))
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, item in enumerate(data["alertmanager"]):
        at: tuple[Any, ...] = ("alertmanager", i)
        if not isinstance(item, dict):
            problems.append(source.problem(at, f"alertmanager[{i}]: expected a rule (a mapping)"))
            continue
        for key in sorted(set(item) - _RULE_KEYS):
            from ..format.suggest import did_you_mean

            problems.append(source.problem((*at, key), f"alertmanager[{i}]: unknown key {key!r}"
                                           f"{did_you_mean(key, _RULE_KEYS)}", key=True))
        name, proc = item.get("name"), item.get("procedure")
        if not isinstance(name, str) or not NAME.match(name):
            problems.append(source.problem((*at, "name") if "name" in item else at,
                                           f"alertmanager[{i}].name: a rule needs a name (lower-case letters, "
                                           "digits, '-' and '_')"))
        elif name in seen:
            problems.append(source.problem((*at, "name"), f"alertmanager[{i}].name: two rules are named {name!r}"))
        else:
            seen.add(name)
        if not isinstance(proc, str) or not proc:
            problems.append(source.problem((*at, "procedure") if "procedure" in item else at,
                                           f"alertmanager[{i}].procedure: the name of a catalogued procedure"))
        elif procedures is not None and proc not in procedures:
            from ..format.suggest import did_you_mean

            problems.append(source.problem((*at, "procedure"), f"alertmanager[{i}].procedure: no procedure "
                                           f"{proc!r} in the catalogue{did_you_mean(proc, procedures)}"))
        match = _match(source, at, item.get("match"), problems, i)
        match_re = _match_re(source, at, item.get("match_re"), problems, i)
        if "match" not in item and "match_re" not in item:
            problems.append(source.problem(at, f"alertmanager[{i}]: a rule needs match or match_re (a rule "
                                               "matching every alert would start a run for each)"))
        params = item.get("params", {})
        if not isinstance(params, dict):
            problems.append(source.problem((*at, "params"), f"alertmanager[{i}].params: a mapping of name: value"))
            params = {}
        for key, value in params.items():
            if isinstance(value, str):
                problem = _template_problem(value)
                if problem:
                    problems.append(source.problem((*at, "params", key), f"alertmanager[{i}].params.{key}: {problem}"))
            elif not isinstance(value, int | float | bool):
                problems.append(source.problem((*at, "params", key), f"alertmanager[{i}].params.{key}: a text "
                                               "(a template) or a number or true/false"))
        dry_run = item.get("dry_run", False)
        if not isinstance(dry_run, bool):
            problems.append(source.problem((*at, "dry_run"), f"alertmanager[{i}].dry_run: true or false"))
        if isinstance(name, str) and isinstance(proc, str):
            rules.append(Rule(name, proc, match, match_re, dict(params), dry_run is True))
    if problems:
        raise ProcedureError(problems)
    return rules


def _match(source: Any, at: tuple[Any, ...], value: Any, problems: list[Problem], i: int) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    out: dict[str, tuple[str, ...]] = {}
    if not isinstance(value, dict):
        problems.append(source.problem((*at, "match"), f"alertmanager[{i}].match: a mapping of label: value"))
        return out
    for label, want in value.items():
        values = want if isinstance(want, list) else [want]
        if not values or not all(isinstance(v, str) for v in values):
            problems.append(source.problem((*at, "match", label), f"alertmanager[{i}].match.{label}: a label's "
                                           "value (text), or a list of them"))
            continue
        out[str(label)] = tuple(values)
    return out


def _match_re(source: Any, at: tuple[Any, ...], value: Any, problems: list[Problem], i: int) -> dict[str, re.Pattern[str]]:
    if value is None:
        return {}
    out: dict[str, re.Pattern[str]] = {}
    if not isinstance(value, dict):
        problems.append(source.problem((*at, "match_re"), f"alertmanager[{i}].match_re: a mapping of label: regex"))
        return out
    for label, pattern in value.items():
        try:
            out[str(label)] = re.compile(str(pattern))
        except re.error as exc:
            problems.append(source.problem((*at, "match_re", label), f"alertmanager[{i}].match_re.{label}: "
                                           f"not a regular expression: {exc}"))
    return out


# ---------------------------------------------------------------- templates


def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def _template_problem(text: str) -> str | None:
    from jinja2 import TemplateSyntaxError

    try:
        _environment().from_string(text)
    except TemplateSyntaxError as exc:
        return f"template: {exc.message}"
    return None


def render_params(rule: Rule, payload: dict[str, Any]) -> dict[str, str]:
    """The rule's params for this alert group, as text (Unprocessable naming the param)."""
    from jinja2 import TemplateError

    context = {"labels": payload.get("commonLabels") or {}, "annotations": payload.get("commonAnnotations") or {},
               "group_labels": payload.get("groupLabels") or {}, "status": payload.get("status"),
               "receiver": payload.get("receiver"), "external_url": payload.get("externalURL"),
               "alerts": payload.get("alerts") or []}
    out: dict[str, str] = {}
    env = _environment()
    for key, value in rule.params.items():
        if not isinstance(value, str):
            out[key] = str(value).lower() if isinstance(value, bool) else str(value)
            continue
        try:
            out[key] = env.from_string(value).render(**context)
        except TemplateError as exc:
            raise Unprocessable(f"rule {rule.name}: params.{key}: {' '.join(str(exc).split())} (the group's "
                                f"common labels: {', '.join(sorted(context['labels'])) or 'none'}; "
                                "| default('...') gives a value when a label is missing)") from None
    return out


# ---------------------------------------------------------------- the payload


def check_payload(body: Any) -> dict[str, Any]:
    """Alertmanager's webhook JSON, version 4, or BadPayload saying what is wrong."""
    want = "expected Alertmanager's webhook JSON (version 4: status, groupKey, alerts, commonLabels...)"
    if not isinstance(body, dict):
        raise BadPayload(f"the body is not a JSON object; {want}")
    version = body.get("version")
    if version != "4":
        raise BadPayload(f"version: {version!r}; this receiver reads version \"4\" ({want})")
    if body.get("status") not in ("firing", "resolved"):
        raise BadPayload(f"status: {body.get('status')!r}; expected \"firing\" or \"resolved\"")
    key = body.get("groupKey")
    if not isinstance(key, str) or not key:
        raise BadPayload(f"groupKey: missing or not text; {want}")
    alerts = body.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise BadPayload("alerts: expected a list of at least one alert")
    for n, alert in enumerate(alerts):
        if not isinstance(alert, dict) or not _labels(alert.get("labels")):
            raise BadPayload(f"alerts[{n}].labels: expected a mapping of label names to text")
        if alert.get("annotations") is not None and not _labels(alert.get("annotations")):
            raise BadPayload(f"alerts[{n}].annotations: expected a mapping of names to text")
    for name in ("commonLabels", "commonAnnotations", "groupLabels"):
        if body.get(name) is not None and not _labels(body[name], empty=True):
            raise BadPayload(f"{name}: expected a mapping of names to text")
    if body.get("commonLabels") is None:  # older senders: the labels all alerts share
        shared = dict(alerts[0]["labels"])
        for alert in alerts[1:]:
            shared = {k: v for k, v in shared.items() if alert["labels"].get(k) == v}
        body = {**body, "commonLabels": shared}
    return body


def _labels(value: Any, empty: bool = False) -> bool:
    return (isinstance(value, dict) and (empty or bool(value))
            and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()))


def group_id(group_key: str) -> str:
    """The state's key for an alert group: a hash (a groupKey can be long, and holds label values)."""
    return hashlib.sha256(group_key.encode("utf-8")).hexdigest()


def first_match(rules: list[Rule], labels: dict[str, str]) -> Rule | None:
    return next((r for r in rules if r.matches(labels)), None)


# ---------------------------------------------------------------- one notification


def receive(store: Any, rules: list[Rule], body: Any, *, find_file: Any, state_url: str, received_by: str,
            dry_run: bool = False) -> tuple[int, dict[str, Any]]:
    """What one notification does: (HTTP status, answer). Raises BadPayload (400), Unprocessable
    (422: the rule's params for this group are not good params), NotFound (the rule's
    procedure left the catalogue) or StartFailed (502: runproc ended without a run; the group
    may start again at the next notification)."""
    from . import starts

    payload = check_payload(body)
    key, status = payload["groupKey"], payload["status"]
    gid = group_id(key)
    labels = payload["commonLabels"]
    answer: dict[str, Any] = {"status": status, "group": gid[:16]}
    rule = first_match(rules, labels)
    if rule is None:
        return 200, {**answer, "action": "ignored", "reason": "no rule matches the group's common labels ("
                     + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) + ")"}
    answer.update(rule=rule.name, procedure=rule.procedure)
    existing = store.alert_group(gid)
    if status == "resolved":
        if existing is None or existing["status"] != "firing":
            return 200, {**answer, "action": "ignored", "reason": "this group has no run going for it"}
        if not dry_run:
            store.settle_alert_group(gid, status="resolved")
        return 200, {**answer, "action": "resolved", "run_id": existing["run_id"],
                     "reason": "the group resolved: its next firing starts a new run"}
    file = find_file(rule.procedure)
    text = render_params(rule, payload)
    try:
        params = starts.check_params(file, text, from_text=True)
    except ProcedureError as exc:
        raise Unprocessable(f"rule {rule.name}: the params it gives {rule.procedure} are refused: "
                            + "; ".join(starts.problems_text(exc))) from None
    secret = _secret_names(file)
    shown = {k: ("***" if k in secret else v) for k, v in text.items()}
    answer.update(params=shown, dry_run=rule.dry_run)
    if existing is not None and existing["status"] == "firing":
        return 200, {**answer, "action": "deduplicated", "run_id": existing["run_id"],
                     "reason": "this group fires already and has its run"}
    if dry_run:
        return 200, {**answer, "action": "would_start", "reason": "?dry_run=true: nothing started or recorded"}
    if not store.claim_alert_group(gid, rule.name, received_by):
        current = store.alert_group(gid) or {}
        return 200, {**answer, "action": "deduplicated", "run_id": current.get("run_id"),
                     "reason": "this group fires already and has its run"}
    try:
        started = starts.start(file, params, state_url=state_url, user=USER_PREFIX + rule.name,
                               dry_run=rule.dry_run, store=store)
    except starts.StartFailed as exc:
        store.settle_alert_group(gid, status="failed", detail=str(exc)[:500])
        raise
    store.settle_alert_group(gid, status=None, run_id=started.run_id)
    rid = started.run_id
    return 201, {**answer, "action": "started", "run_id": rid, "pid": started.pid,
                 "url": f"/api/v1/runs/{rid}" if rid else None, "page": f"/runs/{rid}" if rid else None}


def _secret_names(file: str) -> set[str]:
    from ..api import load

    proc = load(file)
    return {name for name, spec in proc.params.items() if getattr(spec, "secret", False)}
