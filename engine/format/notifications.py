"""``notify:`` and ``escalate:``: who is told what when a run starts, ends, fails, rolls back or
waits for an approval (docs/notifications.md). The models and their load-time checks only:
sending is ``engine.notify``'s job, fed by the run (``engine.execution.notifying``).

A notification is one channel key with its options plus ``on`` (the events) and ``when``::

    notify:
      - on: [failure, rollback]
        slack: {url: "{{ secrets.slack_webhook }}", channel: "#incidents"}
      - webhook: https://hooks.example.com/runproc        # the short form: the URL
    escalate:
      - after: 15m                                         # no approval or recovery for 15 minutes
        pagerduty: {routing_key: "{{ secrets.pd_secondary }}"}

Its own base model rather than ``model.Strict``: model.py imports this module, so this one
cannot import model.py back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from .durationfield import Duration

if TYPE_CHECKING:
    from ..errors import Problem
    from .yamlsrc import Path_, Source

EVENTS = ("start", "success", "failure", "rollback", "approval_needed")
CHANNELS = ("slack", "teams", "webhook", "email", "pagerduty")
# what starts an escalation clock: a wait for a person (an approval) or for a recovery
ESCALATING = ("failure", "approval_needed")
# the events a channel listens to when ``on`` is not given: a PagerDuty incident opened on a
# failure or a wait is resolved on success or a complete rollback, so it never stays open
DEFAULT_EVENTS: dict[str, tuple[str, ...]] = {"pagerduty": ("failure", "approval_needed", "rollback", "success")}
FALLBACK_EVENTS = ("failure",)
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 60.0
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
PAGERDUTY_URL_ENV = "RUNPROC_PAGERDUTY_URL"  # another Events API endpoint for every run (a test's)

Event = Literal["start", "success", "failure", "rollback", "approval_needed"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, defer_build=True)


def _one_or_list(value: Any) -> Any:
    """``on: failure`` reads as ``on: [failure]``."""
    return [value] if isinstance(value, str) else value


Events = Annotated[list[Event], BeforeValidator(_one_or_list),
                   WithJsonSchema({"anyOf": [{"enum": list(EVENTS)},
                                             {"type": "array", "items": {"enum": list(EVENTS)}}]})]
Timeout = Annotated[Duration, Field(le=MAX_TIMEOUT)]


class ChannelOptions(_Strict):
    """What every channel takes: the message (a template; default: a summary of the event)
    and how long one send may take (default 10 s, at most 60 s)."""

    message: str | None = None
    timeout: Timeout | None = None


class SlackOptions(ChannelOptions):
    """A Slack incoming webhook (or anything that takes its payload: Mattermost, Rocket.Chat)."""

    url: str
    channel: str | None = None
    username: str | None = None
    icon_emoji: str | None = None


class TeamsOptions(ChannelOptions):
    """A Microsoft Teams webhook: a Workflows "post to a channel when a webhook request is
    received" URL (an Adaptive Card, the default) or a legacy connector (``format: messagecard``)."""

    url: str
    title: str | None = None
    format: Literal["adaptive", "messagecard"] = "adaptive"


class WebhookOptions(ChannelOptions):
    """A JSON request to any URL: the event's facts (``json:`` replaces them with your own)."""

    url: str
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    json_: Any = Field(None, alias="json")


class EmailOptions(ChannelOptions):
    """A mail through an SMTP server, over STARTTLS (the default port 587 is the submission port)."""

    host: str
    port: int | str = 587  # a number, or a template that renders one
    from_: str = Field(alias="from")
    to: Annotated[list[str], BeforeValidator(_one_or_list),
                  WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})]
    user: str | None = None
    password: str | None = None
    subject: str | None = None
    starttls: bool = True
    # True: the system's CAs; a path: a CA bundle (a self-signed relay); False: no check
    verify: bool | str = True

    @model_validator(mode="after")
    def _tls_for_credentials(self) -> EmailOptions:
        if isinstance(self.port, int) and not 0 < self.port < 65536:
            raise ValueError(f"port: expected 1 to 65535, got {self.port}")
        if isinstance(self.port, str) and "{{" not in self.port and not self.port.isdigit():
            raise ValueError(f"port: expected a number or a template, got {self.port!r}")
        if self.password is not None and not self.starttls:
            raise ValueError("a password is sent only over STARTTLS: drop 'starttls: false' or the password")
        return self


