"""``s3``: list, head, get, put, copy and delete objects on an ``s3`` connection.

boto3 is imported inside functions only: loading a procedure (``runproc validate``) must not
pay for it. One client per connection per run lives in ``ctx.resources``; credentials come
from boto3's normal chain (env, shared files, SSO, instance role) and only the *name* of the
source is reported, never a value.

``get`` writes a local file but changes nothing remote, so it counts as a read and runs in a
dry run, as the format spec says; ``put``, ``copy`` and ``delete`` are writes: a dry run
rehearses them with a ``HEAD`` of the target (and of the source) to show what would be
created, replaced or deleted, and sends no write.
"""

from __future__ import annotations

import mimetypes
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ..format.model import S3Connection
from .base import ASSERTION, ENVIRONMENT, Effect, Executor, Options, Result, StepContext
from .s3client import (
    MULTIPART_THRESHOLD,
    MiB,
    Progress,
    S3Client,
    TransferStopped,
    open_client,
    option_text,
    s3_connection,
    transfer,
)

GET_TEXT_LIMIT = 1 * MiB  # a get without `file` returns the body as text up to this size

Op = Literal["list", "head", "get", "put", "copy", "delete"]

# which options each op takes; anything else is a load-time error rather than silently ignored
_ALLOWED: dict[str, frozenset[str]] = {
    "list": frozenset({"bucket", "prefix", "max_keys"}),
    "head": frozenset({"bucket", "key"}),
    "get": frozenset({"bucket", "key", "file"}),
    "put": frozenset({"bucket", "key", "file", "content_type"}),
    "copy": frozenset({"bucket", "key", "source", "source_bucket", "source_key", "content_type"}),
    "delete": frozenset({"bucket", "key"}),
}
_OP_OPTIONS = frozenset().union(*_ALLOWED.values())


class S3Options(Options):
    op: Op
    bucket: str | None = None
    key: str | None = None
    prefix: str | None = None
    file: str | None = None
    source: str | None = None
    source_bucket: str | None = None
    source_key: str | None = None
    connection: str | None = None
    max_keys: int | None = Field(None, ge=1, le=1_000_000)
    content_type: str | None = None

    @model_validator(mode="after")
    def _fits_op(self) -> S3Options:
        given = {name for name in _OP_OPTIONS if getattr(self, name) is not None}
        extra = sorted(given - _ALLOWED[self.op])
        if extra:
            raise ValueError(f"op {self.op} does not take {', '.join(extra)} "
                             f"(it takes {', '.join(sorted(_ALLOWED[self.op]))})")
        if self.op != "list" and self.key is None:
            raise ValueError(f"op {self.op} needs 'key'")
        if self.op == "put" and self.file is None:
            raise ValueError("op put needs 'file' (the local file to upload)")
        if self.op == "copy":
            if self.source is not None and (self.source_bucket or self.source_key):
                raise ValueError("give either 'source: s3://bucket/key' or 'source_bucket'/'source_key'")
            if self.source is None and self.source_key is None:
                raise ValueError("op copy needs 'source: s3://bucket/key' or 'source_key'")
        return self


# error codes that say the credentials do not work here: the environment, not the data
_CREDENTIAL_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                               "AccessDenied", "AllAccessDisabled"})

# ---------------------------------------------------------------- helpers


def _etag(value: str | None) -> str | None:
    return value.strip('"') if isinstance(value, str) else value


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _missing(exc: Any) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://") or "/" not in url[5:]:
        raise ValueError(f"source must look like s3://bucket/key, got {url!r}")
    bucket, _, key = url[5:].partition("/")
    if not bucket or not key:
        raise ValueError(f"source must look like s3://bucket/key, got {url!r}")
    return bucket, key


@dataclass
class Target:
    bucket: str
    key: str | None
    source: tuple[str, str] | None = None  # copy: (bucket, key)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key or ''}"


# ---------------------------------------------------------------- the executor


