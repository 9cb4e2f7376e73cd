"""Params and secrets, checked when a run starts: `runproc FILE -p ... --dry-run --offline`.

Each refusal is exit 2 with a message that names the param and what was expected, and
nothing runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers.validate import Outcome, cli, run, write

PROC = """
    procedure: deploy
    params:
      version: {type: str, required: true, pattern: '^v\\d+\\.\\d+$', help: the release tag}
      replicas: {type: int, default: 3, min: 1, max: 20}
      ratio: {type: float, default: 0.5, min: 0, max: 1}
      apply: {type: bool, default: false}
      region: {type: str, default: eu, choices: [eu, us]}
      hosts: {type: list, default: []}
    steps:
      - id: show
        shell: echo {{ params.version }} {{ params.replicas }} {{ params.ratio }} {{ params.apply }} {{ params.region }} {{ params.hosts | join(',') }}
"""


@pytest.fixture
def proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)
    return write(tmp_path, PROC, "deploy.yml")


def dry(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> Outcome:
    return cli(capsys, *args, "--dry-run", "--offline", "--output", "json",
               "--state", f"sqlite:///{tmp_path}/state.db")


def action(done: Outcome) -> str:
    assert done.rc == 0, done.err
    [step] = json.loads(done.out)["steps"]
    return step["action"]


def test_values_are_typed_and_defaults_apply(proc: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    done = dry(capsys, tmp_path, proc, "-p", "version=v1.2")
    assert action(done) == "echo v1.2 3 0.5 false eu ''"
    done = dry(capsys, tmp_path, proc, "-p", "version=v1.2", "-p", "replicas=20", "-p", "ratio=1",
               "-p", "apply=yes", "-p", "region=us", "-p", "hosts=web1,web2")
    assert action(done) == "echo v1.2 20 1.0 true us web1,web2"


def test_missing_required(proc: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = dry(capsys, tmp_path, proc)
    assert done.rc == 2
    assert done.out == ""
    assert done.lines == ["deploy.yml:3:3: param 'version' is required (a string) "
                          "(hint: pass -p version=VALUE; the release tag)"]


@pytest.mark.parametrize(("arg", "message"), [
    ("version=1.2", "deploy.yml:3:3: param 'version' (from -p): '1.2' does not match the pattern "
                    "^v\\d+\\.\\d+$ (hint: the release tag)"),
    ("replicas=0", "deploy.yml:4:3: param 'replicas' (from -p): 0 is below the minimum 1"),
    ("replicas=21", "deploy.yml:4:3: param 'replicas' (from -p): 21 is above the maximum 20"),
    ("replicas=three", "deploy.yml:4:3: param 'replicas' (from -p): expected an integer, got 'three'"),
    ("ratio=1.5", "deploy.yml:5:3: param 'ratio' (from -p): 1.5 is above the maximum 1"),
    ("apply=maybe", "deploy.yml:6:3: param 'apply' (from -p): expected true or false, got 'maybe'"),
    ("region=asia", "deploy.yml:7:3: param 'region' (from -p): 'asia' is not one of 'eu', 'us'"),
    # from -p, so in no file: located at the procedure's params, where it would be declared
    ("regoin=eu", "deploy.yml:2:1: unknown param 'regoin' (from -p) (did you mean 'region'?)"),
    ("nothing=1", "deploy.yml:2:1: unknown param 'nothing' (from -p) (hint: this procedure declares: version, "
                  "replicas, ratio, apply, region, hosts)"),
])
def test_bad_cli_value(proc: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], arg: str,
                       message: str) -> None:
    args = ["-p", arg] if arg.startswith("version") else ["-p", "version=v1.0", "-p", arg]
    done = dry(capsys, tmp_path, proc, *args)
    assert (done.rc, done.out, done.lines) == (2, "", [message])


def test_all_param_problems_at_once(proc: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = dry(capsys, tmp_path, proc, "-p", "replicas=0", "-p", "region=asia")
    assert done.rc == 2
    assert [line.split(": ", 1)[1].split(" ")[1] for line in done.lines] == [
        "'version'", "'replicas'", "'region'"]


def test_malformed_p(proc: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = dry(capsys, tmp_path, proc, "-p", "version")
    assert (done.rc, done.lines) == (2, ["-p: expected name=value, got 'version'"])


def test_params_file_yaml(proc: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "params.yml").write_text("version: v2.0\nreplicas: 5\napply: true\nhosts: [a, b]\n")
    done = dry(capsys, tmp_path, proc, "--params-file", "params.yml")
    assert action(done) == "echo v2.0 5 0.5 true eu a,b"
    # -p wins over the file
    done = dry(capsys, tmp_path, proc, "--params-file", "params.yml", "-p", "replicas=7")
    assert action(done) == "echo v2.0 7 0.5 true eu a,b"


def test_params_file_json(proc: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "params.json").write_text(json.dumps({"version": "v3.1", "ratio": 0.25, "region": "us"}))
    done = dry(capsys, tmp_path, proc, "--params-file", "params.json")
    assert action(done) == "echo v3.1 3 0.25 false us ''"


def test_params_file_problems_point_into_the_file(proc: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "params.yml").write_text("version: 12\nreplicas: \"5\"\napply: yes\nrgion: us\n")
    done = dry(capsys, tmp_path, proc, "--params-file", "params.yml")
    assert done.rc == 2
    assert done.lines == [
        "params.yml:1:10: param 'version': expected a string, got 12 (hint: the release tag)",
        "params.yml:2:11: param 'replicas': expected an integer, got '5'",
        "params.yml:3:8: param 'apply': expected true or false, got 'yes' (hint: params files are read as "
        "YAML 1.2, where 'yes' is a string; write true or false)",
        "params.yml:4:1: unknown param 'rgion' (did you mean 'region'?)",
    ]


def test_params_file_must_be_a_mapping(proc: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "params.json").write_text("[1, 2]")
    done = dry(capsys, tmp_path, proc, "--params-file", "params.json")
    assert (done.rc, done.lines) == (2, ["params.json:1:1: a params file is a mapping of name: value"])


# ---------------------------------------------------------------- secrets

SECRET_PROC = """
    procedure: secretive
    secrets:
      token: {env: RUNPROC_TEST_TOKEN}
      key: {file: key.txt}
    steps:
      - id: touch
        shell: touch touched
