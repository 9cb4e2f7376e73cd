"""The s3 executor against a moto S3 server on loopback (tests/servers/s3.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.errors import ProcedureError
from engine.execution.events import Event, StepProgress
from engine.executors.base import Effect
from engine.executors.s3 import S3Executor, S3Options
from tests.servers.s3 import S3Server

MiB = 1024 * 1024


def write(tmp_path: Path, body: str, *, server: S3Server, bucket: str, extra_conn: str = "") -> Path:
    text = ("procedure: s3-test\nconnections:\n"
            f"  store: {{s3: {{bucket: {bucket}, endpoint_url: '{server.endpoint_url}', region: us-east-1"
            f"{extra_conn}}}}}\n" + textwrap.dedent(body))
    path = tmp_path / "proc.yml"
    path.write_text(text)
    return path


def run(tmp_path: Path, body: str, *, server: S3Server, bucket: str, extra_conn: str = "",
        **options: Any) -> engine.RunResult:
    path = write(tmp_path, body, server=server, bucket=bucket, extra_conn=extra_conn)
    return engine.run(path, state=f"sqlite:///{tmp_path}/state.db", **options)


def keys(server: S3Server, bucket: str) -> list[str]:
    return [o["Key"] for o in server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


# ---------------------------------------------------------------- options and effect


def test_effect() -> None:
    ex = S3Executor()
    assert ex.effect(S3Options(op="list")) == Effect.READ
    assert ex.effect(S3Options(op="head", key="k")) == Effect.READ
    assert ex.effect(S3Options(op="get", key="k", file="f")) == Effect.READ
    assert ex.effect(S3Options(op="put", key="k", file="f")) == Effect.WRITE
    assert ex.effect(S3Options(op="copy", key="k", source="s3://b/k")) == Effect.WRITE
    assert ex.effect(S3Options(op="delete", key="k")) == Effect.WRITE


@pytest.mark.parametrize(("step", "message"), [
    ("s3: {op: list, key: x}", "op list does not take key"),
    ("s3: {op: put, key: x}", "op put needs 'file'"),
    ("s3: {op: head}", "op head needs 'key'"),
    ("s3: {op: copy, key: x}", "op copy needs 'source"),
    ("s3: {op: copy, key: x, source: 's3://a/b', source_key: c}", "either 'source"),
    ("s3: {op: move, key: x}", "op"),
    ("s3: {op: list, max_keys: 0}", "max_keys"),
])
def test_options_are_checked_when_loading(tmp_path: Path, step: str, message: str) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(f"procedure: bad\nsteps:\n  - id: s\n    {step}\n")
    with pytest.raises(ProcedureError) as info:
        engine.load(path)
    assert message in str(info.value)
    assert "bad.yml:4" in str(info.value)


def test_loading_does_not_import_boto3(tmp_path: Path) -> None:
    path = tmp_path / "p.yml"
    path.write_text("procedure: p\nconnections:\n  store: {s3: {bucket: b}}\n"
                    "steps:\n  - id: s\n    s3: {op: list, prefix: x/}\n")
    code = ("import sys, engine; engine.load(sys.argv[1]); "
            "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'boto3 imported'")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=Path(engine.__file__).parent.parent)


# ---------------------------------------------------------------- real calls


def test_put_head_list_get_delete(tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "report.json").write_text('{"rows": 3}')
    result = run(tmp_path, """
        params:
          day: {type: str, default: "2024-05-01"}
        steps:
          - id: put
            s3: {op: put, key: "reports/{{ params.day }}.json", file: data/report.json}
          - id: head
            s3: {op: head, key: "reports/{{ params.day }}.json"}
          - id: same
            assert: steps.head.exists and steps.head.etag == steps.put.etag and steps.head.size == 11
          - id: list
            s3: {op: list, prefix: reports/}
          - id: get
            s3: {op: get, key: "{{ steps.list.objects[0].key }}", file: out/copy.json}
          - id: text
            s3: {op: get, key: "reports/{{ params.day }}.json"}
          - id: delete
            s3: {op: delete, key: "reports/{{ params.day }}.json"}
          - id: gone
            s3: {op: head, key: "reports/{{ params.day }}.json"}
    """, server=s3_server, bucket=s3_bucket)
    assert result.status == "ok", result.error
    steps = result.steps
    put = steps["put"].fields
    assert put["bucket"] == s3_bucket and put["key"] == "reports/2024-05-01.json" and put["size"] == 11
    assert put["etag"] == hashlib.md5(b'{"rows": 3}').hexdigest()  # quotes stripped
    assert steps["head"].fields["content_type"] == "application/json"  # guessed from the file name
    listed = steps["list"].fields
    assert [o["key"] for o in listed["objects"]] == ["reports/2024-05-01.json"]
    assert set(listed["objects"][0]) == {"key", "size", "etag", "last_modified"}
    assert listed["count"] == 1 and listed["truncated"] is False
    assert (tmp_path / "out" / "copy.json").read_text() == '{"rows": 3}'
    assert steps["get"].fields["file"] == str(tmp_path / "out" / "copy.json")
    assert steps["text"].fields["json"] == {"rows": 3}
    assert steps["delete"].fields["existed"] is True
    assert steps["gone"].status == "ok" and steps["gone"].fields["exists"] is False
    assert keys(s3_server, s3_bucket) == []
    json.dumps(result.to_json())  # every field is JSON (dates as ISO text)


def test_head_of_a_missing_key_is_ok_with_exists_false(tmp_path: Path, s3_server: S3Server,
                                                        s3_bucket: str) -> None:
    result = run(tmp_path, """
        steps:
          - id: marker
            s3: {op: head, key: does/not/exist}
          - id: first_time
            when: not steps.marker.exists
            assert: "true"
    """, server=s3_server, bucket=s3_bucket)
    assert result.status == "ok", result.error
    assert result.steps["marker"].fields["exists"] is False
    assert result.steps["first_time"].status == "ok"


def test_copy_with_source_url_and_source_key(tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> None:
    s3_server.client().put_object(Bucket=s3_bucket, Key="a.txt", Body=b"hello")
    result = run(tmp_path, f"""
        steps:
          - id: by_url
            s3: {{op: copy, source: "s3://{s3_bucket}/a.txt", key: b.txt}}
          - id: by_key
            s3: {{op: copy, source_key: b.txt, key: c.txt, content_type: text/x-test}}
    """, server=s3_server, bucket=s3_bucket)
    assert result.status == "ok", result.error
    assert result.steps["by_url"].fields["source"] == f"s3://{s3_bucket}/a.txt"
    assert sorted(keys(s3_server, s3_bucket)) == ["a.txt", "b.txt", "c.txt"]
    head = s3_server.client().head_object(Bucket=s3_bucket, Key="c.txt")
    assert head["ContentType"] == "text/x-test"


def test_dry_run_sends_no_write_but_runs_reads(tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key="keep.txt", Body=b"keep me")
    (tmp_path / "new.txt").write_text("new")
    result = run(tmp_path, f"""
        steps:
          - id: list
            s3: list
          - id: head
            s3: {{op: head, key: keep.txt}}
          - id: put
            s3: {{op: put, key: new.txt, file: new.txt}}
          - id: overwrite
            s3: {{op: put, key: keep.txt, file: not-yet-dumped.sql}}
          - id: copy
            s3: {{op: copy, source: "s3://{s3_bucket}/keep.txt", key: copied.txt}}
          - id: delete
            s3: {{op: delete, key: keep.txt}}
    """, server=s3_server, bucket=s3_bucket, dry_run=True)
    assert result.status == "planned", result.error
    steps = result.steps
    assert steps["list"].status == "ok" and [o["key"] for o in steps["list"].fields["objects"]] == ["keep.txt"]
    assert steps["head"].status == "ok" and steps["head"].fields["size"] == 7
    for sid in ("put", "overwrite", "copy", "delete"):
        assert steps[sid].status == "planned", (sid, steps[sid].error)
    assert steps["put"].fields["would"] == "create" and steps["put"].fields["file_exists"] is True
    # a file an earlier (planned) step would create is reported, not a failure of the dry run
    assert steps["overwrite"].fields["would"] == "replace" and steps["overwrite"].fields["file_exists"] is False
    assert steps["copy"].fields["source_exists"] is True
    assert steps["delete"].fields["would"] == "delete"
    assert keys(s3_server, s3_bucket) == ["keep.txt"]
    assert client.get_object(Bucket=s3_bucket, Key="keep.txt")["Body"].read() == b"keep me"


def test_offline_dry_run_touches_nothing(tmp_path: Path) -> None:
    s3_bucket = "offline-bucket"
    path = tmp_path / "p.yml"
    path.write_text(textwrap.dedent(f"""
        procedure: offline
        connections:
          store: {{s3: {{bucket: {s3_bucket}, endpoint_url: 'http://127.0.0.1:9'}}}}
        steps:
          - id: list
            s3: {{op: list, prefix: a/}}
          - id: put
            s3: {{op: put, key: a/x, file: x}}
    """))
    result = engine.run(path, dry_run=True, offline=True, state=f"sqlite:///{tmp_path}/state.db")
    assert result.status == "planned"
    assert result.steps["put"].description == f"s3 put x -> s3://{s3_bucket}/a/x"
    assert result.steps["list"].description == f"s3 list s3://{s3_bucket}/a/"


def test_multipart_upload_reports_progress_and_round_trips(tmp_path: Path, s3_server: S3Server,
                                                           s3_bucket: str) -> None:
    data = os.urandom(20 * MiB + 12345)
    (tmp_path / "big.bin").write_bytes(data)
    events: list[Event] = []
    result = run(tmp_path, """
        steps:
          - id: up
            s3: {op: put, key: backups/big.bin, file: big.bin}
          - id: down
            s3: {op: get, key: backups/big.bin, file: restored/big.bin}
    """, server=s3_server, bucket=s3_bucket, on_event=events.append)
    assert result.status == "ok", result.error
    up = result.steps["up"].fields
    assert up["size"] == len(data)
    assert up["etag"].endswith("-3")  # three 8 MiB parts: a multipart upload's ETag
    assert (tmp_path / "restored" / "big.bin").read_bytes() == data
    progress = [e.message for e in events if isinstance(e, StepProgress)]
    assert "uploading 20.0 MiB in parts of 8 MiB" in progress
    assert "uploaded 20.0 of 20.0 MiB (100%)" in progress
    assert "downloaded 20.0 of 20.0 MiB (100%)" in progress
    assert all(e.step_id in ("up", "down") for e in events if isinstance(e, StepProgress))


def test_credentials_source_reported_and_secret_never_shown(tmp_path: Path, s3_server: S3Server,
                                                            s3_bucket: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLEKEYID1234")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY")
    (tmp_path / "x.txt").write_text("x")
    events: list[Event] = []
    result = run(tmp_path, """
        steps:
          - id: put
            s3: {op: put, key: x.txt, file: x.txt}
          - id: missing_bucket
            s3: {op: put, bucket: no-such-bucket-here, key: x.txt, file: x.txt}
    """, server=s3_server, bucket=s3_bucket, on_event=events.append)
    assert result.steps["put"].status == "ok"
    failed = result.steps["missing_bucket"]
    assert failed.status == "failed"
    assert "NoSuchBucket" in (failed.error or "")
    messages = [e.message for e in events if isinstance(e, StepProgress)]
    assert "credentials: env" in messages
    text = json.dumps(result.to_json()) + json.dumps(messages)
    assert "wJalrXUtnFEMI" not in text
    assert "AKIDEXAMPLEKEYID1234" not in text


def test_profile_credentials_name_the_shared_file(tmp_path: Path, s3_server: S3Server, s3_bucket: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "credentials"
    creds.write_text("[ops]\naws_access_key_id = AKIDOPS\naws_secret_access_key = opsSecretValue123\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    events: list[Event] = []
    result = run(tmp_path, """
        steps:
          - id: list
            s3: {op: list}
    """, server=s3_server, bucket=s3_bucket, extra_conn=", profile: ops", on_event=events.append)
    assert result.status == "ok", result.error
    assert "credentials: shared-credentials-file" in [e.message for e in events if isinstance(e, StepProgress)]
    assert "opsSecretValue123" not in json.dumps(result.to_json())


def test_get_of_a_missing_object_fails(tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> None:
    result = run(tmp_path, """
        steps:
          - id: get
            s3: {op: get, key: nope.txt, file: nope.txt}
    """, server=s3_server, bucket=s3_bucket)
    assert result.steps["get"].status == "failed"
    assert "no such object" in (result.steps["get"].error or "")
    assert not (tmp_path / "nope.txt").exists()


def test_list_is_capped_by_max_keys(tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    for i in range(5):
        client.put_object(Bucket=s3_bucket, Key=f"logs/{i}.txt", Body=b"x" * i)
    result = run(tmp_path, """
        steps:
          - id: some
            s3: {op: list, prefix: logs/, max_keys: 3}
          - id: all
            s3: {op: list, prefix: logs/}
    """, server=s3_server, bucket=s3_bucket)
    assert result.status == "ok", result.error
    assert result.steps["some"].fields["count"] == 3 and result.steps["some"].fields["truncated"] is True
    assert result.steps["all"].fields["count"] == 5 and result.steps["all"].fields["size"] == 10


def test_bucket_from_the_step_and_an_unreachable_endpoint(tmp_path: Path, aws_env: dict[str, str]) -> None:
    """Credentials are there (aws_env; not left to whichever test this worker ran before): what
    fails is reaching the endpoint, an environment failure, in runproc's words first."""
    path = tmp_path / "p.yml"
    path.write_text(textwrap.dedent("""
        procedure: unreachable
        connections:
          store: {s3: {endpoint_url: 'http://127.0.0.1:9', region: us-east-1}}
        steps:
          - id: nobucket
            s3: {op: list}
            continue_on_error: true
          - id: list
            s3: {op: list, bucket: somewhere}
            timeout: 30s
    """))
    result = engine.run(path, state=f"sqlite:///{tmp_path}/state.db")
    assert "no bucket" in (result.steps["nobucket"].error or "")
    assert result.steps["list"].status == "failed"
    failed = result.steps["list"]
    assert failed.error_kind == "environment", failed.error
    assert (failed.error or "").startswith("s3 list s3://somewhere/: "), failed.error


