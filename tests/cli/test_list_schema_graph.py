"""`runproc schema`, `runproc list`, `runproc graph` and `runproc --version`, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from engine.format.yamlsrc import read_file
from tests.helpers.validate import cli, run, write
from tests.procedures.test_shipped import SHIPPED

ROOT = Path(__file__).resolve().parents[2]

# Valid procedures of our own, covering every part of the format the shipped files may not use.
SAMPLES = {
    "everything.yml": """
        procedure: everything
        description: every key of the format
        owner: platform
        params:
          version: {type: str, required: true, pattern: '^\\d+$', help: the version}
          replicas: {type: int, default: 3, min: 1, max: 20}
          ratio: {type: float, default: 0.5}
          apply: {type: bool, default: true}
          hosts: {type: list, default: [a, b]}
          mode: {type: str, default: fast, choices: [fast, safe]}
          token: {type: str, secret: true}
        vars:
          dir: /backups
          nested: {a: [1, 2, {b: c}]}
        secrets:
          password: {env: DB_PASSWORD}
          key: {file: key.txt}
        connections:
          primary: {postgres: "postgresql://u@db:5432/app", password: "{{ secrets.password }}"}
          local: {sqlite: ./state/app.db}
          cluster: {kubernetes: {context: prod, namespace: app}}
          api: {http: {base_url: "https://api.example.com", timeout: 10s}}
          backups: {s3: {bucket: backups, region: us-east-1}}
          beside: {http: "https://example.com", timeout: 5}
        inventory: ../inventory/production.yml
        lock: db-primary
        window: "Sun 02:00-04:00 UTC"
        concurrency: 8
        preconditions:
          - name: disk has room
            shell: df /
            expect: result.rc == 0
        steps:
          - id: backup
            name: back up
            shell: echo {{ vars.dir }}/{{ params.version }}
            timeout: 30m
            env: {A: "1", B: 2}
            retry: {attempts: 3, delay: 10s, backoff: 2, max_delay: 1m, until: result.rc == 0}
          - id: fan
            on: "webservers:!web-2"
            serial: 25%
            max_fail: 1
            shell: {cmd: hostname, cwd: /tmp, shell: /bin/bash}
            continue_on_error: true
          - id: check
            needs: [backup]
            when: params.apply and steps.backup.rc == 0
            assert: ["params.replicas > 0", "steps.backup.ok"]
            readonly: true
          - id: pause
            needs: backup
            wait: {seconds: 1s}
          - id: approve
            confirm: {message: "go on?"}
            preconditions:
              - assert: params.apply
            verify:
              - wait: 1
            rollback:
              shell: echo undo
              timeout: 1m
          - id: child
            needs: []
            procedure: {file: other.yml, params: {a: 1}}
        finally:
          - id: cleanup
            shell: echo done
        on_failure:
          - id: page
            shell: echo "{{ run.error }}"
    """,
    "minimal.yml": """
        procedure: minimal
        steps:
          - id: only
            shell: "true"
    """,
}
INVALID = {
    "unknown key": "procedure: x\nsteps: [{id: a, shell: echo, timout: 5}]\n",
    "no executor": "procedure: x\nsteps: [{id: a}]\n",
    "two executors": "procedure: x\nsteps: [{id: a, shell: echo, wait: 1}]\n",
    "bool as string": "procedure: x\nsteps: [{id: a, shell: echo, readonly: 'yes'}]\n",
    "bad id": "procedure: x\nsteps: [{id: A, shell: echo}]\n",
    "no steps": "procedure: x\nsteps: []\n",
    "connection kind": "procedure: x\nconnections: {db: {mysql: x}}\nsteps: [{id: a, shell: echo}]\n",
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    done = run("schema", cwd=ROOT)
    assert done.rc == 0, done.err
    return json.loads(done.out)


def test_schema_is_valid_json_schema(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "runproc procedure"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_schema_accepts_shipped_procedures(schema: dict[str, Any], path: Path) -> None:
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(read_file(path).data))
    assert not errors, [jsonschema.exceptions.best_match([e]).message for e in errors]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_schema_accepts_what_validate_accepts(schema: dict[str, Any], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str], name: str) -> None:
    path = tmp_path / write(tmp_path, SAMPLES[name], name)
    assert cli(capsys, "validate", str(path)).rc == 0, capsys.readouterr().err
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(read_file(path).data))
    assert not errors, [jsonschema.exceptions.best_match([e]).message for e in errors]


@pytest.mark.parametrize("case", sorted(INVALID))
def test_schema_rejects_what_validate_rejects(schema: dict[str, Any], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str], case: str) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(INVALID[case])
    assert cli(capsys, "validate", str(path)).rc == 2
    assert not jsonschema.Draft202012Validator(schema).is_valid(read_file(path).data)


def test_list_shows_the_procedures(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, SAMPLES["everything.yml"], "procs/everything.yml")
    write(tmp_path, SAMPLES["minimal.yml"], "procs/minimal.yaml")
    write(tmp_path, INVALID["unknown key"], "procs/broken.yml")
    (tmp_path / "procs" / "notes.txt").write_text("not a procedure")
    # YAML that is not a procedure (no procedure: or steps: key): an inventory, Alertmanager's config
    (tmp_path / "procs" / "inventory.yml").write_text("all:\n  hosts:\n    web1: {}\n")
    (tmp_path / "procs" / "alerts").mkdir()
    (tmp_path / "procs" / "alerts" / "alertmanager.yml").write_text("route:\n  receiver: runproc\n")

    done = cli(capsys, "list", "procs", "--output", "json")
    assert done.rc == 0
    rows = {r["procedure"]: r for r in json.loads(done.out)}
    assert sorted(rows) == ["broken", "everything", "minimal"]
    assert rows["everything"]["description"] == "every key of the format"
    assert rows["everything"]["owner"] == "platform"
    assert rows["everything"]["params"] == ("version*:str, replicas:int, ratio:float, apply:bool, hosts:list, "
                                            "mode:str, token:str")
    assert rows["minimal"]["ok"] is True
    assert rows["broken"]["ok"] is False
    assert "unknown key 'timout'" in rows["broken"]["description"]

    done = cli(capsys, "list", "procs")
    assert done.rc == 0
    for text in ("everything", "every key of the format", "platform", "version*:str", "minimal", "broken"):
        assert text in done.out


def test_list_defaults_to_procedures_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, SAMPLES["minimal.yml"], "procedures/minimal.yml")
    done = cli(capsys, "list", "--output", "json")
    assert [r["procedure"] for r in json.loads(done.out)] == ["minimal"]


def test_list_of_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = cli(capsys, "list", str(tmp_path / "nope"))
    assert done.rc == 2
    assert done.err == f"runproc list: {tmp_path / 'nope'}: not a directory\n"


GRAPH = """
    procedure: g
    steps:
      - id: fetch
        name: fetch "sources"
        shell: echo
      - id: lint
        needs: [fetch]
        shell: echo
      - id: test
        needs: [fetch]
        shell: echo
      - id: end
        shell: echo
      - id: node
        needs: [lint, end]
        shell: echo
