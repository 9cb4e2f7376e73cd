"""The kubectl executor against the real kubectl and a stand-in API server (tests/servers/kube.py)."""

from __future__ import annotations

import json
import shlex
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.executors.base import Effect
from engine.executors.kubectl import KubectlExecutor, KubectlOptions, classify, split_args
from tests.servers.kube import KubeApi

NS = "unjucks-prod"


def run(tmp_path: Path, body: str, *, kube: KubeApi, connection: str | None = None,
        **options: Any) -> engine.RunResult:
    """Write a procedure with one kubernetes connection (the stand-in) and run it."""
    conn = connection if connection is not None else (
        f"  cluster: {{kubernetes: {{context: test, kubeconfig: {kube.kubeconfig_path}}}}}\n")
    text = "procedure: kube-test\nconnections:\n" + conn + textwrap.dedent(body)
    path = tmp_path / "proc.yml"
    path.write_text(text)
    return engine.run(path, state=f"sqlite:///{tmp_path}/state.db", **options)


# ---------------------------------------------------------------- the verb table


@pytest.mark.parametrize(("args", "effect", "rehearsable"), [
    ("get pods", Effect.READ, False),
    ("describe deployment web", Effect.READ, False),
    ("logs deploy/web --tail=20", Effect.READ, False),
    ("top pods", Effect.READ, False),
    ("rollout status deployment/web", Effect.READ, False),
    ("rollout history deployment/web", Effect.READ, False),
    ("auth can-i delete pods", Effect.READ, False),
    ("version -o json", Effect.READ, False),
    ("api-resources", Effect.READ, False),
    ("config view", Effect.READ, False),
    ("config get-contexts", Effect.READ, False),
    ("wait --for=condition=Available deployment/web", Effect.READ, False),
    ("diff -f app.yaml", Effect.READ, False),
    # leading global flags, with separate and attached values, are skipped
    ("-n prod --context=staging get pods", Effect.READ, False),
    ("--kubeconfig /k --request-timeout 5s -v 6 rollout status deploy/web", Effect.READ, False),
    ("--namespace prod scale deploy/web --replicas=3", Effect.WRITE, True),
    ("apply -f app.yaml", Effect.WRITE, True),
    ("apply -f -", Effect.WRITE, True),
    ("apply view-last-applied deploy/web", Effect.READ, False),
    ("patch svc web -p {}", Effect.WRITE, True),
    ("scale deploy/web --replicas=0", Effect.WRITE, True),
    ("set image deploy/web app=nginx:1.27", Effect.WRITE, True),
    ("set env deploy/web A=1", Effect.WRITE, True),
    ("create deployment web --image=nginx", Effect.WRITE, True),
    ("create token default", Effect.WRITE, False),
    ("delete pod web-1", Effect.WRITE, True),
    ("annotate deploy/web a=b", Effect.WRITE, True),
    ("label deploy/web a=b", Effect.WRITE, True),
    ("replace -f app.yaml", Effect.WRITE, True),
    ("rollout undo deploy/web", Effect.WRITE, True),
    ("rollout restart deploy/web", Effect.WRITE, False),  # no --dry-run in kubectl 1.32
    ("rollout pause deploy/web", Effect.WRITE, False),
    ("rollout resume deploy/web", Effect.WRITE, False),
    ("drain node1 --ignore-daemonsets", Effect.WRITE, True),
    ("cordon node1", Effect.WRITE, True),
    ("uncordon node1", Effect.WRITE, True),
    ("taint nodes node1 k=v:NoSchedule", Effect.WRITE, True),
    ("edit deploy/web", Effect.WRITE, False),
    ("exec web-1 -- cat /etc/hostname", Effect.WRITE, False),
    ("cp web-1:/tmp/x ./x", Effect.WRITE, False),
    ("port-forward svc/web 8080:80", Effect.WRITE, False),
    ("config use-context prod", Effect.WRITE, False),
    ("rollout frobnicate deploy/web", Effect.WRITE, False),
    ("frobnicate everything", Effect.WRITE, False),  # an unknown verb (a plugin?) is a write
    ("{{ params.verb }} pods", Effect.WRITE, False),  # a templated verb is unknown until rendered
    ("", Effect.WRITE, False),
])
def test_effect_table(args: str, effect: Effect, rehearsable: bool) -> None:
    assert classify(split_args(args)) == (effect, rehearsable)
    assert KubectlExecutor().effect(KubectlOptions(args=args)) == effect


