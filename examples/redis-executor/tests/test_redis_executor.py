"""The redis plugin: installed through its entry point, run against a fake RESP server."""

from __future__ import annotations

import importlib
import json
import socket
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _registered() -> bool:
    return any(ep.name == "redis" for ep in entry_points(group="runproc.executors"))


@pytest.fixture(scope="session")
def plugin() -> None:
    """Install the plugin (editable, idempotent) and make it importable in this process."""
    if not _registered():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(PLUGIN)],
                       check=True, capture_output=True)
    if str(PLUGIN) not in sys.path:  # an editable install's path hook loads only at startup
        sys.path.insert(0, str(PLUGIN))
    importlib.invalidate_caches()
    import engine.executors

    engine.executors._plugins = None  # rescan the entry points
    assert _registered(), "the runproc.executors:redis entry point is missing after pip install"


@pytest.fixture
def server(plugin: None):
    from runproc_redis.fake import FakeRedis

    with FakeRedis(password="s3cret-pw") as s:
        yield s


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "redis.yml"
    path.write_text(textwrap.dedent(body))
    return path


PROC = """\
    procedure: redis-check
    params:
      url: {type: str, required: true}
    secrets:
      redis_password: {env: REDIS_PASSWORD}
    steps:
      - id: ping
        redis: PING
        url: "{{ params.url }}"
        password: "{{ secrets.redis_password }}"
      - id: cluster
        redis: cluster info
        url: "{{ params.url }}"
        password: "{{ secrets.redis_password }}"
        verify:
          - assert: steps.cluster.info.cluster_state == 'ok'
      - id: stats
        redis: [INFO, stats]
        url: "{{ params.url }}"
        password: "{{ secrets.redis_password }}"
      - id: hit_rate
        assert: steps.stats.info.keyspace_hits / (steps.stats.info.keyspace_hits + steps.stats.info.keyspace_misses) >= 0.9
      - id: mark
        redis: SET deploy:last {{ run.id }}
        url: "{{ params.url }}"
        password: "{{ secrets.redis_password }}"
"""


def test_engine_run_ping_info_and_a_write(server, tmp_path, monkeypatch):
    import engine

    monkeypatch.setenv("REDIS_PASSWORD", "s3cret-pw")
    proc = engine.load(write(tmp_path, PROC))
    result = engine.run(proc, params={"url": server.url}, journal=False)
    assert result.ok, result.error
    assert result.steps["ping"].fields["reply"] == "PONG"
    assert result.steps["cluster"].fields["info"]["cluster_slots_ok"] == 16384
    assert result.steps["stats"].fields["info"]["keyspace_hits"] == 950
    assert ["SET", "deploy:last", result.run_id] in server.commands
    assert server.data[0]["deploy:last"] == result.run_id


def test_dry_run_sends_reads_not_writes(server, tmp_path, monkeypatch):
    import engine

    monkeypatch.setenv("REDIS_PASSWORD", "s3cret-pw")
    result = engine.run(engine.load(write(tmp_path, PROC)), params={"url": server.url}, dry_run=True,
                        journal=False)
    assert result.ok
    assert [result.steps[s].status for s in ("ping", "cluster", "stats", "mark")] == ["ok", "ok", "ok", "planned"]
    assert result.steps["mark"].description.startswith("redis[127.0.0.1:")
    assert not any(c[0] == "SET" for c in server.commands)


def test_cli_through_the_entry_point(server, tmp_path):
    """A fresh process finds the executor through the installed entry point alone."""
    env = {"REDIS_PASSWORD": "s3cret-pw", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "RUNPROC_STATE": f"sqlite:///{tmp_path}/state.db"}
    out = subprocess.run([sys.executable, "-m", "engine.cli", str(write(tmp_path, PROC)), "-p", f"url={server.url}",
                          "--output", "json"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    steps = {s["id"]: s for s in doc["steps"]}
    assert steps["ping"]["reply"] == "PONG"
    assert "s3cret-pw" not in out.stdout


def test_error_replies_fail_the_step(server, tmp_path, monkeypatch):
    import engine

    monkeypatch.setenv("REDIS_PASSWORD", "wrong")
    result = engine.run(engine.load(write(tmp_path, PROC)), params={"url": server.url}, journal=False)
    assert result.exit_code == 1
    assert result.root_cause == "ping"
    assert "WRONGPASS" in result.steps["ping"].error


def test_unreachable_server_is_a_clear_failure(plugin, tmp_path, monkeypatch):
    import engine

    monkeypatch.setenv("REDIS_PASSWORD", "x")
    result = engine.run(engine.load(write(tmp_path, PROC)), params={"url": f"redis://127.0.0.1:{free_port()}/0"},
                        journal=False)
    assert result.steps["ping"].status == "failed"
    assert "cannot connect" in result.steps["ping"].error


def test_validation_rejects_unknown_options(plugin, tmp_path):
    import engine

    path = write(tmp_path, """\
        procedure: bad
        steps:
          - id: ping
            redis: PING
            uri: redis://x
        """)
    with pytest.raises(engine.ProcedureError) as err:
        engine.load(path)
    assert "unknown key 'uri'" in str(err.value.problems[0])
    assert "did you mean 'url'" in str(err.value.problems[0])


def test_effect_and_parsing(plugin):
    from runproc_redis import RedisExecutor, RedisOptions, parse_info, split_command

    from engine.executors.base import Effect

    ex = RedisExecutor()
    for cmd, effect in [("PING", Effect.READ), ("cluster info", Effect.READ), ("INFO stats", Effect.READ),
                        (["GET", "k"], Effect.READ), ("CONFIG GET maxmemory", Effect.READ),
                        ("CONFIG SET maxmemory 1gb", Effect.WRITE), ("SET k v", Effect.WRITE),
                        ("FLUSHALL", Effect.WRITE), ("CLUSTER FAILOVER", Effect.WRITE),
                        ("{{ params.cmd }} x", Effect.WRITE)]:
        assert ex.effect(RedisOptions.model_validate({"command": cmd})) == effect, cmd
    assert split_command("SET k {{ params.value | upper }} 'a b'") == ["SET", "k", "{{ params.value | upper }}", "a b"]
    info = parse_info("# Stats\r\nkeyspace_hits:950\r\nratio:0.5\r\ndb0:keys=3,expires=0\r\nrole:master\r\n")
    assert info == {"keyspace_hits": 950, "ratio": 0.5, "db0": {"keys": 3, "expires": 0}, "role": "master"}
