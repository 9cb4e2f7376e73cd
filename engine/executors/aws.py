"""``aws``: any boto3 client call, ``{service, op, args}``, paginated where the API pages.

``service`` and ``op`` (boto3's method name ``list_buckets`` or the API name ``ListBuckets``)
are checked against botocore's service model when the procedure is loaded, with the top-level
names of ``args`` (awsmodel). The operation's name says whether it reads (Describe, Get,
List, Head, ...): a read runs in a dry run; anything else is rehearsed: botocore builds,
validates and signs the request, which is then not sent, and the plan shows the call.

``account:`` guards a step: the credentials' account (sts:GetCallerIdentity, once per
session) must be that one, or the step is refused (exit 3) before its call is made.

Results are the response's own fields (``steps.x.DBSnapshots``), JSON-ready (dates as ISO
text, bytes as base64, a streamed body as text), with sensitive members masked, and
``ResponseMetadata: {RequestId, HTTPStatusCode, Pages}``. A paginated call's pages are merged
as botocore's ``build_full_result`` does. A service error is one line: ``CODE: message
(request id ...)``. boto3 is imported only when a step runs.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..errors import FailedError
from ..format import expressions as ex
from . import awsmodel
from .awsclient import AwsSession, CallStopped, Track, open_session, option_text, tracking
from .base import ASSERTION, ENVIRONMENT, Effect, Executor, Options, Result, StepContext
from .confirm import Refusal

BODY_LIMIT = 1024 * 1024  # a streamed body (s3 get_object, lambda invoke) is read up to 1 MiB
ACCOUNT = re.compile(r"\d{12}")

# error codes that say the credentials do not work here: the environment, not the data
_CREDENTIAL_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException", "InvalidToken",
    "InvalidClientTokenId", "UnrecognizedClientException", "AuthFailure", "AccessDenied",
    "AccessDeniedException", "UnauthorizedOperation", "AllAccessDisabled",
})


def _static(value: str, what: str) -> str:
    if ex.is_template(value):
        raise ValueError(f"'{what}' cannot be a template: the call must be known when the file is loaded "
                         "(to check it, and to tell a read from a write)")
    return value


class AwsOptions(Options):
    service: str | None = None
    op: str
    args: dict[str, Any] = Field(default_factory=dict)
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    account: str | int | None = None
    connection: str | None = None
    paginate: bool = True
    max_items: int | None = Field(None, ge=1)

    @field_validator("service")
    @classmethod
    def _known_service(cls, value: str | None) -> str | None:
        if value is not None:
            awsmodel.service_model(_static(value, "service"))
        return value

    @field_validator("op")
    @classmethod
    def _known_op(cls, value: str, info: ValidationInfo) -> str:
        _static(value, "op")
        if "service" not in info.data:
            return value  # the service is wrong: its own error says so
        service, op = split_op(info.data["service"], value)
        if service is None:
            raise ValueError("name the service: 'service: route53' beside 'op', or 'op: route53.change_resource_record_sets'")
        awsmodel.operation(service, op)
        return value

    @field_validator("args")
    @classmethod
    def _known_args(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "service" not in info.data or "op" not in info.data:
            return value
        service, op = split_op(info.data["service"], info.data["op"])
        if service is not None:
            awsmodel.check_arg_names(awsmodel.operation(service, op), [str(k) for k in value])
        return value

    @field_validator("account")
    @classmethod
    def _account_id(cls, value: str | int | None) -> str | None:
        if isinstance(value, bool):
            raise ValueError("account is a 12-digit AWS account id")
        if isinstance(value, int):  # YAML reads an unquoted id as a number
            if not 10**11 <= value < 10**12:
                raise ValueError(f"account {value} is not a 12-digit AWS account id "
                                 "(quote an id that starts with 0: YAML reads it as a number)")
            value = str(value)
        if value is not None and not ex.is_template(value) and not ACCOUNT.fullmatch(value):
            raise ValueError(f"account {value!r} is not a 12-digit AWS account id")
        return value

    @model_validator(mode="after")
    def _split(self) -> AwsOptions:
        service, op = split_op(self.service, self.op)
        self.service, self.op = service, op
        if self.max_items is not None and not self.paginate:
            raise ValueError("max_items limits a paginated call; it does not go with 'paginate: false'")
        return self


def split_op(service: str | None, op: str) -> tuple[str | None, str]:
    """``(service, op)``; ``op: route53.get_hosted_zone`` names both (the short form)."""
    if "." in op:
        head, _, tail = op.partition(".")
        if service is None or head == service:  # service: s3 with op: s3.list_buckets is fine too
            return head, tail
    return service, op


@dataclass(frozen=True)
class Where:
    """Where a call goes: the session's settings, rendered (the step's, else its connection's)."""

    profile: str | None
    region: str | None
    endpoint_url: str | None

    @property
    def key(self) -> str:
        return f"aws:{self.profile or ''}|{self.region or ''}|{self.endpoint_url or ''}"


