"""The third-party executor example: pip-installed, found through its entry point, run as a step."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.plugins import install_redis_plugin

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "examples" / "redis-executor"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The plugin installed as a user would (tests/helpers/plugins.py), seen through PYTHONPATH."""
    target = install_redis_plugin(tmp_path_factory.mktemp("plugin"))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}


def _fake_redis() -> Any:
    """The plugin's test server, loaded from its sources without putting them on sys.path (where
    importlib.metadata would find the plugin's metadata and this process would see its entry point)."""
    if "runproc_redis.fake" not in sys.modules:
        package = PLUGIN / "runproc_redis"
        spec = importlib.util.spec_from_file_location("runproc_redis", package / "__init__.py",
                                                      submodule_search_locations=[str(package)])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["runproc_redis"] = module
        spec.loader.exec_module(module)
    return importlib.import_module("runproc_redis.fake").FakeRedis


def test_a_redis_step_runs_through_the_cli(plugin_env: dict[str, str], tmp_path: Path) -> None:
    FakeRedis = _fake_redis()  # noqa: N806 - a class
    proc = tmp_path / "cache.yml"
    proc.write_text(textwrap.dedent("""\
        procedure: cache-check
        params:
          url: {type: str, required: true}
        steps:
          - id: ping
            redis: PING
            url: "{{ params.url }}"
            readonly: true
          - id: cluster
            redis: cluster info
            url: "{{ params.url }}"
            readonly: true
            verify:
              - assert: steps.cluster.info.cluster_state == 'ok'
          - id: flush
            redis: FLUSHDB
            url: "{{ params.url }}"
        """))
    env = {**plugin_env, "RUNPROC_STATE": f"sqlite:///{tmp_path}/state.db"}
    with FakeRedis() as server:
        dry = subprocess.run([sys.executable, "-m", "engine.cli", str(proc), "-p", f"url={server.url}",
                              "--dry-run", "--output", "json"], capture_output=True, text=True, env=env, timeout=60)
        assert dry.returncode == 0, dry.stderr
        steps = {s["id"]: s for s in json.loads(dry.stdout)["steps"]}
        assert steps["ping"]["status"] == "ok" and steps["ping"]["reply"] == "PONG"
        assert steps["flush"]["status"] == "planned"
        assert ["FLUSHDB"] not in server.commands

        real = subprocess.run([sys.executable, "-m", "engine.cli", str(proc), "-p", f"url={server.url}",
                               "--output", "json"], capture_output=True, text=True, env=env, timeout=60)
        assert real.returncode == 0, real.stderr
        steps = {s["id"]: s for s in json.loads(real.stdout)["steps"]}
        assert steps["cluster"]["info"]["cluster_state"] == "ok"
        assert ["FLUSHDB"] in server.commands


def test_validate_knows_the_plugin(plugin_env: dict[str, str], tmp_path: Path) -> None:
    proc = tmp_path / "typo.yml"
    proc.write_text("procedure: typo\nsteps:\n  - id: ping\n    redis: PING\n    timeuot: 5s\n")
    out = subprocess.run([sys.executable, "-m", "engine.cli", "validate", str(proc)], capture_output=True,
                         text=True, timeout=60, env=plugin_env)
    assert out.returncode == 2
    assert "typo.yml:5:5" in out.stderr and "unknown key 'timeuot'" in out.stderr