"""


# a bare environment, but the suite's warm-server folder (tests/conftest.py): none left behind
_WARM = {k: os.environ[k] for k in ("RUNPROC_WARM_DIR", "RUNPROC_WARM_IDLE") if k in os.environ}


def test_missing_secret_stops_before_anything_runs(tmp_path: Path) -> None:
    write(tmp_path, SECRET_PROC, "secretive.yml")
    env = {"PATH": "/usr/bin:/bin", **_WARM}
    done = run("secretive.yml", "--state", f"sqlite:///{tmp_path}/state.db", cwd=tmp_path, env=env)
    assert done.rc == 2
    assert done.lines == [
        "secretive.yml:3:3: secret 'token': environment variable RUNPROC_TEST_TOKEN is not set",
        f"secretive.yml:4:3: secret 'key': file {tmp_path}/key.txt cannot be read (No such file or directory)",
    ]
    assert not (tmp_path / "touched").exists()


def test_present_secrets_let_the_run_go(tmp_path: Path) -> None:
    write(tmp_path, SECRET_PROC, "secretive.yml")
    (tmp_path / "key.txt").write_text("s3cr3t-key\n")
    env = {"PATH": "/usr/bin:/bin", "RUNPROC_TEST_TOKEN": "t0ken-value", **_WARM}
    done = run("secretive.yml", "--state", f"sqlite:///{tmp_path}/state.db", cwd=tmp_path, env=env)
    assert done.rc == 0, done.err
    assert (tmp_path / "touched").exists()


def test_offline_dry_run_does_not_need_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNPROC_TEST_TOKEN", raising=False)
    write(tmp_path, SECRET_PROC, "secretive.yml")
    done = dry(capsys, tmp_path, "secretive.yml")
    assert done.rc == 0, done.err
    assert not (tmp_path / "touched").exists()


def test_an_unknown_p_on_a_procedure_without_params_points_at_its_top(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    name = write(tmp_path, """
        # no params here
        procedure: plain
        steps:
          - id: a
            shell: 'true'
    """, "plain.yml")
    done = dry(capsys, tmp_path, name, "-p", "x=1")
    assert (done.rc, done.out) == (2, "")
    assert done.lines == ["plain.yml:2:1: unknown param 'x' (from -p) (hint: this procedure declares: none)"]
