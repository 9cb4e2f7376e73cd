"""Secrets kept in a store: Vault/OpenBao KV (a real `bao server -dev`), AWS Secrets Manager and
SSM (moto's server), read once per run where the step runs, never written anywhere.

Most runs go through ``engine.cli.main`` in this process (the CLI's own code, without a
process start each); one end-to-end run is a subprocess, whose state file and report are
searched for the value.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest

from engine.cli import main
from tests.helpers.cli import runproc, write
from tests.servers.aws import AwsServer, aws_server_fixture  # noqa: F401 - the aws_server fixture
from tests.servers.openbao import OpenBao, openbao_fixture  # noqa: F401 - the openbao fixture

VAULT_VARS = ("VAULT_ADDR", "VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID", "VAULT_NAMESPACE")

USES_DB = """
    procedure: vaulty
    secrets:
      db_password: {vault: {path: app/db, key: password}}
      legacy: {vault: {path: app/legacy, key: value, mount: kv1, engine: kv1}}
    steps:
      - id: use
        shell: echo "pw={{ secrets.db_password }} legacy={{ secrets.legacy }}"; echo "{{ secrets.db_password }}" > got
"""


@pytest.fixture
def vault_env(openbao: OpenBao, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> OpenBao:
    """This process's Vault environment: the server's address, no credentials (a test gives its
    own), and a HOME without ~/.vault-token."""
    for name in VAULT_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAULT_ADDR", openbao.address)
    monkeypatch.setenv("HOME", str(tmp_path))
    return openbao


def _run(tmp: Path, text: str, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    path = tmp / "proc.yml"
    path.write_text(textwrap.dedent(text).lstrip())
    code = main([str(path), *args, "--state", f"sqlite:///{tmp}/state.db"])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_vault_secret_reaches_the_step_and_nothing_else(openbao: OpenBao, tmp_path: Path) -> None:
    """End to end, as a user runs it: token auth from VAULT_TOKEN; the value in the step's hands,
    masked in the output, absent from the state file (journal, history) and the report."""
    path = write(tmp_path, USES_DB)
    env = {**openbao.env(token=openbao.reader_token), "HOME": str(tmp_path)}
    # the reader token may read secret/app/*, not kv1/: the legacy secret uses the root token
    env["KV1_TOKEN"] = openbao.root_token
    path.write_text(path.read_text().replace("engine: kv1}", "engine: kv1, token_env: KV1_TOKEN}"))
    done = runproc(tmp_path, str(path), "--output", "json", "--report-dir", str(tmp_path / "report"), env=env)
    assert done.rc == 0, done.stderr
    value, legacy = openbao.values["db_password"], openbao.values["legacy"]
    assert (tmp_path / "got").read_text().strip() == value  # the step had it
    assert done.step("use")["stdout"] == "pw=*** legacy=***\n"
    written = [tmp_path / "state.db", *(p for p in (tmp_path / "report").rglob("*") if p.is_file())]
    assert len(written) > 1
    for text in (done.stdout.encode(), done.stderr.encode(), *(p.read_bytes() for p in written)):
        assert value.encode() not in text and legacy.encode() not in text


def test_approle_login_from_the_environment_or_the_source(vault_env: OpenBao, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ROLE_ID", vault_env.role_id)
    monkeypatch.setenv("VAULT_SECRET_ID", vault_env.secret_id)
    code, _, err = _run(tmp_path, """
        procedure: approle
        secrets:
          api: {vault: {path: app/api, key: token}}
        steps:
          - id: use
            shell: echo "{{ secrets.api }}" > got
    """, capsys=capsys)
    assert code == 0, err
    assert (tmp_path / "got").read_text().strip() == vault_env.values["api_token"]
    # the role id written in the source, the secret id in a variable the source names
    monkeypatch.delenv("VAULT_ROLE_ID")
    monkeypatch.delenv("VAULT_SECRET_ID")
    monkeypatch.setenv("APP_SECRET_ID", vault_env.secret_id)
    code, _, err = _run(tmp_path, f"""
        procedure: approle
        secrets:
          user: {{vault: {{path: app/db, key: user, auth: approle, role_id: "{vault_env.role_id}",
                          secret_id_env: APP_SECRET_ID}}}}
        steps:
          - id: use
            shell: echo "{{{{ secrets.user }}}}" > got
    """, capsys=capsys)
    assert code == 0, err
    assert (tmp_path / "got").read_text().strip() == vault_env.values["db_user"]


def test_a_path_is_read_once_per_run(vault_env: OpenBao, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # a token good for one request: two keys of one path read with it, so the path was read once
    once = vault_env.api("POST", "auth/token/create", {"policies": ["app-read"], "num_uses": 1})
    monkeypatch.setenv("VAULT_TOKEN", once["auth"]["client_token"])
    code, _, err = _run(tmp_path, """
        procedure: once
        secrets:
          user: {vault: {path: app/db, key: user}}
          password: {vault: {path: app/db, key: password}}
        steps:
          - id: use
            shell: echo "{{ secrets.user }}:{{ secrets.password }}" > got
    """, capsys=capsys)
    assert code == 0, err
    assert (tmp_path / "got").read_text().strip() == f"{vault_env.values['db_user']}:{vault_env.values['db_password']}"


@pytest.mark.parametrize(("source", "token", "says"), [
    ("{path: app/nothing, key: password}", "reader", "vault secret/app/nothing (kv2 at {address}): path missing"),
    ("{path: app/db, key: pasword}", "reader",
     "vault secret/app/db (kv2 at {address}): key 'pasword' missing (did you mean 'password'?)"),
    ("{path: app/db, key: password}", "denied", "vault secret/app/db (kv2 at {address}): permission denied"),
    ("{path: app/db, key: password}", None, "vault secret/app/db (kv2): no Vault credentials (set VAULT_TOKEN"),
])
def test_a_secret_that_cannot_be_read_stops_the_run_before_any_step(
        vault_env: OpenBao, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        source: str, token: str | None, says: str) -> None:
    if token is not None:
        monkeypatch.setenv("VAULT_TOKEN", vault_env.reader_token if token == "reader" else vault_env.denied_token)
    code, out, err = _run(tmp_path, f"""
        procedure: refused
        secrets:
          fine: {{env: HOME}}
          db_password: {{vault: {source}}}
        steps:
          - id: first
            shell: touch ran
    """, capsys=capsys)
    assert code == 2
    line = f"{tmp_path / 'proc.yml'}:4:3: secret 'db_password': " + says.format(address=vault_env.address)
    assert err.startswith(line) and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "ran").exists()  # no step ran


def test_optional_allows_an_absent_secret_not_a_refused_one(vault_env: OpenBao, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_TOKEN", vault_env.reader_token)
    text = """
        procedure: optional
        secrets:
          extra: {vault: {path: PATH, key: password}, optional: true}
        steps:
          - id: use
            shell: echo "[{{ secrets.extra }}]" > got
    """
    code, _, err = _run(tmp_path, text.replace("PATH", "app/absent"), capsys=capsys)
    assert code == 0, err
    assert (tmp_path / "got").read_text() == "[]\n"
    code, _, err = _run(tmp_path, text.replace("PATH", "other/db"), capsys=capsys)  # the policy says no
    assert code == 2 and "secret 'extra': vault secret/other/db" in err and "permission denied" in err


def test_a_dry_run_needs_no_credentials_and_shows_the_secret_unknown(
        vault_env: OpenBao, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = _run(tmp_path, USES_DB, "--dry-run", "--output", "json", capsys=capsys)
    assert code == 0, err
    step = json.loads(out)["steps"][0]
    assert step["status"] == "planned" and "<unknown: secrets.db_password>" in json.dumps(step)
    assert "db_password" in err and "not set" in err
    # --offline asks no store, even with credentials at hand
    monkeypatch.setenv("VAULT_TOKEN", vault_env.root_token)
    code, out, err = _run(tmp_path, USES_DB, "--dry-run", "--offline", "--output", "json", capsys=capsys)
    assert code == 0, err
    assert "<unknown: secrets.db_password>" in out and vault_env.values["db_password"] not in out
    # with credentials, a dry run reads it (for the readonly steps it runs), and masks it
    code, out, err = _run(tmp_path, USES_DB, "--dry-run", "--output", "json", capsys=capsys)
    assert code == 0, err
    assert "<unknown: secrets" not in out and "***" in out and vault_env.values["db_password"] not in out


def test_the_worker_reads_store_secrets_itself_from_declarations(vault_env: OpenBao, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """With --engine temporal: the workflow's input declares the secret, never its value; the
    step activity's code (called here in-process, as a worker calls it) reads it once per run."""
    from engine.distributed import activities
    from engine.distributed.plan import build
    from engine.format.loader import load

    path = write(tmp_path, """
        procedure: on-a-worker
        secrets:
          db_password: {vault: {path: app/db, key: password}}
        steps:
          - id: use
            shell: echo "pw={{ secrets.db_password }}"; echo "{{ secrets.db_password }}" > got
    """)
    plan = build(load(path), {}, run_id=uuid.uuid4().hex[:12], started_at="2026-01-01T00:00:00Z", dry_run=False,
                 yes=True, no_rollback=False, default_queue="runproc", schedule_to_start=30)
    assert plan["secrets"]["db_password"] == {"vault": {"path": "app/db", "key": "password", "mount": "secret",
                                                        "engine": "kv2", "approle_mount": "approle"},
                                              "optional": False}
    value = vault_env.values["db_password"]
    assert value not in json.dumps(plan)
    # one request allowed: the activity's rendering and the step itself share the run's read
    once = vault_env.api("POST", "auth/token/create", {"policies": ["app-read"], "num_uses": 1})
    monkeypatch.setenv("VAULT_TOKEN", once["auth"]["client_token"])
    monkeypatch.chdir(tmp_path)
    answer = activities._run({"plan": plan, "step": plan["steps"][0]["raw"], "steps": {}, "phase": "step"})
    assert answer["status"] == "ok", answer
    assert (tmp_path / "got").read_text().strip() == value
    assert value not in json.dumps(answer) and "pw=***" in json.dumps(answer)
    # a worker whose token may not read it fails the step, naming the secret and why
    from temporalio.exceptions import ApplicationError

    monkeypatch.setenv("VAULT_TOKEN", vault_env.denied_token)
    plan["run"]["id"] = uuid.uuid4().hex[:12]  # another run: read anew
    with pytest.raises(ApplicationError) as failed:
        activities._run({"plan": plan, "step": plan["steps"][0]["raw"], "steps": {}, "phase": "step"})
    assert "step use:" in str(failed.value) and "secret 'db_password': vault secret/app/db" in str(failed.value)
    assert "permission denied" in str(failed.value), str(failed.value)