class AwsExecutor(Executor):
    name = "aws"
    main_option = "op"
    Options = AwsOptions
    connection_kinds = ("s3",)  # an s3 connection's region, profile and endpoint_url, when named
    knows_effect = True  # the operation's name says whether it writes
    result_fields = ("ResponseMetadata",)

    def uses_connection(self, options: AwsOptions) -> bool:
        return options.connection is not None  # boto3's own defaults otherwise

    @staticmethod
    def operation(options: AwsOptions) -> awsmodel.Operation:
        assert options.service is not None
        return awsmodel.operation(options.service, options.op)

    def effect(self, options: AwsOptions) -> Effect:
        return Effect.READ if awsmodel.is_read(self.operation(options)) else Effect.WRITE

    def where(self, options: AwsOptions, ctx: StepContext) -> Where:
        conn = ctx.connection(options.connection, self.connection_kinds)[1] if options.connection else None

        def pick(name: str) -> str | None:
            value = option_text(ctx, getattr(options, name))
            return value if value is not None or conn is None else option_text(ctx, getattr(conn, name))

        return Where(pick("profile"), pick("region"), pick("endpoint_url"))

    def describe(self, options: AwsOptions, ctx: StepContext) -> str:
        op = self.operation(options)
        args = awsmodel.mask(_render_shown(options.args, ctx), op, "input", ctx.protect)
        text = f"aws {op.service} {op.method} {json.dumps(args, default=str)}"
        try:
            w = self.where(options, ctx)
            account = option_text(ctx, None if options.account is None else str(options.account))
            extra = [f"account {account}" if account else "",  # a param left empty: not checked, not shown
                     f"region {w.region}" if w.region else "", f"profile {w.profile}" if w.profile else "",
                     f"endpoint {w.endpoint_url}" if w.endpoint_url else ""]
        except (ValueError, KeyError, ex.ExpressionError):  # a plan shows the call even so
            extra = []
        shown = ", ".join(e for e in extra if e)
        return ctx.redact(f"{text} ({shown})" if shown else text)

    # ------------------------------------------------------------ entry points

    def execute(self, options: AwsOptions, ctx: StepContext) -> Result:
        return self._call(options, ctx, rehearse=False)

    def rehearse(self, options: AwsOptions, ctx: StepContext) -> Result | None:
        return self._call(options, ctx, rehearse=True)

    def _call(self, options: AwsOptions, ctx: StepContext, *, rehearse: bool) -> Result:
        from botocore.exceptions import BotoCoreError, ClientError

        op = self.operation(options)
        label = f"aws {op.service} {op.method}"
        track: Track | None = None
        owned: AwsSession | None = None
        try:
            where = self.where(options, ctx)

            def opener() -> AwsSession:
                return open_session(profile=where.profile, region=where.region, endpoint_url=where.endpoint_url)

            if ctx.resources is None:  # a bare context (embedding): this call's own session
                session = owned = opener()
            else:
                session = ctx.resources.get(where.key, opener, lambda s: s.close())
            ctx.progress(f"credentials: {session.credentials}")
            refusal = self._guard(options, ctx, session, label)
            if refusal is not None:
                return refusal
            args = ctx.render(options.args)
            client = session.client(op.service)
            with tracking(ctx, rehearse=rehearse) as track:
                if rehearse:
                    getattr(client, op.method)(**args)  # built, validated, signed; not sent
                    # the plan shows the call itself (describe): the note says what was checked
                    return Result(True, {}, planned=True,
                                  note=f"rehearsed: botocore built and signed the {op.api_name} request "
                                       "(parameters valid); not sent")
                response, paged = self._send(options, client, op, args)
            fields = awsmodel.mask(jsonable(response), op, "output", ctx.protect)
            fields.pop("ResponseMetadata", None)
            if paged:
                self._complete_lists(client, op, fields)
            fields["ResponseMetadata"] = {"RequestId": track.request_id, "HTTPStatusCode": track.status_code,
                                          "Pages": track.requests}
            return Result(True, fields)
        except ClientError as exc:
            return self._service_error(exc, ctx, label)
        except CallStopped as exc:
            sent = f" after {track.requests} request(s)" if track is not None and track.requests else ""
            if exc.reason == "timed_out":
                return Result(False, {}, f"{label}: timed out{sent}", timed_out=True)
            return Result(False, {}, f"{label}: interrupted{sent}", cancelled=True)
        except BodyTooLarge as exc:
            return Result(False, {}, f"{label}: {exc}")
        except BotoCoreError as exc:  # no credentials, unreachable, bad parameters, no region
            return Result(False, {}, ctx.redact(f"{label}: {one_line(str(exc))}"),
                          error_kind=ENVIRONMENT if botocore_environment_error(exc) else None)
        finally:
            if owned is not None:
                owned.close()

    # ------------------------------------------------------------ the parts

    def _guard(self, options: AwsOptions, ctx: StepContext, session: AwsSession, label: str) -> Result | None:
        """A refusal when the credentials belong to another account than the step's ``account``."""
        # the validator made a number a 12-digit text; a template renders here
        expected = option_text(ctx, None if options.account is None else str(options.account))
        if expected is None:
            return None
        if not ACCOUNT.fullmatch(expected):
            return Result(False, {}, f"{label}: account {expected!r} is not a 12-digit AWS account id")
        actual = session.account()
        ctx.progress(f"account: {actual}")
        if actual == expected:
            return None
        return Refusal(False, {}, f"{label}: refused: the credentials ({session.credentials}) are for AWS "
                                  f"account {actual}, the step expects {expected}; nothing was called")

    def _send(self, options: AwsOptions, client: Any, op: awsmodel.Operation,
              args: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(response, paged): every page merged when the API pages and the step allows it."""
        if not (options.paginate and client.can_paginate(op.method)):
            return getattr(client, op.method)(**args), False
        config: dict[str, Any] = {}
        if options.max_items is not None:
            config["MaxItems"] = options.max_items
        pages = client.get_paginator(op.method).paginate(**args, PaginationConfig=config)
        return pages.build_full_result(), True

    @staticmethod
    def _complete_lists(client: Any, op: awsmodel.Operation, fields: dict[str, Any]) -> None:
        """A merged result always has its lists (``Contents: []`` for an empty bucket), so a
        later step can count them without asking whether they are there."""
        paginator = client.get_paginator(op.method)
        keys = getattr(paginator, "result_keys", None) or []
        for expr in keys:
            name = getattr(expr, "expression", str(expr))
            if re.fullmatch(r"[A-Za-z0-9_]+", name):
                fields.setdefault(name, [])

    @staticmethod
    def _service_error(exc: Any, ctx: StepContext, label: str) -> Result:
        response = exc.response if isinstance(getattr(exc, "response", None), dict) else {}
        err = response.get("Error", {})
        code, message = str(err.get("Code") or "?"), str(err.get("Message") or "")
        meta = response.get("ResponseMetadata", {})
        request_id = meta.get("RequestId")
        text = f"{label}: {code}" + (f": {one_line(message)}" if message else "")
        text += f" (request id {request_id})" if request_id else ""
        fields = {"Error": {"Code": code, "Message": message},
                  "ResponseMetadata": {"RequestId": request_id, "HTTPStatusCode": meta.get("HTTPStatusCode")}}
        # the service answered; but a refusal of the credentials means a real run fails too
        kind = ENVIRONMENT if code in _CREDENTIAL_CODES else ASSERTION
        return Result(False, fields, ctx.redact(text), error_kind=kind)


# ---------------------------------------------------------------- values


class BodyTooLarge(FailedError):
    """A streamed response body is larger than a result may hold (BODY_LIMIT)."""


def jsonable(value: Any) -> Any:
    """A response as JSON: dates as ISO text, bytes as base64, a streamed body read as text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):  # DynamoDB numbers
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "read"):  # a StreamingBody
        try:
            data = value.read(BODY_LIMIT + 1)
        finally:
            close = getattr(value, "close", None)
            if close is not None:
                close()
        if len(data) > BODY_LIMIT:
            raise BodyTooLarge(f"the response body is larger than {BODY_LIMIT // (1024 * 1024)} MiB; "
                               "download it with the s3 executor's 'file'")
        return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else str(data)
    return str(value)


