"""outage-response's DNS failover (the runbook's Emergency Recovery: "Update DNS to point to DR"),
run for real against Route 53 on moto's server (tests/servers/aws.py): the record is read, changed
through the aws executor with its account guard, and put back by the run's rollback when the
recovery fails after it (the maintenance page cannot come down: a kubeconfig context that does not
exist), by ``rollback_run`` after a run that ended ok, and never touched by a dry run or by another
account's credentials.

Only the failover's steps run (``only``): the rest of the procedure has tests of its own
(tests/notify/test_procedures.py, tests/procedures/test_real_escalation.py).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import engine
from tests.servers.aws import AwsServer, aws_server_fixture  # noqa: F401 - the fixture

PROCEDURE = Path(__file__).resolve().parents[2] / "procedures" / "outage-response.yml"
DNS_STEPS = ["dns_zone", "dns_before", "dns_failover"]
PRIMARY, DR = "10.0.0.10", "10.9.0.7"


@pytest.fixture
def zone(aws_server: AwsServer, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str, str]:
    """A hosted zone of its own (moto's backends are shared by the process) with api.<domain> A PRIMARY."""
    for name in ("PAGERDUTY_ROUTING_KEY", "PAGERDUTY_SECONDARY_ROUTING_KEY", "INCIDENT_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)  # nobody paged
    route53 = aws_server.client("route53")
    domain = f"t{uuid.uuid4().hex[:10]}.example"
    zone_id = route53.create_hosted_zone(Name=f"{domain}.", CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
        "Action": "UPSERT", "ResourceRecordSet": {"Name": f"api.{domain}.", "Type": "A", "TTL": 300,
                                                  "ResourceRecords": [{"Value": PRIMARY}]}}]})
    return route53, zone_id, domain


def _record(route53: Any, zone_id: str, domain: str) -> tuple[str, int]:
    sets = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    [api] = [r for r in sets if r["Name"] == f"api.{domain}." and r["Type"] == "A"]
    return api["ResourceRecords"][0]["Value"], api["TTL"]


def _params(domain: str, account: str, **more: Any) -> dict[str, Any]:
    return {"dr_failover": True, "domain": domain, "dr_ip": DR, "aws_account": account, "kube_context": "absent",
            **more}


def test_the_failover_points_dns_at_dr_and_rollback_run_puts_it_back(zone: Any, aws_server: AwsServer,
                                                                      tmp_path: Path) -> None:
    route53, zone_id, domain = zone
    state = f"sqlite:///{tmp_path}/state.db"
    result = engine.run(PROCEDURE, _params(domain, aws_server.account), only=DNS_STEPS, yes=True, state=state)
    assert result.exit_code == 0, result.error
    assert _record(route53, zone_id, domain) == (DR, 60)
    assert result.steps["dns_before"].fields["ResourceRecordSets"][0]["ResourceRecords"] == [{"Value": PRIMARY}]
    report, code = engine.api.rollback_run(result.run_id, state=state, inflight="again")
    assert code == 0 and report["rolled_back"] == ["dns_failover"]
    assert _record(route53, zone_id, domain) == (PRIMARY, 300)


def test_a_recovery_that_fails_after_the_failover_puts_the_record_back(zone: Any, aws_server: AwsServer) -> None:
    route53, zone_id, domain = zone
    result = engine.run(PROCEDURE, _params(domain, aws_server.account), only=[*DNS_STEPS, "maintenance_off"],
                        yes=True, journal=False)
    assert result.status == "failed" and result.root_cause == "maintenance_off"
    assert result.rolled_back == ["dns_failover"]
    assert _record(route53, zone_id, domain) == (PRIMARY, 300)


def test_a_dry_run_reads_the_record_and_changes_nothing(zone: Any, aws_server: AwsServer) -> None:
    route53, zone_id, domain = zone
    result = engine.run(PROCEDURE, _params(domain, aws_server.account), only=DNS_STEPS, dry_run=True)
    assert result.status == "planned"
    assert result.steps["dns_before"].status == "ok"  # a read: run
    failover = result.steps["dns_failover"]
    assert failover.status == "planned" and "change_resource_record_sets" in (failover.description or "")
    assert DR in (failover.description or "") and f"account {aws_server.account}" in (failover.description or "")
    assert _record(route53, zone_id, domain) == (PRIMARY, 300)


def test_another_accounts_credentials_are_refused_before_the_change(zone: Any) -> None:
    route53, zone_id, domain = zone
    result = engine.run(PROCEDURE, _params(domain, "210987654321"), only=DNS_STEPS, yes=True, journal=False)
    assert result.exit_code == 3 and result.root_cause == "dns_failover"
    assert "210987654321" in (result.steps["dns_failover"].error or "")
    assert _record(route53, zone_id, domain) == (PRIMARY, 300)
