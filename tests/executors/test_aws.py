"""The aws executor against moto's server on loopback (tests/servers/aws.py).

Route 53 (a failover record change and its rollback), RDS (snapshots described in a dry
run), S3 (a paginated listing), STS (the account guard, masked credentials); the CLI for
what a user meets there: a bad service or operation (exit 2 before anything runs) and a
refusal by the account guard (exit 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.errors import ProcedureError
from engine.executors.aws import AwsExecutor, AwsOptions
from engine.executors.base import Effect, StepContext
from tests.servers.aws import AwsServer, aws_server_fixture  # noqa: F401 - the aws_server fixture
from tests.servers.s3 import S3Server

ROOT = Path(engine.__file__).parent.parent
RECORD = "api.unjucks.example."


def write(tmp_path: Path, body: str, name: str = "proc.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def run(tmp_path: Path, body: str, **options: Any) -> engine.RunResult:
    return engine.run(write(tmp_path, body), state=f"sqlite:///{tmp_path}/state.db", **options)


def cli(args: list[str], server: AwsServer, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **server.env(), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------- a Route 53 zone with failover records


def failover_zone(server: AwsServer) -> str:
    """A fresh zone with api.unjucks.example. as a PRIMARY (10.0.0.1) / SECONDARY (10.9.0.1) pair."""
    r53 = server.client("route53")
    # Route 53 allows several zones of one name: each test has its own
    zone = r53.create_hosted_zone(Name="unjucks.example.", CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]
    changes = [{"Action": "CREATE", "ResourceRecordSet": {
        "Name": RECORD, "Type": "A", "SetIdentifier": ident, "Failover": role, "TTL": 60,
        "ResourceRecords": [{"Value": ip}]}} for ident, role, ip in
        (("primary", "PRIMARY", "10.0.0.1"), ("secondary", "SECONDARY", "10.9.0.1"))]
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})
    return str(zone)


def primary_ip(server: AwsServer, zone: str, name: str = RECORD) -> str:
    sets = server.client("route53").list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    (primary,) = [s for s in sets if s.get("Failover") == "PRIMARY" and s["Name"] == name]
    return str(primary["ResourceRecords"][0]["Value"])


FAILOVER = """
    procedure: dns-failover
    params:
      zone: {type: str}
      dr_ip: {type: str, default: 10.9.0.1}
    steps:
      - id: old
        name: the primary record as it is
        aws:
          op: route53.list_resource_record_sets
          args: {HostedZoneId: "{{ params.zone }}", StartRecordName: api.unjucks.example., StartRecordType: A}
      - id: failover
        name: point the primary record at the DR site
        aws:
          service: route53
          op: ChangeResourceRecordSets
          account: 123456789012
          args:
            HostedZoneId: "{{ params.zone }}"
            ChangeBatch:
              Comment: failover to DR
              Changes:
                - Action: UPSERT
                  ResourceRecordSet:
                    Name: api.unjucks.example.
                    Type: A
                    SetIdentifier: primary
                    Failover: PRIMARY
                    TTL: 60
                    ResourceRecords: [{Value: "{{ params.dr_ip }}"}]
        verify:
          - aws:
              op: route53.list_resource_record_sets
              args: {HostedZoneId: "{{ params.zone }}", StartRecordName: api.unjucks.example., StartRecordType: A}
            expect: >-
              (result.ResourceRecordSets | selectattr('Failover', 'equalto', 'PRIMARY') | first)
              .ResourceRecords[0].Value == params.dr_ip
        rollback:
          aws:
            op: route53.change_resource_record_sets
            account: 123456789012
            args:
              HostedZoneId: "{{ params.zone }}"
              ChangeBatch:
                Comment: back to the primary site
                Changes:
                  - Action: UPSERT
                    ResourceRecordSet: "{{ steps.old.ResourceRecordSets | selectattr('Failover', 'equalto', 'PRIMARY') | first }}"
