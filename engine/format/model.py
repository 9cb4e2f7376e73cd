"""pydantic v2 models of the procedure format (../shared/spec/procedure-format.md).

Types are strict: YAML is read with 1.2 core rules (see yamlsrc), and nothing is coerced,
so ``readonly: "yes"`` is an error rather than a surprise. A step's executor part (its key,
its short or long form, options beside it) is split off and validated by that executor's
own ``Options`` model in the loader; here it is carried as an ``Action``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from .durationfield import Duration
from .loops import ForeachHosts, foreach_shape
from .notifications import Escalation, Notification
from .schedules import JSON_SCHEMA as SCHEDULE_SCHEMA
from .schedules import Schedule, check_schedules, one_or_many

ID_PATTERN = r"^[a-z_][a-z0-9_]*$"
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"


class Strict(BaseModel):
    # defer_build: a model's validator is built on first use, so a file without connections
    # never pays for the five connection models (startup is most of `runproc validate`)
    model_config = ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True,
                              populate_by_name=True, defer_build=True)


@dataclass
class Action:
    """A validated executor call: the key used in the step and its options model."""

    kind: str
    options: Any


# ---------------------------------------------------------------- params, secrets

ParamType = Literal["str", "int", "float", "bool", "list"]


class Param(Strict):
    type: ParamType = "str"
    required: bool = False
    default: Any = None
    pattern: str | None = None
    min: int | float | None = None
    max: int | float | None = None
    choices: list[Any] | None = None
    help: str | None = None
    secret: bool = False

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Param:
        """Constraints that fit the type, and a default and choices that meet them.

        Checked at load time so a wrong default is a file:line error, not a failed run.
        """
        from .params import coerce

        if self.required and self.default is not None:
            raise ValueError("'required: true' and a 'default' contradict: with a default the param "
                             "is never missing; drop one")
        if self.pattern is not None and self.type != "str":
            raise ValueError(f"'pattern' applies to str params, not {self.type}")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float"):
            raise ValueError(f"'min' and 'max' apply to int and float params, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"'min' ({self.min}) is above 'max' ({self.max})")
        unconstrained = self.model_copy(update={"choices": None, "pattern": None, "min": None, "max": None})
        for choice in self.choices or ():
            try:
                coerce("choice", unconstrained, choice, from_text=False)
            except ValueError as exc:
                raise ValueError(f"choices: {exc}") from None
        if self.default is not None:
            try:
                coerce("default", self, self.default, from_text=False)
            except ValueError as exc:
                raise ValueError(f"default: {exc}") from None
        return self


class MaintenanceWindow(Strict):
    """``window: {times: "Sun 02:00-04:00 UTC", wait: true}``: the long form of ``window:``.
    ``wait``: a run submitted outside the window waits for it to open instead of being
    refused (a durable timer on the Temporal engine; in-process when run locally)."""

    times: str | list[str]
    wait: bool = False


class VaultSource(Strict):
    """A key of a Vault or OpenBao KV secret (engine/executors/secretstores.py reads it). The
    address and credentials come from the standard environment (VAULT_ADDR, VAULT_TOKEN, or
    VAULT_ROLE_ID and VAULT_SECRET_ID for AppRole) unless given here; a token or a secret id is
    never written in the file: ``token_env``/``secret_id_env`` name another variable instead."""

    path: str
    key: str
    mount: str = "secret"
    engine: Literal["kv2", "kv1"] = "kv2"
    version: int | None = None  # kv2: a given version, else the latest
    address: str | None = None
    namespace: str | None = None
    auth: Literal["token", "approle"] | None = None  # else: a token if one is set, then AppRole
    token_env: str | None = None
    role_id: str | None = None
    secret_id_env: str | None = None
    approle_mount: str = "approle"

    @model_validator(mode="after")
    def _version_is_kv2(self) -> VaultSource:
        if self.version is not None and self.engine != "kv2":
            raise ValueError("version: only a kv2 engine keeps versions")
        return self


class AwsSecretsManagerSource(Strict):
    id: str  # the secret's name or ARN
    key: str | None = None  # a field of a JSON secret; else the whole SecretString
    version_stage: str | None = None
    region: str | None = None
    profile: str | None = None


class AwsSsmSource(Strict):
    name: str  # a parameter's name (a SecureString is decrypted)
    region: str | None = None
    profile: str | None = None


SECRET_SOURCES = ("env", "file", "vault", "aws_secretsmanager", "aws_ssm")


class Secret(Strict):
    env: str | None = None
    file: str | None = None
    # read from a secret store where the step runs, once per run (engine/executors/secretstores.py)
    vault: VaultSource | None = None
    aws_secretsmanager: AwsSecretsManagerSource | None = None
    aws_ssm: AwsSsmSource | None = None
    # optional: an unset secret is the empty string (trust auth, .pgpass) instead of an error
    optional: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> Secret:
        if sum(getattr(self, name) is not None for name in SECRET_SOURCES) != 1:
            raise ValueError("a secret takes exactly one of 'env', 'file', 'vault', 'aws_secretsmanager' "
                             "or 'aws_ssm'")
        return self

    @property
    def store(self) -> str | None:
        """The secret store it is read from (``vault``, ``aws_secretsmanager``, ``aws_ssm``),
        None for an environment variable or a file."""
        for name in SECRET_SOURCES[2:]:
            if getattr(self, name) is not None:
                return name
        return None


# ---------------------------------------------------------------- connections


class ConnectionBase(Strict):
    kind: ClassVar[str]
    main: ClassVar[str]
    # with --engine temporal: the task queue whose workers run the steps using this connection
    # (the workers inside the network zone that reaches it)
    queue: str | None = None


class PostgresConnection(ConnectionBase):
    kind: ClassVar[str] = "postgres"
    main: ClassVar[str] = "dsn"
    dsn: str
    password: str | None = None
    connect_timeout: Duration | None = None
    statement_timeout: Duration | None = None
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = None


class SqliteConnection(ConnectionBase):
    kind: ClassVar[str] = "sqlite"
    main: ClassVar[str] = "path"
    path: str
    timeout: Duration | None = None


class HttpConnection(ConnectionBase):
    kind: ClassVar[str] = "http"
    main: ClassVar[str] = "base_url"
    base_url: str
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration | None = None
    verify: bool | str = True


class KubernetesConnection(ConnectionBase):
    kind: ClassVar[str] = "kubernetes"
    main: ClassVar[str] = "context"
    context: str | None = None
    namespace: str | None = None
    kubeconfig: str | None = None


class S3Connection(ConnectionBase):
    kind: ClassVar[str] = "s3"
    main: ClassVar[str] = "bucket"
    bucket: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None


class PrometheusConnection(ConnectionBase):
    """A Prometheus server (or an API that speaks its HTTP API: Thanos, Mimir, VictoriaMetrics)."""

    kind: ClassVar[str] = "prometheus"
    main: ClassVar[str] = "url"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration | None = None
    verify: bool | str = True


CONNECTION_KINDS: dict[str, type[ConnectionBase]] = {
    c.kind: c for c in (PostgresConnection, SqliteConnection, HttpConnection,
                        KubernetesConnection, S3Connection, PrometheusConnection)
}


# ---------------------------------------------------------------- steps

Pattern = str
HostCount = int | Pattern  # a number, or a percentage such as "25%"


class Retry(Strict):
    attempts: int = Field(1, ge=1, le=100_000)
    delay: Duration = 0.0
    backoff: float = Field(1.0, ge=1.0)  # strict float still takes an int
    max_delay: Duration | None = None
    until: str | None = None


class Body(Strict):
    """An executor call with the keys every body may carry (a rollback is one)."""

    COMMON: ClassVar[frozenset[str]] = frozenset({"name", "timeout", "retry", "env"})
    name: str | None = None
    timeout: Duration | None = None
    retry: Retry | None = None
    env: dict[str, str | int | float] = Field(default_factory=dict)
    action: Action | None = None


class Check(Body):
    """A precondition or verification: a body plus ``expect`` (an expression over ``result``)."""

    COMMON: ClassVar[frozenset[str]] = Body.COMMON | {"expect"}
    expect: str | None = None


def _one_or_list(value: Any) -> Any:
    """``needs: backup`` reads as ``needs: [backup]``, as in GitHub Actions."""
    return [value] if isinstance(value, str) else value


Needs = Annotated[list[str], BeforeValidator(_one_or_list),
                  WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})]


class Step(Body):
    COMMON: ClassVar[frozenset[str]] = Body.COMMON | {
        "id", "needs", "when", "on", "serial", "max_fail", "preconditions", "verify",
        "readonly", "idempotent", "continue_on_error", "rollback", "queue", "notify",
        "foreach", "matrix", "as", "concurrency", "fail_fast"}
    id: str = Field(pattern=ID_PATTERN)
    needs: Needs | None = None
    when: str | None = None
    on: str | None = None
    serial: HostCount | None = None
    max_fail: HostCount | None = None
    preconditions: list[Check] = Field(default_factory=list)
    verify: list[Check] = Field(default_factory=list)
    readonly: bool = False
    # running it twice does what running it once does: a resume re-runs it without asking
    # when the runner stopped while it was in flight
    idempotent: bool = False
    continue_on_error: bool = False
    # with --engine temporal: the task queue whose workers run this step (a network zone)
    queue: str | None = None
    rollback: Body | None = None
    # this step's own notifications (engine/format/notifications.py)
    notify: list[Notification] = Field(default_factory=list)
    # a loop (engine/format/loops.py, docs/format.md#loops): the step runs once per item
    foreach: Annotated[list[Any] | str | ForeachHosts | None, BeforeValidator(foreach_shape)] = None
    matrix: dict[str, list[Any] | str] | None = None
    as_: str | None = Field(None, alias="as", pattern=ID_PATTERN)
    concurrency: int | None = Field(None, ge=1, le=256)  # iterations at once (default 1)
    fail_fast: bool = True  # a failed iteration: start no other one

    @property
    def loops(self) -> bool:
        """A ``foreach:`` or ``matrix:`` step: it runs once per item."""
        return self.foreach is not None or self.matrix is not None

    @field_validator("serial", "max_fail")
    @classmethod
    def _count_or_percent(cls, value: HostCount | None) -> HostCount | None:
        if isinstance(value, str) and not re.fullmatch(r"\d{1,3}%", value):
            raise ValueError("expected a number of hosts or a percentage such as '25%'")
        if isinstance(value, int) and value < 0:
            raise ValueError("cannot be negative")
        return value


# ---------------------------------------------------------------- procedure


class Procedure(Strict):
    procedure: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    owner: str | None = None
    params: dict[str, Param] = Field(default_factory=dict)
    vars: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, Secret] = Field(default_factory=dict)
    connections: dict[str, Any] = Field(default_factory=dict)
    inventory: str | None = None
    lock: str | None = None
    # one window, or several (a list): the run may start when any of them is open
    window: str | list[str] | MaintenanceWindow | None = None
    concurrency: int | None = Field(None, ge=1, le=256)
    preconditions: list[Check] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)
    finally_: list[Step] = Field(default_factory=list, alias="finally")
    on_failure: list[Step] = Field(default_factory=list)
    # who is told when the run starts, ends, fails, rolls back or waits (docs/notifications.md)
    notify: list[Notification] = Field(default_factory=list)
    escalate: list[Escalation] = Field(default_factory=list)
    # when a scheduler starts it by itself (docs/format.md, engine/format/schedules.py)
    schedule: Annotated[list[Schedule] | None, BeforeValidator(one_or_many), WithJsonSchema(SCHEDULE_SCHEMA)] = None

    _path: Path | None = PrivateAttr(default=None)
    _source: Any = PrivateAttr(default=None)
    _references: dict[str, set[str]] = PrivateAttr(default_factory=dict)

    @property
    def path(self) -> Path | None:
        """The file the procedure was loaded from (None when built in code)."""
        return self._path

    @property
    def workdir(self) -> Path:
        return self._path.parent if self._path else Path.cwd()

    @property
    def window_times(self) -> str | None:
        """The window's days and hours (``window:`` in either form), or None."""
        times = self.window.times if isinstance(self.window, MaintenanceWindow) else self.window
        return "; ".join(times) if isinstance(times, list) else times

    @property
    def window_waits(self) -> bool:
        """``window.wait: true``: outside the window, wait for it instead of refusing."""
        return isinstance(self.window, MaintenanceWindow) and self.window.wait

    @field_validator("schedule")
    @classmethod
    def _schedule_params(cls, value: list[Schedule] | None, info: Any) -> list[Schedule] | None:
        """A schedule's params are checked against the declared ones as the file loads."""
        return check_schedules(value, info.data.get("params") or {})

    def all_steps(self) -> list[Step]:
        return [*self.steps, *self.finally_, *self.on_failure]

    def step(self, step_id: str) -> Step:
        for s in self.all_steps():
            if s.id == step_id:
                return s
        raise KeyError(step_id)
