"""examples/secrets/aws.yml against moto's server (tests/servers/aws.py): aws-setup.yml creates
a Secrets Manager secret and an SSM SecureString, then aws.yml reads both (a JSON secret's two
fields in one read), uses them, and every trace of them, a value derived from one included, is
masked in its output and report."""

from __future__ import annotations

import json
from pathlib import Path

import engine
from tests.servers.aws import AwsServer, aws_server_fixture  # noqa: F401 - the fixture

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "secrets"
VALUES = ("ak-7Hq2-example", "reporter", "smtp-pw-example")


def test_the_aws_secrets_example_reads_both_stores_and_shows_nothing(aws_server: AwsServer) -> None:
    secrets = aws_server.client("secretsmanager")
    if secrets.list_secrets(Filters=[{"Key": "name", "Values": ["example/api"]}])["SecretList"]:
        secrets.delete_secret(SecretId="example/api", ForceDeleteWithoutRecovery=True)  # moto is process-wide
    setup = engine.run(EXAMPLES / "aws-setup.yml", journal=False)
    assert setup.status == "ok", setup.error
    result = engine.run(EXAMPLES / "aws.yml", journal=False)
    assert result.status == "ok", result.error
    said = result.steps["use"].fields["stdout"]
    assert said.strip() == "calling the API as *** with key ***; SMTP password ***"
    assert result.steps["length"].fields["stdout"].strip() == "the key reversed ***"
    report = json.dumps(result.to_json())
    for value in (*VALUES, VALUES[0][::-1]):
        assert value not in report