def test_effect_of_list_args() -> None:
    assert KubectlExecutor().effect(KubectlOptions(args=["get", "pods", "-o", "json"])) == Effect.READ
    assert KubectlExecutor().effect(KubectlOptions(args=["scale", "deploy/web", "--replicas", 3])) == Effect.WRITE


def test_split_keeps_templates_whole() -> None:
    assert split_args("get deploy {{ params.name }} -l 'app={{ vars[\"a b\"] }}' -o json") == [
        "get", "deploy", "{{ params.name }}", "-l", 'app={{ vars["a b"] }}', "-o", "json"]


# ---------------------------------------------------------------- real runs


def test_get_json_feeds_a_later_step_and_scale_changes_the_store(tmp_path: Path, kube: KubeApi) -> None:
    kube.seed_deployment("web", replicas=2)
    result = run(tmp_path, """
        steps:
          - id: dep
            kubectl: get deployment web -o json
          - id: check
            assert: steps.dep.json.spec.replicas == 2 and steps.dep.json.metadata.name == 'web'
          - id: scale
            kubectl: ["scale", "deployment/web", "--replicas={{ steps.dep.json.spec.replicas + 1 }}"]
    """, kube=kube)
    assert result.status == "ok", result.error
    dep = result.steps["dep"]
    assert dep.fields["rc"] == 0 and dep.fields["json"]["kind"] == "Deployment"
    assert result.steps["scale"].status == "ok"
    assert "scaled" in result.steps["scale"].fields["stdout"]
    assert kube.get("deployment", NS, "web")["spec"]["replicas"] == 3  # type: ignore[index]
    assert [r.dry_run for r in kube.mutations()] == [False]


def test_a_value_with_spaces_and_semicolons_stays_one_argv_item(tmp_path: Path, kube: KubeApi) -> None:
    kube.seed_deployment("web")
    note = "deployed by ops; rm -rf / --all 'quoted' $(id)"
    result = run(tmp_path, """
        params:
          note: {type: str}
        steps:
          - id: annotate
            kubectl: annotate deployment web runproc/note={{ params.note }} --overwrite
    """, kube=kube, params={"note": note})
    assert result.status == "ok", result.error
    stored = kube.get("deployment", NS, "web")
    assert stored["metadata"]["annotations"]["runproc/note"] == note  # type: ignore[index]
    # the plan shows the argv quoted as one item
    assert KubectlExecutor.name in result.steps["annotate"].description  # type: ignore[operator]
    assert shlex.join(["annotate", "deployment", "web", f"runproc/note={note}", "--overwrite"]) in (
        result.steps["annotate"].description or "")


def test_a_value_with_spaces_is_one_resource_name(tmp_path: Path, kube: KubeApi) -> None:
    kube.seed_deployment("web")
    result = run(tmp_path, """
        params:
          name: {type: str}
        steps:
          - id: get
            kubectl: get deployment {{ params.name }} -o json
    """, kube=kube, params={"name": "web -o yaml"})
    # "web -o yaml" reached kubectl as one name, not as a name plus an output flag
    assert result.steps["get"].status == "failed"
    from urllib.parse import unquote

    names = [unquote(r.path).rsplit("/", 1)[-1] for r in kube.requests_for("GET", "/deployments/")]
    assert "web -o yaml" in names
    assert "not found" in result.steps["get"].fields["stderr"]


