"""boto3 sessions and clients for the ``s3`` and ``aws`` executors.

One place decides how runproc talks to AWS: credentials from boto3's normal chain, named
and never shown; no instance metadata service when the endpoint is on this machine;
standard retries and bounded waits. A session (one per connection or profile/region/endpoint
per run, kept in the run's resources) opens one client per service and asks STS once which
account its credentials belong to.

Each client also reports its calls to the step on whose thread they run (``tracking``): the
number of requests and the last request id for the result, a check of the deadline and the
interrupt before every request (between the pages of a paginated call), and, for a dry run,
a stand-in answer so that botocore builds, validates and signs a write without sending it.
boto3 is imported inside functions only.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import Cancelled
from .base import StepContext

CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
MAX_ATTEMPTS = 3


def option_text(ctx: StepContext, value: str | None) -> str | None:
    """A rendered text option; empty means "not given" (a param left at its empty default)."""
    if value is None:
        return None
    rendered = ctx.render(value)
    return None if rendered in (None, "") else str(rendered)


# ---------------------------------------------------------------- sessions


@dataclass
class AwsSession:
    session: Any  # boto3.session.Session
    credentials: str  # the name of the credential source (``env``, ``iam-role``, ...), never a value
    endpoint_url: str | None
    _clients: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _account: str | None = None

    def client(self, service: str) -> Any:
        """The session's client for ``service`` (boto3 clients are thread-safe: one per run)."""
        with self._lock:
            if service not in self._clients:
                client = self.session.client(service, endpoint_url=self.endpoint_url, config=client_config())
                client.meta.events.register("before-call", _before_call)
                client.meta.events.register("after-call", _after_call)
                self._clients[service] = client
            return self._clients[service]

    def account(self) -> str:
        """The account of these credentials (sts:GetCallerIdentity, asked once per session)."""
        if self._account is None:
            self._account = str(self.client("sts").get_caller_identity()["Account"])
        return self._account

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def open_session(*, profile: str | None, region: str | None, endpoint_url: str | None) -> AwsSession:
    import boto3
    import botocore.session

    core = botocore.session.Session(profile=profile)  # the profile first: the resolver reads it
    if _is_loopback_url(endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or ""):
        # a local stand-in (MinIO, moto, LocalStack) never needs the cloud's instance
        # credentials: do not ask the metadata service (169.254.169.254), an address nobody chose
        resolver = core.get_component("credential_provider")
        for name in ("iam-role", "container-role"):
            with contextlib.suppress(Exception):
                resolver.remove(name)
    session = boto3.session.Session(region_name=region, botocore_session=core)
    creds = session.get_credentials()
    source = (getattr(creds, "method", None) or "unknown") if creds is not None else "none found"
    return AwsSession(session, source, endpoint_url)


def client_config() -> Any:
    from botocore.config import Config

    # standard retries (throttling, 5xx) and bounded waits: a dead endpoint must not hang a step
    return Config(retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
                  connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT)


def _is_loopback_url(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    if not url:
        return False
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------- tracking calls


class CallStopped(Cancelled):
    """The step's deadline passed or the run was interrupted before a request was sent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "timed_out" or "cancelled"


@dataclass
class Track:
    """What one step's calls did, on its own thread: requests sent, the last request's id."""

    deadline: float | None
    cancel: threading.Event
    rehearse: bool = False
    requests: int = 0
    request_id: str | None = None
    status_code: int | None = None


_local = threading.local()


@contextlib.contextmanager
def tracking(ctx: StepContext, *, rehearse: bool = False) -> Iterator[Track]:
    """Track the calls made on this thread until the block ends. With ``rehearse``, every
    call is built, validated and signed by botocore and then answered here: nothing is sent."""
    track = Track(ctx.deadline, ctx.cancel, rehearse)
    previous = getattr(_local, "track", None)
    _local.track = track
    try:
        yield track
    finally:
        _local.track = previous


def _before_call(**kwargs: Any) -> Any:
    track: Track | None = getattr(_local, "track", None)
    if track is None:
        return None
    if track.cancel.is_set():
        raise CallStopped("cancelled")
    if track.deadline is not None and time.monotonic() >= track.deadline:
        raise CallStopped("timed_out")
    if track.rehearse:
        from botocore.awsrequest import AWSResponse

        # as botocore's Stubber answers: the request was fully built, and is not sent
        return AWSResponse(None, 200, {}, None), {}
    return None


def _after_call(http_response: Any = None, parsed: Any = None, **kwargs: Any) -> None:
    track: Track | None = getattr(_local, "track", None)
    if track is None or track.rehearse:
        return
    track.requests += 1
    meta = parsed.get("ResponseMetadata", {}) if isinstance(parsed, dict) else {}
    track.request_id = meta.get("RequestId") or track.request_id
    track.status_code = getattr(http_response, "status_code", None)
