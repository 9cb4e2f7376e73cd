"""The s3 executor's client side: opening a boto3 client for a connection (credentials named,
never shown; no metadata service for a local endpoint), and transfers with progress and
cancellation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import Cancelled
from ..format.model import S3Connection
from .awsclient import open_session, option_text
from .base import StepContext

__all__ = ["MULTIPART_THRESHOLD", "MiB", "Progress", "S3Client", "TransferStopped", "open_client",
           "option_text", "s3_connection", "transfer", "transfer_config"]

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
    # the session (credentials, no metadata service for a local endpoint, retries and
    # timeouts) is the one the aws executor uses too
    aws = open_session(profile=option_text(ctx, conn.profile), region=option_text(ctx, conn.region),
                       endpoint_url=option_text(ctx, conn.endpoint_url))
    return S3Client(aws.client("s3"), aws.credentials)


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


