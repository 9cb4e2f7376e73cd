"""A step that omits 'connection:' where several would fit is an error at load time, not at 3 a.m."""

from __future__ import annotations

import textwrap
from pathlib import Path

from engine.cli import main


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "p.yml"
    path.write_text(textwrap.dedent(body))
    return path


def test_ambiguous_connection_is_a_located_error(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, """\
        procedure: c
        connections:
          a: {sqlite: a.db}
          b: {sqlite: b.db}
          h1: {http: "http://127.0.0.1:1"}
          h2: {http: "http://127.0.0.1:2"}
        steps:
          - id: q
            sql: SELECT 1
          - id: full_url
            http: http://127.0.0.1:9/x
          - id: by_path
            http: {path: /x}
        """)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:8:5: steps[0]: sql needs 'connection:' here: 2 connections fit (a, b)" in err
    assert f"{path}:12:5: steps[2]: http needs 'connection:' here" in err
    assert "steps[1]" not in err  # a full URL needs no connection


def test_single_connection_may_be_omitted(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, """\
        procedure: c
        connections:
          a: {sqlite: a.db}
        steps:
          - id: q
            sql: SELECT 1
        """)
    assert main(["validate", str(path)]) == 0


def test_empty_kubernetes_settings_add_no_flags(tmp_path: Path) -> None:
    from engine.executors.base import StepContext
    from engine.executors.kubectl import KubectlExecutor, KubectlOptions
    from engine.format.expressions import render_value
    from engine.format.model import KubernetesConnection

    conn = KubernetesConnection(context="{{ params.ctx }}", namespace="{{ params.ns }}",
                                kubeconfig="{{ params.kc }}")
    ns = {"params": {"ctx": "", "ns": "prod", "kc": ""}}
    ctx = StepContext(step_id="k", workdir=tmp_path, connections={"k8s": conn},
                      render=lambda v: render_value(v, ns))
    argv = KubectlExecutor().argv(KubectlOptions(args=["get", "pods"]), ctx)
    assert "--context" not in argv and "--kubeconfig" not in argv
    assert argv[-4:] == ["--namespace", "prod", "get", "pods"]