def test_a_transfer_past_its_deadline_is_aborted(tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> None:
    import time

    from engine.execution.resources import Resources
    from engine.executors.base import StepContext
    from engine.format.model import S3Connection

    (tmp_path / "big.bin").write_bytes(os.urandom(17 * MiB))
    resources = Resources()
    conn = S3Connection(bucket=s3_bucket, endpoint_url=s3_server.endpoint_url, region="us-east-1")
    ctx = StepContext(step_id="up", workdir=tmp_path, deadline=time.monotonic() - 1,
                      connections={"store": conn}, resources=resources)
    try:
        res = S3Executor().execute(S3Options(op="put", key="big.bin", file="big.bin"), ctx)
        assert not res.ok and res.timed_out, res
        assert "transfer aborted" in (res.error or "")
        ctx.deadline = None
        ctx.cancel.set()
        res = S3Executor().execute(S3Options(op="put", key="big.bin", file="big.bin"), ctx)
        assert not res.ok and res.cancelled, res
    finally:
        resources.close_all()
    assert keys(s3_server, s3_bucket) == []
    assert not s3_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")


def test_an_unknown_profile_is_the_step_error(tmp_path: Path, s3_server: S3Server, s3_bucket: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    result = run(tmp_path, """
        params:
          key: {type: str, default: ""}
        steps:
          - id: list
            s3: {op: list}
            continue_on_error: true
          - id: empty_key
            s3: {op: head, key: "{{ params.key }}"}
    """, server=s3_server, bucket=s3_bucket, extra_conn=", profile: nobody")
    assert result.steps["list"].status == "failed"
    assert "nobody" in (result.steps["list"].error or "") and "could not be found" in (result.steps["list"].error or "")
    assert "'key' rendered to an empty string" in (result.steps["empty_key"].error or "")


def test_dry_run_get_to_a_file_writes_nothing_locally(tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> None:
    s3_server.client().put_object(Bucket=s3_bucket, Key="dump.sql", Body=b"select 1;")
    (tmp_path / "restore").mkdir()
    (tmp_path / "restore" / "dump.sql").write_text("the local copy an operator still needs")
    result = run(tmp_path, """
        steps:
          - id: fetch
            s3: {op: get, key: dump.sql, file: restore/dump.sql}
          - id: elsewhere
            s3: {op: get, key: dump.sql, file: new/dump.sql}
    """, server=s3_server, bucket=s3_bucket, dry_run=True)
    assert result.steps["fetch"].status == "planned", result.steps["fetch"].error
    assert any("would download 9 bytes" in n for n in result.steps["fetch"].notes)
    assert (tmp_path / "restore" / "dump.sql").read_text() == "the local copy an operator still needs"
    assert not (tmp_path / "new").exists()