def test_dry_run_rehearses_mutations_and_runs_reads(tmp_path: Path, kube: KubeApi) -> None:
    kube.seed_deployment("web", replicas=2, containers={"app": "nginx:1.25"})
    kube.seed_service("web", selector={"app": "web", "version": "blue"})
    dep_before = kube.get("deployment", NS, "web")
    svc_before = kube.get("service", NS, "web")
    kube.requests.clear()
    result = run(tmp_path, """
        steps:
          - id: current
            kubectl: get deployment web -o json
          - id: scale
            kubectl: scale deployment/web --replicas=5
          - id: image
            kubectl: set image deployment/web app=nginx:1.27
          - id: switch
            kubectl:
              args: ["patch", "service", "web", "-p", '{"spec":{"selector":{"version":"green"}}}']
          - id: restart
            kubectl: rollout restart deployment/web
          - id: status
            kubectl: rollout status deployment/web --timeout=10s
    """, kube=kube, dry_run=True)
    assert result.status == "planned", result.error
    steps = result.steps
    assert steps["current"].status == "ok" and steps["current"].fields["json"]["spec"]["replicas"] == 2
    assert steps["status"].status == "ok"
    for sid in ("scale", "image", "switch"):
        assert steps[sid].status == "planned", (sid, steps[sid].error)
        assert steps[sid].fields["rc"] == 0 and steps[sid].fields["stdout"]
        assert any(n.startswith("rehearsed") for n in steps[sid].notes)
    assert "(server dry run)" in steps["scale"].fields["stdout"]  # kubectl patch does not say so
    # rollout restart cannot be rehearsed: planned, nothing sent
    assert steps["restart"].status == "planned" and steps["restart"].fields == {}
    mutations = kube.mutations()
    assert mutations, "the rehearsals reached the API server"
    assert all(r.dry_run for r in mutations), [(r.method, r.path, r.query) for r in mutations]
    assert {r.path for r in mutations} >= {f"/apis/apps/v1/namespaces/{NS}/deployments/web/scale",
                                           f"/apis/apps/v1/namespaces/{NS}/deployments/web",
                                           f"/api/v1/namespaces/{NS}/services/web"}
    assert kube.get("deployment", NS, "web") == dep_before
    assert kube.get("service", NS, "web") == svc_before


def test_dry_run_rehearsal_rejected_by_the_server_fails_the_step(tmp_path: Path, kube: KubeApi) -> None:
    result = run(tmp_path, """
        steps:
          - id: scale
            kubectl: scale deployment/missing --replicas=5
    """, kube=kube, dry_run=True)
    assert result.status == "failed"
    assert result.steps["scale"].status == "failed"
    assert "not found" in (result.steps["scale"].error or "")


def test_offline_dry_run_calls_nothing(tmp_path: Path, kube: KubeApi) -> None:
    kube.seed_deployment("web")
    kube.requests.clear()
    result = run(tmp_path, """
        steps:
          - id: get
            kubectl: get deployment web
          - id: scale
            kubectl: scale deployment/web --replicas=5
    """, kube=kube, dry_run=True, offline=True)
    assert result.status == "planned"
    assert {s.status for s in result.steps.values()} == {"planned"}
    assert kube.requests == []
    assert "--context test" in (result.steps["scale"].description or "")


def test_stdin_manifest_apply_and_its_rehearsal(tmp_path: Path, kube: KubeApi) -> None:
    manifest = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "settings"}, "data": {"mode": "{{ params.mode }}"}})
    body = f"""
        params:
          mode: {{type: str, default: blue}}
        steps:
          - id: apply
            kubectl:
              args: apply -f -
              stdin: '{manifest}'
    """
    planned = run(tmp_path, body, kube=kube, dry_run=True)
    assert planned.steps["apply"].status == "planned", planned.steps["apply"].error
    assert kube.get("configmap", NS, "settings") is None
    assert all(r.dry_run for r in kube.mutations()) and kube.mutations()
    done = run(tmp_path, body, kube=kube, params={"mode": "green"})
    assert done.status == "ok", done.error
    assert kube.get("configmap", NS, "settings")["data"] == {"mode": "green"}  # type: ignore[index]


def test_connection_context_namespace_and_relative_kubeconfig(tmp_path: Path, kube: KubeApi) -> None:
    shutil.copy(kube.kubeconfig_path, tmp_path / "cluster.kubeconfig")
    kube.seed_deployment("web", namespace="kube-system")
    kube.seed_deployment("web", namespace="default", replicas=4)
    result = run(tmp_path, """
        steps:
          - id: system
            kubectl: get deployment web -o json
          - id: explicit
            kubectl: get deployment web -n default -o json
    """, kube=kube, connection=(
        "  cluster: {kubernetes: {context: test, namespace: kube-system, kubeconfig: cluster.kubeconfig}}\n"))
    assert result.status == "ok", result.error
    system, explicit = result.steps["system"], result.steps["explicit"]
    assert system.description == (f"kubectl --kubeconfig {tmp_path / 'cluster.kubeconfig'} --context test "
                                  "--namespace kube-system get deployment web -o json")
    assert system.fields["json"]["metadata"]["namespace"] == "kube-system"
    # the args chose a namespace: the connection's is not added
    assert "--namespace" not in (explicit.description or "")
    assert explicit.fields["json"]["metadata"]["namespace"] == "default"
    paths = [r.path for r in kube.requests_for("GET", "/deployments/web")]
    assert "/apis/apps/v1/namespaces/kube-system/deployments/web" in paths
    assert "/apis/apps/v1/namespaces/default/deployments/web" in paths