class S3Executor(Executor):
    knows_effect = True  # the method / verb / op says whether it writes
    name = "s3"
    main_option = "op"
    Options = S3Options
    connection_kinds = ("s3",)
    result_fields = ("objects", "exists", "size", "etag", "key", "bucket", "file")

    def effect(self, options: S3Options) -> Effect:
        return Effect.READ if options.op in ("list", "head", "get") else Effect.WRITE

    def target(self, options: S3Options, ctx: StepContext, *, strict: bool = True) -> Target:
        try:
            _, conn = s3_connection(options, ctx)
        except ValueError:
            if strict:
                raise
            conn = S3Connection()
        bucket = option_text(ctx, options.bucket) or option_text(ctx, conn.bucket)
        if not bucket:
            if strict:
                raise ValueError("no bucket: set 'bucket' on the step or on its s3 connection")
            bucket = "<no bucket>"
        key = option_text(ctx, options.key)
        if strict and options.op != "list" and not key:
            raise ValueError(f"s3 {options.op}: 'key' rendered to an empty string")
        source = None
        if options.op == "copy":
            if options.source is not None:
                url = option_text(ctx, options.source) or ""
                source = parse_s3_url(url) if strict or url.startswith("s3://") else ("?", url)
            else:
                source = (option_text(ctx, options.source_bucket) or bucket, option_text(ctx, options.source_key) or "")
        return Target(bucket, key, source)

    def describe(self, options: S3Options, ctx: StepContext) -> str:
        # a plan must show something even when the step would fail (no bucket): execute says why
        t = self.target(options, ctx, strict=False)
        if options.op == "list":
            text = f"s3 list s3://{t.bucket}/{option_text(ctx, options.prefix) or ''}"
        elif options.op == "copy" and t.source:
            text = f"s3 copy s3://{t.source[0]}/{t.source[1]} -> {t.url}"
        elif options.op == "put":
            text = f"s3 put {option_text(ctx, options.file)} -> {t.url}"
        elif options.op == "get" and options.file:
            text = f"s3 get {t.url} -> {option_text(ctx, options.file)}"
        else:
            text = f"s3 {options.op} {t.url}"
        return ctx.redact(text)

    # ------------------------------------------------------------ entry points

    def execute(self, options: S3Options, ctx: StepContext) -> Result:
        return self._call(options, ctx, rehearse=False)

    def rehearse(self, options: S3Options, ctx: StepContext) -> Result | None:
        return self._call(options, ctx, rehearse=True)

    def _call(self, options: S3Options, ctx: StepContext, *, rehearse: bool) -> Result:
        from botocore.exceptions import BotoCoreError, ClientError

        t = self.target(options, ctx)
        name, conn = s3_connection(options, ctx)
        base: dict[str, Any] = {"bucket": t.bucket, "key": t.key}
        try:
            # opening may fail too (an unknown profile): inside the try, it is the step's error
            s3: S3Client = ctx.resources.get(f"s3:{name}", lambda: open_client(conn, ctx),
                                             lambda c: c.client.close())
            ctx.progress(f"credentials: {s3.credentials}")
            if rehearse:
                return self._rehearse(options, ctx, s3.client, t, base)
            op = getattr(self, f"_{options.op}")
            return op(options, ctx, s3.client, t, base)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code, message = err.get("Code", "?"), err.get("Message") or ""
            what = f"s3 {options.op} {t.url}"
            # the server answered; but a refusal of the credentials means the run would fail too
            kind = ENVIRONMENT if code in _CREDENTIAL_CODES else ASSERTION
            return Result(False, base, ctx.redact(f"{what}: {code}{': ' + message if message else ''}"),
                          error_kind=kind)
        except TransferStopped as exc:
            if str(exc) == "timed_out":
                return Result(False, base, f"s3 {options.op} {t.url}: timed out; transfer aborted",
                              timed_out=True)
            return Result(False, base, f"s3 {options.op} {t.url}: interrupted; transfer aborted",
                          cancelled=True)
        except BotoCoreError as exc:  # no credentials, endpoint unreachable, bad parameter
            import botocore.exceptions as bx

            # what a real run would meet too: no usable credentials or profile, no region, an
            # endpoint that cannot be reached (refused, no name, TLS, proxy, connect timeout);
            # a bad parameter or a read timeout says nothing about the environment
            broken = isinstance(exc, bx.ConnectionError | bx.NoCredentialsError | bx.PartialCredentialsError
                                | bx.ProfileNotFound | bx.CredentialRetrievalError | bx.NoRegionError
                                | bx.SSOError | bx.TokenRetrievalError | bx.ConfigNotFound
                                | bx.InvalidConfigError | bx.NoAuthTokenError)
            return Result(False, base, ctx.redact(f"s3 {options.op} {t.url}: {exc}"),
                          error_kind=ENVIRONMENT if broken else None)

    # ------------------------------------------------------------ ops

    def _head_fields(self, client: Any, bucket: str, key: str) -> dict[str, Any]:
        """exists/size/etag/... of an object; a 404 is ``exists: False``, not an error."""
        from botocore.exceptions import ClientError

        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return {"exists": False, "size": None, "etag": None}
            raise
        return {"exists": True, "size": head.get("ContentLength"), "etag": _etag(head.get("ETag")),
                "last_modified": _iso(head.get("LastModified")), "content_type": head.get("ContentType"),
                "metadata": head.get("Metadata") or {}}

    def _list(self, options: S3Options, ctx: StepContext, client: Any, t: Target,
              base: dict[str, Any]) -> Result:
        prefix = option_text(ctx, options.prefix) or ""
        limit = options.max_keys or 1000  # a bucket may hold millions: cap unless asked
        objects: list[dict[str, Any]] = []
        token: str | None = None
        truncated = False
        while True:
            if ctx.cancel.is_set():
                return Result(False, base, "interrupted", cancelled=True)
            if ctx.deadline is not None and time.monotonic() >= ctx.deadline:
                return Result(False, base, "timed out listing", timed_out=True)
            kwargs: dict[str, Any] = {"Bucket": t.bucket, "Prefix": prefix,
                                      "MaxKeys": min(1000, limit - len(objects))}
            if token:
                kwargs["ContinuationToken"] = token
            page = client.list_objects_v2(**kwargs)
            for item in page.get("Contents", []):
                objects.append({"key": item["Key"], "size": item.get("Size"), "etag": _etag(item.get("ETag")),
                                "last_modified": _iso(item.get("LastModified"))})
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
            if len(objects) >= limit:
                truncated = True
                break
        fields = {**base, "key": None, "prefix": prefix, "objects": objects, "count": len(objects),
                  "truncated": truncated, "size": sum(o["size"] or 0 for o in objects)}
        return Result(True, fields)

    def _head(self, options: S3Options, ctx: StepContext, client: Any, t: Target,
              base: dict[str, Any]) -> Result:
        assert t.key is not None
        return Result(True, {**base, **self._head_fields(client, t.bucket, t.key)})

    def _get(self, options: S3Options, ctx: StepContext, client: Any, t: Target,
             base: dict[str, Any]) -> Result:
        from .shell import parse_json

        assert t.key is not None
        head = self._head_fields(client, t.bucket, t.key)
        if not head["exists"]:
            return Result(False, {**base, **head}, f"s3 get {t.url}: no such object")
        if options.file is None:
            if (head["size"] or 0) > GET_TEXT_LIMIT:
                return Result(False, {**base, **head}, f"s3 get {t.url}: {head['size']} bytes is too large "
                              f"to return as text (limit {GET_TEXT_LIMIT}); give 'file' to download it")
            body = client.get_object(Bucket=t.bucket, Key=t.key)["Body"].read()
            text = ctx.redact(body.decode("utf-8", errors="replace"))
            return Result(True, {**base, **head, "text": text, "json": parse_json(text)})
        dest = self._path(options.file, ctx)
        if ctx.dry_run:  # a dry run changes nothing, the local disk included: it only looked
            return Result(True, {**base, **head, "file": str(dest), "file_exists": dest.exists()}, planned=True,
                          note=f"rehearsed by looking at the object: would download {head['size']} bytes to {dest}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        progress = Progress(ctx, "downloaded", head["size"] or 0)
        # the transfer manager writes a temporary file and renames it: no half-written destination
        transfer(ctx, client, progress,
                  lambda tm, subs: tm.download(t.bucket, t.key, str(dest), subscribers=subs))
        return Result(True, {**base, **head, "file": str(dest)})

    def _put(self, options: S3Options, ctx: StepContext, client: Any, t: Target,
             base: dict[str, Any]) -> Result:
        assert t.key is not None and options.file is not None
        src = self._path(options.file, ctx)
        if not src.is_file():
            return Result(False, {**base, "file": str(src)}, f"s3 put: no such file {src}")
        size = src.stat().st_size
        extra: dict[str, str] = {}
        content_type = option_text(ctx, options.content_type) or mimetypes.guess_type(src.name)[0]
        if content_type:
            extra["ContentType"] = content_type
        if size >= MULTIPART_THRESHOLD:
            ctx.progress(f"uploading {size / MiB:.1f} MiB in parts of {MULTIPART_THRESHOLD // MiB} MiB")
        progress = Progress(ctx, "uploaded", size)
        transfer(ctx, client, progress,
                  lambda tm, subs: tm.upload(str(src), t.bucket, t.key, extra_args=extra, subscribers=subs))
        # an upload returns nothing: a HEAD gives the etag the step's result promises
        return Result(True, {**base, **self._head_fields(client, t.bucket, t.key), "file": str(src)})

    def _copy(self, options: S3Options, ctx: StepContext, client: Any, t: Target,
              base: dict[str, Any]) -> Result:
        assert t.key is not None and t.source is not None
        src_bucket, src_key = t.source
        head = self._head_fields(client, src_bucket, src_key)
        if not head["exists"]:
            return Result(False, {**base, "source": f"s3://{src_bucket}/{src_key}"},
                          f"s3 copy: no such source object s3://{src_bucket}/{src_key}")
        extra: dict[str, str] = {}
        content_type = option_text(ctx, options.content_type)
        if content_type:
            extra = {"ContentType": content_type, "MetadataDirective": "REPLACE"}
        progress = Progress(ctx, "copied", head["size"] or 0)
        # the managed copy switches to a multipart copy above the threshold (needed past 5 GiB)
        transfer(ctx, client, progress,
                  lambda tm, subs: tm.copy({"Bucket": src_bucket, "Key": src_key}, t.bucket, t.key,
                                           extra_args=extra, subscribers=subs, source_client=client))
        return Result(True, {**base, **self._head_fields(client, t.bucket, t.key),
                             "source": f"s3://{src_bucket}/{src_key}"})

    def _delete(self, options: S3Options, ctx: StepContext, client: Any, t: Target,
                base: dict[str, Any]) -> Result:
        assert t.key is not None
        # S3 answers 204 whether or not the key existed: a HEAD first makes the result say which
        before = self._head_fields(client, t.bucket, t.key)
        client.delete_object(Bucket=t.bucket, Key=t.key)
        return Result(True, {**base, "existed": before["exists"], "exists": False,
                             "size": before["size"], "etag": before["etag"]})

    def _rehearse(self, options: S3Options, ctx: StepContext, client: Any, t: Target,
                  base: dict[str, Any]) -> Result:
        """A dry run of put/copy/delete: only HEADs, to show what the write would meet.

        A missing local file or source object is reported, not failed: an earlier step that
        the dry run only planned (a pg_dump, an upload) may be what creates it.
        """
        assert t.key is not None
        target = self._head_fields(client, t.bucket, t.key)
        fields: dict[str, Any] = {**base, **target}
        if options.op == "delete":
            fields["would"] = "delete" if target["exists"] else "nothing to delete"
        else:
            fields["would"] = "replace" if target["exists"] else "create"
        if options.op == "put" and options.file is not None:
            src = self._path(options.file, ctx)
            fields["file"] = str(src)
            fields["file_exists"] = src.is_file()
            fields["file_size"] = src.stat().st_size if src.is_file() else None
        if options.op == "copy" and t.source is not None:
            fields["source"] = f"s3://{t.source[0]}/{t.source[1]}"
            fields["source_exists"] = self._head_fields(client, *t.source)["exists"]
        return Result(True, fields, planned=True, note=f"rehearsed by looking at the target: would {fields['would']}")

    @staticmethod
    def _path(file: str, ctx: StepContext) -> Path:
        path = Path(str(ctx.render(file))).expanduser()
        return path if path.is_absolute() else ctx.workdir / path