"""


# ---------------------------------------------------------------- options, effect, loading


def test_effect_is_told_by_the_operation_name() -> None:
    ex = AwsExecutor()

    def effect(op: str, **kw: Any) -> Effect:
        return ex.effect(AwsOptions(op=op, **kw))

    assert effect("s3.list_buckets") == Effect.READ
    assert effect("ListBuckets", service="s3") == Effect.READ
    assert effect("rds.describe_db_snapshots") == Effect.READ
    assert effect("s3.head_object") == Effect.READ
    assert effect("dynamodb.batch_get_item") == Effect.READ
    assert effect("route53.change_resource_record_sets") == Effect.WRITE
    assert effect("s3.put_object") == Effect.WRITE
    assert effect("sqs.receive_message") == Effect.WRITE  # hides the message it receives
    assert effect("cognito-identity.get_id") == Effect.WRITE  # creates the identity it returns


@pytest.mark.parametrize(("step", "where", "message"), [
    ("aws: {service: rout53, op: list_hosted_zones}", ":4:20", "did you mean 'route53'"),
    ("aws: {service: route53, op: list_hosted_zone}", ":4:33", "did you mean 'list_hosted_zones'"),
    ("aws: {service: route53, op: ListHostedZone}", ":4:33", "did you mean 'ListHostedZones'"),
    ("aws: {op: route53.get_hosted_zone, args: {ID: x}}", ":4:46", "did you mean 'Id'"),
    ("aws: {op: list_buckets}", ":4:15", "name the service"),
    ("aws: {op: '{{ params.op }}', service: s3}", ":4:15", "cannot be a template"),
    ("aws: {op: sts.get_caller_identity, account: 1234}", ":4:49", "12-digit"),
    ("aws: {op: sts.get_caller_identity, account: 'acct-1'}", ":4:49", "12-digit"),
    ("aws: {op: sts.get_caller_identity, args: {Account: x}}", ":4:46", "takes no arguments"),
])
def test_options_are_checked_when_loading(tmp_path: Path, step: str, where: str, message: str) -> None:
    path = write(tmp_path, f"procedure: bad\nsteps:\n  - id: s\n    {step}\n", "bad.yml")
    with pytest.raises(ProcedureError) as info:
        engine.load(path)
    assert f"bad.yml{where}" in str(info.value)
    assert message in str(info.value)


def test_loading_does_not_start_boto3(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: p
        steps:
          - id: s
            aws: {op: rds.describe_db_snapshots, args: {DBInstanceIdentifier: db}}
    """)
    code = ("import sys, engine; engine.load(sys.argv[1]); "
            "heavy = [m for m in ('boto3', 'botocore.session', 'botocore.client') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=ROOT)


# ---------------------------------------------------------------- Route 53: a failover and its undo


def test_route53_failover_change_then_rollback_restores_the_record(tmp_path: Path, aws_server: AwsServer) -> None:
    zone = failover_zone(aws_server)
    result = run(tmp_path, FAILOVER + """
      - id: smoke
        name: the DR site answers
        assert: "false"
        message: DR health check failed
    """, params={"zone": zone})
    assert result.status == "failed" and result.root_cause == "smoke"
    steps = result.steps
    old = steps["old"].fields
    assert [s["SetIdentifier"] for s in old["ResourceRecordSets"]] == ["primary", "secondary"]
    assert old["ResponseMetadata"]["Pages"] == 1 and old["ResponseMetadata"]["RequestId"]
    failover = steps["failover"]
    assert failover.fields["ChangeInfo"]["Status"] == "INSYNC"
    assert failover.fields["ChangeInfo"]["SubmittedAt"].startswith("20")  # a date, as ISO text
    assert failover.rollback is not None and failover.rollback.status == "ok", failover.rollback
    assert result.rolled_back == ["failover"]
    assert primary_ip(aws_server, zone) == "10.0.0.1"
    json.dumps(result.to_json())


def test_route53_failover_that_succeeds_keeps_the_change(tmp_path: Path, aws_server: AwsServer) -> None:
    zone = failover_zone(aws_server)
    result = run(tmp_path, FAILOVER, params={"zone": zone})
    assert result.status == "ok", result.error
    assert primary_ip(aws_server, zone) == "10.9.0.1"


def test_the_documented_example_runs(tmp_path: Path, aws_server: AwsServer) -> None:
    """examples/aws (docs/executors/aws.md): the setup, a failover undone because the DR site
    does not answer, then one that stays."""
    domain = f"ex{uuid.uuid4().hex[:8]}.example"  # its own zone, found by name
    state = f"sqlite:///{tmp_path}/state.db"
    setup = engine.run(ROOT / "examples/aws/moto-setup.yml", params={"domain": domain}, state=state)
    assert setup.status == "ok", setup.error
    zone = str(setup.steps["zone"].fields["HostedZone"]["Id"])
    example = ROOT / "examples/aws/dns-failover.yml"
    undone = engine.run(example, params={"domain": domain, "dr_health_url": "http://127.0.0.1:9/health"},
                        state=state)
    assert undone.status == "failed" and undone.rolled_back == ["failover"], undone.error
    assert primary_ip(aws_server, zone, f"api.{domain}.") == "10.0.0.1"
    done = engine.run(example, params={"domain": domain}, state=state)
    assert done.status == "ok", done.error
    assert primary_ip(aws_server, zone, f"api.{domain}.") == "10.9.0.1"


# ---------------------------------------------------------------- a dry run


def test_dry_run_runs_reads_and_plans_writes_without_sending_them(tmp_path: Path, aws_server: AwsServer,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_TEST_CANARY", "canaryTagValue")
    rds = aws_server.client("rds")
    db = f"db{uuid.uuid4().hex[:8]}"
    rds.create_db_instance(DBInstanceIdentifier=db, DBInstanceClass="db.t3.micro", Engine="postgres",
                           MasterUsername="app", MasterUserPassword="initialPassw0rd", AllocatedStorage=20)
    rds.create_db_snapshot(DBSnapshotIdentifier=f"{db}-before", DBInstanceIdentifier=db)
    zone = failover_zone(aws_server)
    result = run(tmp_path, FAILOVER + f"""
      - id: snapshots
        needs: []
        aws: {{op: rds.describe_db_snapshots, args: {{DBInstanceIdentifier: {db}}}}}
      - id: restore
        aws:
          op: rds.restore_db_instance_from_db_snapshot
          args:
            DBInstanceIdentifier: {db}-restored
            DBSnapshotIdentifier: "{{{{ steps.snapshots.DBSnapshots[-1].DBSnapshotIdentifier }}}}"
      - id: replica_password
        needs: []
        aws:
          op: rds.create_db_instance
          args: {{DBInstanceIdentifier: {db}-new, DBInstanceClass: db.t3.micro, Engine: postgres,
                 MasterUsername: app, MasterUserPassword: s3cretRehearsalPw, AllocatedStorage: 20,
                 Tags: [{{Key: owner, Value: "{{{{ secrets.canary }}}}"}}]}}
    secrets:
      canary: {{env: AWS_TEST_CANARY}}
    """, params={"zone": zone}, dry_run=True)
    assert result.status == "planned", result.error
    steps = result.steps
    # reads ran against moto
    assert steps["old"].status == "ok" and len(steps["old"].fields["ResourceRecordSets"]) == 2
    snaps = steps["snapshots"]
    assert snaps.status == "ok"
    assert f"{db}-before" in [s["DBSnapshotIdentifier"] for s in snaps.fields["DBSnapshots"]]
    # writes were planned, with the call shown
    failover = steps["failover"]
    assert failover.status == "planned"
    assert failover.description.startswith("aws route53 change_resource_record_sets {")
    assert '"Value": "10.9.0.1"' in failover.description and "(account 123456789012)" in failover.description
    assert any("not sent" in n for n in failover.notes)
    assert steps["restore"].status == "planned"
    assert f'"DBSnapshotIdentifier": "{snaps.fields["DBSnapshots"][-1]["DBSnapshotIdentifier"]}"' \
        in steps["restore"].description
    shown = steps["replica_password"].description
    assert '"MasterUserPassword": "***"' in shown  # the model marks it sensitive
    assert steps["replica_password"].status == "planned", steps["replica_password"].error
    text = json.dumps(result.to_json())
    assert "s3cretRehearsalPw" not in text and "canaryTagValue" not in text  # a secret: redacted
    # and nothing changed
    assert primary_ip(aws_server, zone) == "10.0.0.1"
    instances = [d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]]
    assert db in instances and f"{db}-restored" not in instances and f"{db}-new" not in instances


def test_a_dry_run_rehearsal_catches_a_parameter_botocore_would_refuse(tmp_path: Path,
                                                                       aws_server: AwsServer) -> None:
    result = run(tmp_path, """
        procedure: p
        steps:
          - id: zone
            aws: {op: route53.create_hosted_zone, args: {Name: rehearsal.example., CallerReference: 42}}
    """, dry_run=True)
    zone = result.steps["zone"]
    assert zone.status == "failed"
    assert zone.error is not None and "\n" not in zone.error
    assert zone.error.startswith("aws route53 create_hosted_zone: ") and "CallerReference" in zone.error
    names = [z["Name"] for z in aws_server.client("route53").list_hosted_zones()["HostedZones"]]
    assert "rehearsal.example." not in names


# ---------------------------------------------------------------- S3: pages merged


def test_s3_list_objects_v2_pages_are_merged(tmp_path: Path, aws_server: AwsServer, s3_server: S3Server,
                                              s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = aws_server.client("s3")
    for i in range(25):
        client.put_object(Bucket=s3_bucket, Key=f"logs/{i:02d}.txt", Body=b"x" * i)
    # the endpoint from an s3 connection this time, not the environment
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    result = run(tmp_path, f"""
        procedure: pages
        connections:
          store: {{s3: {{endpoint_url: "{s3_server.endpoint_url}", region: us-east-1}}}}
        steps:
          - id: all
            aws: {{op: s3.list_objects_v2, connection: store, args: {{Bucket: {s3_bucket}, MaxKeys: 4}}}}
          - id: first_ten
            aws: {{op: s3.list_objects_v2, connection: store, max_items: 10, args: {{Bucket: {s3_bucket}, MaxKeys: 4}}}}
          - id: one_page
            aws: {{op: s3.list_objects_v2, connection: store, paginate: false, args: {{Bucket: {s3_bucket}, MaxKeys: 4}}}}
          - id: none
            aws: {{op: s3.list_objects_v2, connection: store, args: {{Bucket: {s3_bucket}, Prefix: nothing/}}}}
          - id: counted
            assert:
              - steps.all.Contents | length == 25
              - steps.none.Contents | length == 0
    """)
    assert result.status == "ok", result.error
    steps = result.steps
    every = steps["all"].fields
    assert [o["Key"] for o in every["Contents"]] == [f"logs/{i:02d}.txt" for i in range(25)]
    assert every["ResponseMetadata"]["Pages"] == 7  # 4 keys a page
    assert "NextToken" not in every
    first = steps["first_ten"].fields
    assert len(first["Contents"]) == 10 and first["NextToken"]  # where to go on from
    page = steps["one_page"].fields
    assert len(page["Contents"]) == 4 and page["IsTruncated"] is True and page["ResponseMetadata"]["Pages"] == 1


# ---------------------------------------------------------------- errors and secrets


def test_a_service_error_is_one_line_with_code_message_and_request_id(tmp_path: Path,
                                                                      aws_server: AwsServer) -> None:
    result = run(tmp_path, """
        procedure: p
        steps:
          - id: zone
            aws: {op: route53.get_hosted_zone, args: {Id: ZNOSUCHZONE}}
            continue_on_error: true
          - id: typed
            aws: {op: s3.list_objects_v2, args: {Bucket: b, MaxKeys: "many"}}
    """)
    zone = result.steps["zone"]
    assert zone.status == "failed" and zone.error_kind == "assertion"
    error = zone.error or ""
    assert error.startswith("aws route53 get_hosted_zone: NoSuchHostedZone: ") and "\n" not in error
    request_id = zone.fields["ResponseMetadata"]["RequestId"]
    assert request_id and error.endswith(f"(request id {request_id})")
    assert zone.fields["Error"]["Code"] == "NoSuchHostedZone"
    typed = result.steps["typed"].error or ""  # botocore's validation report, several lines long
    assert typed.startswith("aws s3 list_objects_v2: ") and "MaxKeys" in typed and "\n" not in typed


def test_credentials_in_a_response_are_masked(tmp_path: Path, aws_server: AwsServer) -> None:
    result = run(tmp_path, """
        procedure: p
        steps:
          - id: token
            aws: sts.get_session_token
    """)
    assert result.status == "ok", result.error
    creds = result.steps["token"].fields["Credentials"]
    assert creds["SecretAccessKey"] == "***" and creds["SessionToken"] == "***"
    assert creds["AccessKeyId"]  # not a secret: it names the key


def test_a_call_past_its_deadline_is_not_sent(tmp_path: Path, aws_server: AwsServer) -> None:
    ctx = StepContext(step_id="late", workdir=tmp_path, deadline=time.monotonic() - 1)
    name = f"late{uuid.uuid4().hex[:8]}.example."
    res = AwsExecutor().execute(AwsOptions(op="route53.create_hosted_zone",
                                           args={"Name": name, "CallerReference": "late"}), ctx)
    assert not res.ok and res.timed_out and "timed out" in (res.error or "")
    names = [z["Name"] for z in aws_server.client("route53").list_hosted_zones()["HostedZones"]]
    assert name not in names


# ---------------------------------------------------------------- through the CLI


def test_cli_bad_service_and_operation_exit_2_before_anything_runs(tmp_path: Path, aws_server: AwsServer) -> None:
    marker = tmp_path / "ran"
    write(tmp_path, f"""
        procedure: typos
        steps:
          - id: first
            shell: touch {marker}
          - id: zones
            aws: {{service: route53, op: list_hosted_zone}}
          - id: who
            aws: {{op: stss.get_caller_identity}}
    """)
    proc = cli(["proc.yml"], aws_server, tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert any(line.startswith("proc.yml:7:33: ") and "list_hosted_zones" in line for line in lines), lines
    assert any(line.startswith("proc.yml:9:15: ") and "'stss'" in line for line in lines), lines
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not marker.exists()


def test_cli_account_guard_refuses_with_exit_3(tmp_path: Path, aws_server: AwsServer) -> None:
    name = f"guard{uuid.uuid4().hex[:8]}.example."
    write(tmp_path, f"""
        procedure: guarded
        steps:
          - id: zone
            aws:
              op: route53.create_hosted_zone
              account: "111122223333"
              args: {{Name: {name}, CallerReference: guarded}}
    """)
    proc = cli(["proc.yml", "--state", f"sqlite:///{tmp_path}/state.db"], aws_server, tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    refusals = {line.strip() for line in out.splitlines() if "refused: the credentials" in line}
    assert len(refusals) == 1, out  # one line (the console may repeat it as the root cause)
    (refusal,) = refusals
    assert "123456789012" in refusal and "111122223333" in refusal and "nothing was called" in refusal
    assert "Traceback" not in out
    names = [z["Name"] for z in aws_server.client("route53").list_hosted_zones()["HostedZones"]]
    assert name not in names