def _render_shown(value: Any, ctx: StepContext) -> Any:
    """Arguments as a plan shows them: rendered where known, as written where a dry run
    cannot know the value yet (a planned step's result)."""
    if isinstance(value, dict):
        return {str(_render_shown(k, ctx)): _render_shown(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_shown(v, ctx) for v in value]
    if isinstance(value, str) and ex.is_template(value):
        try:
            return jsonable(ctx.render(value))
        except ex.UnknownValueError:
            return value
    return value


def one_line(text: str) -> str:
    """botocore's multi-line messages (parameter validation) as one line."""
    out = ""
    for part in (p.strip() for p in text.strip().splitlines()):
        if part:
            out += part if not out else (f" {part}" if out.endswith(":") else f"; {part}")
    return out


def botocore_environment_error(exc: BaseException) -> bool:
    """What a real run would meet too: no usable credentials or profile, no region, an
    endpoint that cannot be reached (refused, no name, TLS, proxy, connect timeout); a bad
    parameter or a read timeout says nothing about the environment."""
    import botocore.exceptions as bx

    return isinstance(exc, bx.ConnectionError | bx.NoCredentialsError | bx.PartialCredentialsError
                      | bx.ProfileNotFound | bx.CredentialRetrievalError | bx.NoRegionError
                      | bx.SSOError | bx.TokenRetrievalError | bx.ConfigNotFound
                      | bx.InvalidConfigError | bx.NoAuthTokenError)
