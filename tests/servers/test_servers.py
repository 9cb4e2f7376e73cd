"""Smoke tests for the real-server fixtures (one or a few per fixture)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.servers.http import HttpServer
from tests.servers.kube import KubeApi
from tests.servers.postgres import PostgresServer
from tests.servers.s3 import S3Server
from tests.servers.sshd import SshHost, write_inventory
from tests.servers.temporal import TemporalServer, start_worker, stop_worker


# ---------------------------------------------------------------- postgres
def test_postgres_select_1(postgres_server: PostgresServer) -> None:
    assert postgres_server.psql("SELECT 1") == "1"
    assert postgres_server.host == "127.0.0.1"
    assert postgres_server.dsn == f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres"
    assert (postgres_server.bin_dir / "pg_ctl").exists()


def test_pg_db_is_fresh_and_has_pg_stat_statements(pg_db: str) -> None:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
        conn.execute("CREATE EXTENSION pg_stat_statements")
        conn.execute("CREATE TABLE t (id int)")
        assert conn.execute("SELECT count(*) >= 0 FROM pg_stat_statements").fetchone() == (True,)


# ---------------------------------------------------------------- sshd
def test_sshd_hosts_exec(sshd_hosts: list[SshHost], known_hosts_file: Path) -> None:
    assert [h.address for h in sshd_hosts] == ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    assert [h.name for h in sshd_hosts] == ["node1", "node2", "node3", "node4"]
    for host in sshd_hosts:
        client = host.ssh_client(known_hosts=known_hosts_file)
        try:
            _, stdout, _ = client.exec_command("echo ok $RUNPROC_NODE")
            assert stdout.read().decode().strip() == f"ok {host.name}"
        finally:
            client.close()
        assert host.host_key_line().startswith(f"[{host.address}]:{host.port} ssh-ed25519 AAAA")
    assert known_hosts_file.read_text().count("ssh-ed25519") == len(sshd_hosts)


def test_sshd_openssh_client_and_inventory(
    sshd_hosts: list[SshHost], known_hosts_file: Path, tmp_path: Path
) -> None:
    host = sshd_hosts[-1]
    out = subprocess.run(
        [
            "ssh",
            "-p",
            str(host.port),
            "-i",
            str(host.client_key_path),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts_file}",
            "-o",
            "StrictHostKeyChecking=yes",
            f"{host.user}@{host.address}",
            "echo $RUNPROC_NODE",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == host.name
    inv = write_inventory(
        tmp_path / "hosts.ini", sshd_hosts, extra_vars={"env_name": "test"}, known_hosts=known_hosts_file
    )
    text = inv.read_text()
    assert text.startswith("[nodes]\nnode1 ansible_host=127.0.0.2 ")
    assert f"ansible_port={host.port}" in text and "[nodes:vars]\nenv_name=test" in text


# ---------------------------------------------------------------- http
def test_http_records_and_sequences(http: HttpServer) -> None:
    assert httpx.get(f"{http.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{http.url}/nope").status_code == 404
    http.set_route("POST", "/deploy", sequence=[(503, "busy"), (503, "busy"), (200, {"done": True})])
    codes = [
        httpx.post(f"{http.url}/deploy?x=1", json={"v": i}, headers={"X-Try": str(i)}).status_code
        for i in range(4)
    ]
    assert codes == [503, 503, 200, 200]
    reqs = http.requests_to("/deploy", "POST")
    assert len(reqs) == 4
    assert reqs[0].query == {"x": ["1"]} and reqs[2].json() == {"v": 2} and reqs[3].headers["x-try"] == "3"
    assert [r.path for r in http.requests][:2] == ["/health", "/nope"]


def test_http_reset_between_tests(http: HttpServer) -> None:
    assert http.requests == []
    assert ("POST", "/deploy") not in http.routes


# ---------------------------------------------------------------- s3
def test_s3_put_get(s3_server: S3Server, s3_bucket: str) -> None:
    s3 = s3_server.client()
    s3.put_object(Bucket=s3_bucket, Key="a/b.txt", Body=b"hello")
    assert s3.get_object(Bucket=s3_bucket, Key="a/b.txt")["Body"].read() == b"hello"
    assert s3_server.endpoint_url.startswith("http://127.0.0.1:")


# ---------------------------------------------------------------- kubernetes stand-in
def _seed(kube: KubeApi) -> None:
    kube.seed_deployment("web", replicas=2, containers={"app": "nginx:1.25", "sidecar": "busybox:1"})
    kube.seed_service("web", selector={"app": "web", "version": "blue"})


def test_kubectl_get(kube: KubeApi) -> None:
    _seed(kube)
    dep = json.loads(kube.kubectl("get", "deployment", "web", "-o", "json").stdout)
    assert dep["metadata"]["namespace"] == "unjucks-prod" and dep["spec"]["replicas"] == 2
    pods = json.loads(kube.kubectl("get", "pods", "-o", "json").stdout)["items"]
    assert len(pods) == 2 and all(p["status"]["phase"] == "Running" for p in pods)
    assert "web" in kube.kubectl("get", "deployments").stdout


def test_kubectl_scale_and_dry_run(kube: KubeApi) -> None:
    _seed(kube)
    before = kube.get("deployment", "unjucks-prod", "web")
    kube.kubectl("scale", "deployment/web", "--replicas=5", "--dry-run=server")
    assert kube.get("deployment", "unjucks-prod", "web") == before
    dry = [r for r in kube.mutations() if r.path.endswith("/deployments/web/scale")]
    assert len(dry) == 1 and dry[0].query["dryRun"] == ["All"] and dry[0].dry_run
    kube.kubectl("scale", "deployment/web", "--replicas=3")
    assert kube.get("deployment", "unjucks-prod", "web")["spec"]["replicas"] == 3  # type: ignore[index]
    assert len(kube.objects("pods", "unjucks-prod")) == 3


def test_kubectl_set_image(kube: KubeApi) -> None:
    _seed(kube)
    kube.kubectl("set", "image", "deployment/web", "app=nginx:1.27", "--dry-run=server")
    kube.kubectl("set", "image", "deployment/web", "app=nginx:1.27")
    dep = kube.get("deployment", "unjucks-prod", "web")
    assert dep is not None
    assert dep["spec"]["template"]["spec"]["containers"] == [
        {"name": "app", "image": "nginx:1.27"},
        {"name": "sidecar", "image": "busybox:1"},
    ]
    assert dep["metadata"]["generation"] == 2 and dep["status"]["observedGeneration"] == 2
    assert [r.dry_run for r in kube.mutations()] == [True, False]


def test_kubectl_patch_service(kube: KubeApi) -> None:
    _seed(kube)
    patch = '{"spec":{"selector":{"version":"green"}}}'
    kube.kubectl("patch", "service", "web", "-p", patch, "--dry-run=server")
    assert kube.get("svc", "unjucks-prod", "web")["spec"]["selector"]["version"] == "blue"  # type: ignore[index]
    kube.kubectl("patch", "service", "web", "-p", patch)
    assert kube.get("svc", "unjucks-prod", "web")["spec"]["selector"] == {"app": "web", "version": "green"}  # type: ignore[index]


def test_kubectl_rollout_status(kube: KubeApi) -> None:
    _seed(kube)
    assert (
        "successfully rolled out"
        in kube.kubectl("rollout", "status", "deployment/web", "--timeout=10s").stdout
    )
    kube.auto_rollout = False
    kube.kubectl("set", "image", "deployment/web", "app=nginx:2")
    out = kube.kubectl("rollout", "status", "deployment/web", "--timeout=1s", check=False)
    assert out.returncode != 0


def test_kubectl_rollout_restart_history_undo(kube: KubeApi) -> None:
    _seed(kube)
    kube.kubectl("set", "image", "deployment/web", "app=nginx:1.27")
    kube.kubectl("rollout", "restart", "deployment/web")
    dep = kube.get("deployment", "unjucks-prod", "web")
    assert "kubectl.kubernetes.io/restartedAt" in dep["spec"]["template"]["metadata"]["annotations"]  # type: ignore[index]
    history = kube.kubectl("rollout", "history", "deployment/web").stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2", "3"]
    kube.kubectl("rollout", "undo", "deployment/web", "--dry-run=server")
    assert kube.get("deployment", "unjucks-prod", "web") == dep
    kube.kubectl("rollout", "undo", "deployment/web")
    dep = kube.get("deployment", "unjucks-prod", "web")
    assert dep is not None and "annotations" not in dep["spec"]["template"]["metadata"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"


def test_kubectl_apply_and_delete(kube: KubeApi, tmp_path: Path) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: '1'\n")
    kube.kubectl("apply", "-f", str(manifest))
    assert kube.get("configmap", "unjucks-prod", "cfg")["data"] == {"a": "1"}  # type: ignore[index]
    kube.kubectl("delete", "-f", str(manifest), "--dry-run=server")
    assert kube.get("configmap", "unjucks-prod", "cfg") is not None
    kube.kubectl("delete", "-f", str(manifest))
    assert kube.get("configmap", "unjucks-prod", "cfg") is None


# ---------------------------------------------------------------- temporal dev server
def _start_unhandled_workflow(address: str, namespace: str, workflow_id: str, procedure: str) -> str:
    """Start a workflow no worker serves (its history stays at the first workflow task); returns the run id."""
    from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
    from temporalio.client import Client
    from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

    async def go() -> str:
        client = await Client.connect(address, namespace=namespace)
        info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
        assert info.server_version
        attrs = TypedSearchAttributes([
            SearchAttributePair(SearchAttributeKey.for_keyword("RunprocProcedure"), procedure),
            SearchAttributePair(SearchAttributeKey.for_keyword("RunprocStatus"), "running"),
        ])
        handle = await client.start_workflow("NobodyServesThis", id=workflow_id, task_queue="runproc-smoke",
                                             search_attributes=attrs)
        deadline = time.monotonic() + 10
        while True:  # visibility is eventually consistent
            found = [w.id async for w in client.list_workflows(f"RunprocProcedure = '{procedure}'")]
            if found or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert found == [workflow_id]
        return str(handle.result_run_id)

    return asyncio.run(go())


def _describe_status(server: TemporalServer, workflow_id: str) -> str:
    out = server.cli("workflow", "describe", "--workflow-id", workflow_id, "--output", "json")
    return json.loads(out.stdout)["workflowExecutionInfo"]["status"]


def test_temporal_server_answers(temporal_server: TemporalServer) -> None:
    server = temporal_server
    assert server.address == f"127.0.0.1:{server.port}" and server.namespace == "default"
    assert server.engine_url == f"temporal://127.0.0.1:{server.port}"
    assert server.binary.is_file() and server.db_path.is_file() and server.log_path.is_file()
    assert server.running and 0 < server.start_seconds < 30
    # every listening socket (gRPC, HTTP API, metrics, internal services) is on loopback; no UI; no children
    listening = server.listening_addresses()
    assert (server.host, server.port) in listening and len(listening) >= 2
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening
    assert Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split() == []
    assert server.search_attributes() == {"RunprocProcedure": "Keyword", "RunprocStatus": "Keyword"}

    wid = f"smoke-{uuid.uuid4().hex[:8]}"
    run_id = _start_unhandled_workflow(server.address, server.namespace, wid, procedure=wid)
    history = json.loads(server.workflow_show_json(wid))
    assert history["events"][0]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED"
    assert json.loads(server.workflow_show_json(wid, run_id=run_id))["events"][0]["eventId"] == "1"
    server.cli("workflow", "terminate", "--workflow-id", wid, "--reason", "smoke test")
    assert _describe_status(server, wid) == "WORKFLOW_EXECUTION_STATUS_TERMINATED"


def test_temporal_create_namespace(temporal_server: TemporalServer) -> None:
    name = f"runproc-{uuid.uuid4().hex[:8]}"
    assert temporal_server.create_namespace(name) == name
    assert temporal_server.search_attributes(name) == {"RunprocProcedure": "Keyword", "RunprocStatus": "Keyword"}
    wid = f"ns-{uuid.uuid4().hex[:8]}"
    _start_unhandled_workflow(temporal_server.address, name, wid, procedure=wid)
    temporal_server.cli("workflow", "terminate", "--workflow-id", wid, "--reason", "smoke", namespace=name)


def test_temporal_server_fresh_stop_kill_restart(
    temporal_server_fresh: TemporalServer, temporal_server: TemporalServer
) -> None:
    server = temporal_server_fresh
    assert server.port != temporal_server.port and server.db_path != temporal_server.db_path
    wid = f"durable-{uuid.uuid4().hex[:8]}"
    _start_unhandled_workflow(server.address, server.namespace, wid, procedure="durable")
    port, pid = server.port, server.pid
    assert server.stop() is not None and not server.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    server.start()
    assert server.port == port and server.pid != pid
    assert _describe_status(server, wid) == "WORKFLOW_EXECUTION_STATUS_RUNNING"
    server.kill()  # a crash: SIGKILL, then the same db file and port again
    assert not server.running
    server.restart(downtime=0.2)
    assert _describe_status(server, wid) == "WORKFLOW_EXECUTION_STATUS_RUNNING"
    assert server.search_attributes() == {"RunprocProcedure": "Keyword", "RunprocStatus": "Keyword"}


def test_temporal_worker_helpers(temporal_server: TemporalServer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        start_worker("10.1.2.3:7233", "runproc")
    # stop_worker: SIGTERM first, SIGKILL when the process ignores it
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         "print('up', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    assert stubborn.stdout is not None and stubborn.stdout.readline().strip() == "up"
    stubborn.stdout.close()
    assert stop_worker(stubborn, timeout=0.5) == -9
    assert temporal_server.pollers("no-worker-here") == []
