"""The s3 executor's client side: opening a boto3 client for a connection (credentials named,
never shown; no metadata service for a local endpoint), and transfers with progress and
cancellation."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import Cancelled
from ..format.model import S3Connection
from .base import StepContext

MiB = 1024 * 1024

MiB = 1024 * 1024
MULTIPART_THRESHOLD = 8 * MiB  # parts of 8 MiB too: 10,000 parts cover 78 GiB
PROGRESS_INTERVAL = 1.0  # seconds between transfer progress messages

# ---------------------------------------------------------------- the client


@dataclass
class S3Client:
    client: Any
    credentials: str  # the name of the credential source (``env``, ``iam-role``, ...)


def open_client(conn: S3Connection, ctx: StepContext) -> S3Client:
    import boto3
    import botocore.session
    from botocore.config import Config

    profile = option_text(ctx, conn.profile)
    endpoint = option_text(ctx, conn.endpoint_url)
    core = botocore.session.Session(profile=profile)  # the profile first: the resolver reads it
    if endpoint is not None and _is_loopback_url(endpoint):
        # a local stand-in (MinIO on this machine) never needs the cloud's instance credentials:
        # do not ask the metadata service (169.254.169.254), an address nobody chose here
        resolver = core.get_component("credential_provider")
        for name in ("iam-role", "container-role"):
            with contextlib.suppress(Exception):
                resolver.remove(name)
    session = boto3.session.Session(region_name=option_text(ctx, conn.region), botocore_session=core)
    creds = session.get_credentials()
    source = (getattr(creds, "method", None) or "unknown") if creds is not None else "none found"
    # standard retries (throttling, 5xx) and bounded waits: a dead endpoint must not hang a step
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60)
    client = session.client("s3", endpoint_url=endpoint, config=config)
    return S3Client(client, source)


def _is_loopback_url(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def option_text(ctx: StepContext, value: str | None) -> str | None:
    if value is None:
        return None
    rendered = ctx.render(value)
    return None if rendered in (None, "") else str(rendered)


def s3_connection(options: Any, ctx: StepContext) -> tuple[str, S3Connection]:
    """The step's s3 connection; with none declared, boto3's defaults (env, profile, region)."""
    if options.connection is None and not any(c.kind == "s3" for c in ctx.connections.values()):
        return "<default>", S3Connection()
    return ctx.connection(options.connection, ("s3",))


# ---------------------------------------------------------------- progress


class TransferStopped(Cancelled):
    """A transfer was cancelled because the step's deadline passed or the run was interrupted."""


class Progress:
    """A boto3 transfer callback: throttled "uploaded 12.0 of 40.0 MiB (30%)" messages."""

    def __init__(self, ctx: StepContext, verb: str, total: int) -> None:
        self.ctx, self.verb, self.total = ctx, verb, total
        self.done = 0
        self.last = time.monotonic()
        self.lock = threading.Lock()  # s3transfer calls back from its worker threads

    def __call__(self, n: int) -> None:
        with self.lock:
            self.done += n
            now = time.monotonic()
            if now - self.last >= PROGRESS_INTERVAL:
                self.last = now
                self.ctx.progress(self.message())

    def message(self) -> str:
        pct = f" ({100 * self.done // self.total}%)" if self.total else ""
        return f"{self.verb} {self.done / MiB:.1f} of {self.total / MiB:.1f} MiB{pct}"

    def finish(self) -> None:
        self.done = self.total
        self.ctx.progress(self.message())


def transfer(ctx: StepContext, client: Any, progress: Progress, start: Callable[[Any, list[Any]], Any]) -> None:
    """Run one managed transfer, polling so that a deadline or an interrupt cancels it.

    Cancelling from here (rather than raising inside the progress callback, which fires in
    the middle of an HTTP body and makes botocore retry the part) stops new parts at once and
    aborts the multipart upload, so no orphaned parts are left to pay for.
    """
    from boto3.s3.transfer import ProgressCallbackInvoker, create_transfer_manager

    manager = create_transfer_manager(client, transfer_config())
    stopped: str | None = None
    try:
        future = start(manager, [ProgressCallbackInvoker(progress)])
        while not future.done():
            if ctx.deadline is not None and time.monotonic() >= ctx.deadline:
                stopped = "timed_out"
            elif ctx.cancel.is_set():
                stopped = "cancelled"
            if stopped:
                future.cancel()
                break
            ctx.cancel.wait(0.1)
        if not stopped:
            future.result()  # raises the transfer's error (a ClientError with its code)
    finally:
        manager.shutdown(cancel=stopped is not None)
    if stopped:
        raise TransferStopped(stopped)
    progress.finish()


def transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD)