class PagerDutyOptions(ChannelOptions):
    """PagerDuty's Events API v2: an incident opened (trigger) on a failure, a wait or an
    escalation, resolved on success or a complete rollback, one per run (its dedup key)."""

    routing_key: str
    # default: $RUNPROC_PAGERDUTY_URL, else PagerDuty's (an EU account: events.eu.pagerduty.com)
    url: str | None = None
    severity: Literal["critical", "error", "warning", "info"] = "critical"
    dedup_key: str | None = None
    source: str | None = None
    component: str | None = None
    group: str | None = None
    class_: str | None = Field(None, alias="class")


def _url_short_form(value: Any) -> Any:
    """``webhook: URL`` reads as ``webhook: {url: URL}``."""
    return {"url": value} if isinstance(value, str) else value


class _OrUrl:
    """The JSON Schema of a channel with a short form: the URL, or the mapping of options."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> Any:
        return {"anyOf": [{"type": "string"}, handler(core_schema)]}


OPTION_MODELS: dict[str, type[ChannelOptions]] = {
    "slack": SlackOptions, "teams": TeamsOptions, "webhook": WebhookOptions, "email": EmailOptions,
    "pagerduty": PagerDutyOptions}


class Notification(_Strict):
    """One channel and the events it hears. ``when``: an expression; false sends nothing."""

    KEYS: ClassVar[tuple[str, ...]] = ("on", "when", *CHANNELS)
    on: Events | None = None
    when: str | None = None
    slack: SlackOptions | None = None
    teams: TeamsOptions | None = None
    webhook: Annotated[WebhookOptions | None, BeforeValidator(_url_short_form), _OrUrl()] = None
    email: EmailOptions | None = None
    pagerduty: PagerDutyOptions | None = None

    @model_validator(mode="after")
    def _one_channel(self) -> Notification:
        given = [c for c in CHANNELS if getattr(self, c) is not None]
        if len(given) > 1:
            raise ValueError(f"one channel per entry, got {' and '.join(given)}: write one entry for each")
        if not given:
            raise ValueError(f"no channel: give one of {', '.join(CHANNELS)}")
        return self

    @property
    def channel(self) -> str:
        return next(c for c in CHANNELS if getattr(self, c) is not None)

    @property
    def options(self) -> ChannelOptions:
        return getattr(self, self.channel)  # type: ignore[no-any-return]

    @property
    def events(self) -> tuple[str, ...]:
        if self.on is not None:
            return tuple(self.on)
        return DEFAULT_EVENTS.get(self.channel, FALLBACK_EVENTS)


class Escalation(Notification):
    """A level of the escalation: after ``after`` without an approval (``approval_needed``) or a
    recovery (``failure``) while the run goes on, notify this channel."""

    KEYS: ClassVar[tuple[str, ...]] = ("after", *Notification.KEYS)
    after: Duration

    @model_validator(mode="after")
    def _escalating_events(self) -> Escalation:
        for event in self.on or ():
            if event not in ESCALATING:
                raise ValueError(f"an escalation waits after {' or '.join(ESCALATING)}, not {event!r}")
        return self

    @property
    def events(self) -> tuple[str, ...]:
        return tuple(self.on) if self.on is not None else ESCALATING


def allowed_keys(parent: Path_) -> list[str] | None:
    """The keys that may stand at ``parent`` when it is inside ``notify``/``escalate`` (for the
    "did you mean" of an unknown key), else None."""
    for i, part in enumerate(parent):
        if part in ("notify", "escalate") and i + 1 < len(parent) and isinstance(parent[i + 1], int):
            rest = parent[i + 2:]
            if not rest:
                return list(Escalation.KEYS if part == "escalate" else Notification.KEYS)
            if len(rest) == 1 and rest[0] in OPTION_MODELS:
                model = OPTION_MODELS[str(rest[0])]
                return [f.alias or n for n, f in model.model_fields.items()]
            return None
    return None


# ---------------------------------------------------------------- load-time checks

# what a notification's templates may read besides the run's names: the event's facts
EVENT_FIELDS = frozenset({"name", "status", "step", "error", "question", "summary", "who", "procedure",
                          "run_id", "started_at", "duration", "rolled_back", "not_undone", "cause", "after",
                          "host"})
TEMPLATE_ROOTS = frozenset({"params", "vars", "secrets", "env", "steps", "run", "now", "event"})


def _strings(value: Any, path: Path_) -> Iterator[tuple[Path_, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*path, k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))


def entries(proc: Any) -> Iterator[tuple[Path_, Notification, str | None]]:
    """Every notification of a procedure: (path, entry, the step id for a step's own)."""
    for i, entry in enumerate(proc.notify):
        yield ("notify", i), entry, None
    for i, entry in enumerate(proc.escalate):
        yield ("escalate", i), entry, None
    for section, steps in (("steps", proc.steps), ("finally", proc.finally_), ("on_failure", proc.on_failure)):
        for i, step in enumerate(steps):
            for j, entry in enumerate(step.notify):
                yield (section, i, "notify", j), entry, step.id


def check_notifications(proc: Any, source: Source, roots_refused: set[str]) -> list[Problem]:
    """What the schema cannot see: a step's ``approval_needed`` on a step that asks nobody, and
    the templates and ``when`` of every entry (syntax, names), located at file:line:col."""
    from ..errors import Problem
    from .analysis import analyse
    from .suggest import did_you_mean

    problems: list[Problem] = []
    step_ids = {s.id for s in proc.all_steps()}
    names: dict[str, Any] = {"params": proc.params, "vars": proc.vars, "secrets": proc.secrets}

    def label(path: Path_) -> str:
        out = ""
        for part in path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out

    def check(path: Path_, text: str, expression: bool) -> None:
        analysis = analyse(text, expression=expression)
        if analysis.error:
            line, col = source.where_in_text(path, analysis.error_line)
            problems.append(Problem(source.file, line, col, f"{label(path)}: {analysis.error}"))
            return
        for ref in analysis.references:
            message = _reference_problem(ref.root, ref.name, names, step_ids, roots_refused, did_you_mean)
            if message:
                line, col = source.where(path)
                problems.append(Problem(source.file, line, col, f"{label(path)}: {message}"))

    for path, entry, step_id in entries(proc):
        if step_id is not None and "approval_needed" in entry.events:
            step = proc.step(step_id)
            if step.action is None or step.action.kind != "confirm":
                problems.append(source.problem((*path, "on"), f"{label(path)}: 'approval_needed' is only for a "
                                               "confirm step: this step asks nobody",
                                               hint="at the procedure's level, approval_needed hears every "
                                                    "confirm step"))
        if entry.when:
            check((*path, "when"), entry.when, True)
        options = entry.options.model_dump(by_alias=True, exclude_defaults=True)
        for p, text in _strings(options, (*path, entry.channel)):
            if "{{" in text or "{%" in text:
                check(p, text, False)
    return problems


def _reference_problem(root: str, name: str | None, names: dict[str, Any], step_ids: set[str],
                       roots_refused: set[str], did_you_mean: Any) -> str | None:
    from .checks import JINJA_GLOBALS
    from .expressions import RUN_FIELDS

    if root in JINJA_GLOBALS:
        return None
    if root not in TEMPLATE_ROOTS:
        hint = " ('host' and 'result' exist only inside steps)" if root in ("host", "result") else ""
        return f"unknown name {root!r}{did_you_mean(root, TEMPLATE_ROOTS)}{hint}"
    if name is None or root in roots_refused:
        return None
    if root in names and name not in names[root]:
        kind = {"params": "param", "vars": "var", "secrets": "secret"}[root]
        return f"undeclared {kind} {name!r}{did_you_mean(name, names[root])}"
    if root == "run" and name not in RUN_FIELDS:
        return f"run has no field {name!r}{did_you_mean(name, RUN_FIELDS)}"
    if root == "event" and name not in EVENT_FIELDS:
        return f"event has no field {name!r}{did_you_mean(name, EVENT_FIELDS)}"
    if root == "steps" and name not in step_ids:
        return f"unknown step {name!r}{did_you_mean(name, step_ids)}"
    return None