def test_aws_secrets_manager_and_ssm(aws_server: AwsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                     ) -> None:
    name = f"runproc/{uuid.uuid4().hex[:8]}"
    password, whole, param = "aws-canary-pw-3e8d1a", "aws-canary-whole-77c2", "aws-canary-ssm-0b9f4d"
    sm = aws_server.client("secretsmanager")
    sm.create_secret(Name=f"{name}/db", SecretString=json.dumps({"username": "app", "password": password}))
    sm.create_secret(Name=f"{name}/plain", SecretString=whole)
    aws_server.client("ssm").put_parameter(Name=f"/{name}/token", Value=param, Type="SecureString")
    text = f"""
        procedure: aws-secrets
        secrets:
          db: {{aws_secretsmanager: {{id: {name}/db, key: password}}}}
          plain: {{aws_secretsmanager: {{id: {name}/plain}}}}
          token: {{aws_ssm: {{name: /{name}/token}}}}
        steps:
          - id: use
            shell: echo "{{{{ secrets.db }}}} {{{{ secrets.plain }}}} {{{{ secrets.token }}}}" > got; echo "{{{{ secrets.db }}}}"
    """
    code, out, err = _run(tmp_path, text, "--output", "json", capsys=capsys)
    assert code == 0, err
    assert (tmp_path / "got").read_text().split() == [password, whole, param]
    assert json.loads(out)["steps"][0]["stdout"] == "***\n"
    assert password.encode() not in (tmp_path / "state.db").read_bytes()
    (tmp_path / "got").unlink()
    for wrong, says in (
            (f"id: {name}/db, key: passwd", f"secret 'db': aws_secretsmanager {name}/db: key 'passwd' missing "
                                            "(did you mean 'password'?)"),
            (f"id: {name}/gone, key: password", f"secret 'db': aws_secretsmanager {name}/gone: not found"),
    ):
        code, _, err = _run(tmp_path, text.replace(f"id: {name}/db, key: password", wrong), capsys=capsys)
        assert code == 2 and f"proc.yml:3:3: {says}" in err and len(err.strip().splitlines()) == 1, err
    code, _, err = _run(tmp_path, text.replace(f"name: /{name}/token", f"name: /{name}/gone"), capsys=capsys)
    assert code == 2 and f"proc.yml:5:3: secret 'token': aws_ssm /{name}/gone: not found" in err, err
    assert not (tmp_path / "got").exists()  # no step ran


def test_the_docs_example_runs(vault_env: OpenBao, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/secrets/vault.yml, as docs/format.md runs it (its secret/app/db is the fixture's)."""
    monkeypatch.setenv("VAULT_TOKEN", vault_env.reader_token)
    example = Path(__file__).resolve().parents[2] / "examples" / "secrets" / "vault.yml"
    code = main([str(example), "--output", "json", "--state", f"sqlite:///{tmp_path}/state.db"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["steps"][0]["stdout"] == "connecting as *** with password ***\n"