def test_a_context_the_kubeconfig_lacks_is_used(tmp_path: Path, kube: KubeApi) -> None:
    result = run(tmp_path, """
        steps:
          - id: get
            kubectl: get pods
    """, kube=kube, connection=f"  cluster: {{kubernetes: {{context: nowhere, kubeconfig: {kube.kubeconfig_path}}}}}\n")
    assert result.steps["get"].status == "failed"
    assert "nowhere" in (result.steps["get"].error or "")


def test_failing_kubectl_gives_a_failed_step_with_stderr(tmp_path: Path, kube: KubeApi) -> None:
    result = run(tmp_path, """
        steps:
          - id: get
            kubectl: get nosuchthing
          - id: after
            kubectl: get pods
    """, kube=kube)
    assert result.status == "failed" and result.exit_code == 1
    step = result.steps["get"]
    assert step.status == "failed"
    assert step.fields["rc"] != 0
    assert "nosuchthing" in step.fields["stderr"]
    assert step.error is not None and step.error.startswith("kubectl exited with 1")
    assert "nosuchthing" in step.error
    assert result.steps["after"].status == "cancelled"


def test_timeout_kills_kubectl(tmp_path: Path, kube: KubeApi) -> None:
    kube.seed_deployment("web")
    kube.auto_rollout = False
    kube.kubectl("set", "image", "deployment/web", "web=nginx:2")
    result = run(tmp_path, """
        steps:
          - id: wait
            kubectl: rollout status deployment/web
            timeout: 2s
    """, kube=kube)
    assert result.steps["wait"].status == "timed_out"
    assert result.steps["wait"].duration < 10


def test_without_a_connection_kubectl_uses_its_environment(tmp_path: Path, kube: KubeApi) -> None:
    kube.seed_deployment("web")
    result = run(tmp_path, f"""
        steps:
          - id: get
            kubectl: get deployment web -o json
            env: {{KUBECONFIG: "{kube.kubeconfig_path}"}}
    """, kube=kube, connection="  db: {sqlite: ./x.db}\n")
    assert result.status == "ok", result.error
    assert result.steps["get"].fields["json"]["metadata"]["name"] == "web"
    assert result.steps["get"].description == "kubectl get deployment web -o json"


def test_missing_binary_is_a_clear_failure(tmp_path: Path, kube: KubeApi) -> None:
    result = run(tmp_path, """
        steps:
          - id: get
            kubectl: {args: get pods, kubectl: /nonexistent/kubectl}
    """, kube=kube)
    assert result.steps["get"].status == "failed"
    assert "kubectl not found" in (result.steps["get"].error or "")


def test_secrets_in_args_are_redacted(tmp_path: Path, kube: KubeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBE_TEST_TOKEN", "s3cr3t-token-value")
    kube.seed_deployment("web")
    result = run(tmp_path, """
        secrets:
          token: {env: KUBE_TEST_TOKEN}
        steps:
          - id: annotate
            kubectl: annotate deployment web token={{ secrets.token }} -o json
    """, kube=kube)
    assert result.status == "ok", result.error
    text = json.dumps(result.to_json())
    assert "s3cr3t-token-value" not in text
    assert "token=***" in (result.steps["annotate"].description or "")


def test_unbalanced_quotes_are_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("procedure: bad\nsteps:\n  - id: k\n    kubectl: get pods -l 'app=web\n")
    with pytest.raises(engine.ProcedureError) as info:
        engine.load(path)
    assert "cannot split the kubectl arguments" in str(info.value) and "bad.yml:4" in str(info.value)