"""


def test_graph_mermaid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / write(tmp_path, GRAPH, "g.yml")
    done = cli(capsys, "graph", str(path))
    assert done.rc == 0
    # `end` is a Mermaid keyword, so its node id gets a suffix; quotes become entities
    assert done.out == (
        "graph TD\n"
        '    fetch["fetch #quot;sources#quot;"]\n'
        '    lint["lint"]\n'
        '    test["test"]\n'
        '    end_["end"]\n'
        '    node["node"]\n'
        "    fetch --> lint\n"
        "    fetch --> test\n"
        "    test --> end_\n"
        "    lint --> node\n"
        "    end_ --> node\n")


def test_graph_dot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / write(tmp_path, GRAPH, "g.yml")
    done = cli(capsys, "graph", str(path), "--format", "dot")
    assert done.rc == 0
    assert done.out == (
        'digraph "g" {\n'
        "    rankdir=TB;\n"
        "    node [shape=box];\n"
        '    "fetch" [label="fetch \\"sources\\""];\n'
        '    "lint" [label="lint"];\n'
        '    "test" [label="test"];\n'
        '    "end" [label="end"];\n'
        '    "node" [label="node"];\n'
        '    { rank=same; "fetch" }\n'
        '    { rank=same; "lint" "test" }\n'
        '    { rank=same; "end" }\n'
        '    { rank=same; "node" }\n'
        '    "fetch" -> "lint";\n'
        '    "fetch" -> "test";\n'
        '    "test" -> "end";\n'
        '    "lint" -> "node";\n'
        '    "end" -> "node";\n'
        "}\n")


def test_graph_of_an_invalid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("procedure: x\nsteps:\n  - id: a\n    needs: [a]\n    shell: echo\n")
    done = cli(capsys, "graph", str(path))
    assert done.rc == 2
    assert "dependency cycle: a -> a" in done.err


def test_version(tmp_path: Path) -> None:
    from engine.version import describe

    done = run("--version", cwd=tmp_path)
    # describe(): the version, and the git commit of a checkout or a build (tests/unit/test_packaging.py)
    assert (done.rc, done.out, done.err) == (0, f"runproc {describe()}\n", "")
