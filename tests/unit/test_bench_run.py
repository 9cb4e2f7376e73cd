"""bench/run (issue 14, must-have 6): its options, the peers' files it writes, its table.

Nothing here installs a peer or runs one, and nothing is timed: the figures are the bench's
business. The tests check what the bench would run (files that parse, tasks that exist, one
alternation order) and that --help and a bad option never touch the peers' venv.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench import compare

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "bench" / "run"
SIZES = compare.Sizes(steps=7, sleeps=4, seconds=0.25, hosts=3)


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``bench/run ARGS`` with its cache folder in ``tmp_path`` (which must stay empty)."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, str(RUN), *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_bench_run_is_an_executable_script() -> None:
    assert os.access(RUN, os.X_OK)
    assert RUN.read_text().startswith("#!/usr/bin/env python3\n")


def test_help_names_every_workload_peer_and_option_and_installs_nothing(tmp_path: Path) -> None:
    done = _bench(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    for workload in ("W1", "W2", "W3", "version", "fanout"):
        assert f"\n  {workload} " in done.stdout, workload
    for word in ("go-task", "ansible-core", "pyinfra", "--rounds", "--quick", "--markdown"):
        assert word in done.stdout, word
    assert not (tmp_path / "cache").exists()


def test_an_unknown_workload_is_one_line_naming_the_known_ones(tmp_path: Path) -> None:
    done = _bench(tmp_path, "--workloads", "W1,W9")
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert "W9" in last and "W1, W2, W3, version, fanout" in last
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("script", ["runner.py", "fanout.py", "startup.py"])
def test_the_benches_it_imports_keep_their_own_command_line(script: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def _tasks(workload: str) -> dict[str, Any]:
    text = compare.taskfile(workload, SIZES)
    assert text is not None
    data = yaml.safe_load(text)
    assert data["version"] == "3"
    tasks: dict[str, Any] = data["tasks"]
    # every task named in deps or in a `task:` command is defined
    for task in tasks.values():
        for dep in task.get("deps", []):
            assert dep in tasks, dep
        for cmd in task.get("cmds", []):
            if isinstance(cmd, dict):
                for ref in (cmd.get("task"), cmd.get("defer", {}).get("task")):
                    assert ref is None or ref in tasks, ref
    return tasks


def test_the_taskfile_for_w1_runs_the_execs_in_one_task() -> None:
    tasks = _tasks("W1")
    assert tasks["w1"]["cmds"] == ["/bin/true"] * SIZES.steps


def test_the_taskfile_for_w2_runs_each_sleep_as_a_dep() -> None:
    tasks = _tasks("W2")
    deps = tasks["w2"]["deps"]
    assert len(deps) == len(set(deps)) == SIZES.sleeps
    assert all(tasks[d]["cmds"] == ["sleep 0.25"] for d in deps)


def test_the_taskfile_for_w3_has_its_ten_steps_and_a_deferred_tidy() -> None:
    tasks = _tasks("W3")
    called = [c["task"] for c in tasks["w3"]["cmds"] if "task" in c]
    assert called == ["probe", *(f"s{i}" for i in range(1, 10))]
    assert {"defer": {"task": "tidy"}} in tasks["w3"]["cmds"]
    data = yaml.safe_load(compare.taskfile("W3", SIZES) or "")
    assert set(data["vars"]) == {"VERSION", "REPLICAS", "DIR"}


def test_the_playbooks_target_hosts_of_the_inventory_on_the_local_connection() -> None:
    inventory = compare.ansible_inventory(SIZES, "/venv/bin/python")
    lines = [line for line in inventory.splitlines() if line and not line.startswith("[")]
    assert all("ansible_connection=local" in line and "ansible_python_interpreter=/venv/bin/python" in line
               for line in lines)
    assert len(lines) == 1 + SIZES.sleeps  # localhost and W2's hosts
    w1 = yaml.safe_load(compare.playbook("W1", SIZES) or "")
    assert [p["hosts"] for p in w1] == ["localhost"]
    assert [t["ansible.builtin.command"] for t in w1[0]["tasks"]] == ["/bin/true"] * SIZES.steps
    w2 = yaml.safe_load(compare.playbook("W2", SIZES) or "")
    assert w2[0]["hosts"] == "w2" and "[w2]" in inventory
    w3 = yaml.safe_load(compare.playbook("W3", SIZES) or "")
    block = w3[0]["tasks"][0]
    assert [t["name"] for t in block["always"]] == ["tidy"]
    assert len(block["block"]) == 11  # ten steps and s6's verify
    assert compare.playbook("version", SIZES) is None


def test_the_pyinfra_deploys_compile_and_call_one_operation_a_step() -> None:
    # W3: probe, s1-s6, s8, s9 and the tidy; s7 is a Python assert
    for workload, expected in (("W1", SIZES.steps), ("W3", 10)):
        text = compare.deploy(workload, SIZES)
        assert text is not None
        tree = ast.parse(text)
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "server.shell"]
        assert len(calls) == expected, workload
    assert compare.deploy("W2", SIZES) is None
    assert ("pyinfra", "W2") in compare.NOT_APPLICABLE


def test_peer_files_are_the_union_of_what_each_peer_has_for_a_workload() -> None:
    assert set(compare.peer_files("W1", SIZES)) == {"Taskfile.w1.yml", "w1.playbook.yml", "w1_deploy.py",
                                                    "hosts.ini"}
    assert set(compare.peer_files("W2", SIZES)) == {"Taskfile.w2.yml", "w2.playbook.yml", "hosts.ini"}
    assert compare.peer_files("version", SIZES) == {}


def test_the_pyinfra_fan_out_inventory_lists_the_loopback_hosts() -> None:
    hosts = [("h01", "127.0.0.2", 2201), ("h02", "127.0.0.3", 2202)]
    text = compare.pyinfra_inventory(hosts, "me", Path("/k/id"), Path("/k/known_hosts"))
    scope: dict[str, Any] = {}
    exec(compile(text, "inventory.py", "exec"), scope)  # what pyinfra does with an inventory file
    assert [name for name, _ in scope["bench"]] == ["h01", "h02"]
    for (_, data), (_, address, port) in zip(scope["bench"], hosts, strict=True):
        assert data["ssh_hostname"] == address and data["ssh_port"] == port
        assert data["ssh_known_hosts_file"] == "/k/known_hosts"
        assert data["ssh_strict_host_key_checking"] == "yes"


def _command(name: str) -> compare.Command:
    return compare.Command([name], {}, Path("."))


def test_a_round_alternates_runproc_with_each_peer_after_the_floor() -> None:
    w = compare.Workload("W1", "W1", "(bash loop)", _command("floor"), _command("runproc"),
                         {"go-task": _command("task"), "ansible-core": _command("ansible"), "pyinfra": None})
    assert [name for name, _ in w.order()] == ["floor", "runproc", "go-task", "runproc", "ansible-core"]
    w.cold = _command("runproc cold")
    assert [name for name, _ in w.order()][:3] == ["floor", "runproc cold", "runproc"]


def test_the_table_gives_medians_and_the_ratio_to_the_best_peer() -> None:
    w = compare.Workload("W1", "W1: 7 x /bin/true", "(bash loop)", None, _command("runproc"),
                         {"go-task": None, "ansible-core": None, "pyinfra": None})
    w.samples = {"floor": [0.1, 0.3, 0.2], "runproc": [0.5, 0.4, 0.9],
                 "go-task": [1.0, 1.0, 1.0], "pyinfra": [0.8, 0.6, 0.4]}
    header, row = compare.rows([w])
    assert header[-1] == "runproc / best peer"
    assert row[header.index("runproc")] == "0.500 (0.400–0.900)"
    assert row[header.index("runproc cold")] == "n/a"
    assert row[header.index("ansible-core")] == "n/a"
    assert row[-1] == "0.83 (pyinfra)"  # 0.5 over pyinfra's median 0.6
    assert row[1].startswith("0.200")


def test_markdown_replaces_only_what_is_between_the_markers(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Title\n\n{compare.BEGIN}\nold table\n{compare.END}\n\n## Details kept\n")
    compare.write_markdown(doc, "| new | table |")
    assert doc.read_text() == f"# Title\n\n{compare.BEGIN}\n| new | table |\n{compare.END}\n\n## Details kept\n"
    fresh = tmp_path / "fresh.md"
    compare.write_markdown(fresh, "| t |")
    assert fresh.read_text() == f"{compare.BEGIN}\n| t |\n{compare.END}\n"


def test_an_installed_venv_is_reused_without_calling_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "peers"
    (folder / "bin").mkdir(parents=True)
    for exe in (*compare.EXECUTABLES.values(), "python"):
        (folder / "bin" / exe).write_text("")
    (folder / ".runproc-bench").write_text(" ".join(compare.REQUIREMENTS) + "\n")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(compare.subprocess, "run", refuse)
    assert compare.ensure_peers(folder) == folder / "bin"


def test_the_peers_default_folder_follows_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compare.default_peers_dir() == tmp_path / "runproc-bench" / "peers"


def _tree(root: Path) -> Path:
    (root / "engine" / "__pycache__").mkdir(parents=True)
    (root / "engine" / "a.py").write_text("A = 1\n")
    (root / "engine" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"old")
    (root / "pyproject.toml").write_text('[project]\ndependencies = ["pydantic"]\n[tool.ruff]\nline-length = 120\n')
    for name in ("setup.py", "MANIFEST.in", "README.md"):
        (root / name).write_text(f"{name}\n")
    return root


def test_runprocs_fingerprint_follows_its_sources_not_its_bytecode(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    deps, code = compare.source_fingerprint(root)
    (root / "engine" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"new")
    assert compare.source_fingerprint(root) == (deps, code)
    (root / "engine" / "a.py").write_text("A = 2\n")  # an edit not committed is measured
    deps_after, edited = compare.source_fingerprint(root)
    assert deps_after == deps and edited != code
    (root / "engine" / "b.py").write_text("")  # a new module too
    assert compare.source_fingerprint(root) == (deps, compare.source_fingerprint(root)[1])
    assert compare.source_fingerprint(root)[1] != edited


def test_runprocs_dependencies_fingerprint_is_what_pyproject_requires(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    deps, _ = compare.source_fingerprint(root)
    # a linter's setting changes the code's fingerprint (pyproject.toml is built from), not the deps'
    (root / "pyproject.toml").write_text('[project]\ndependencies = ["pydantic"]\n[tool.ruff]\nline-length = 99\n')
    assert compare.source_fingerprint(root)[0] == deps
    (root / "pyproject.toml").write_text('[project]\ndependencies = ["pydantic", "httpx"]\n')
    assert compare.source_fingerprint(root)[0] != deps


def test_runprocs_venv_is_reused_while_its_sources_are_unchanged(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "runproc"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "runproc").write_text("")
    (folder / "bin" / "python").write_text("")
    deps, code = compare.source_fingerprint()
    (folder / ".runproc-bench").write_text(f"{deps} {code}\n")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(compare.subprocess, "run", refuse)
    assert compare.ensure_runproc(folder) == str(folder / "bin" / "runproc")
    (folder / ".runproc-bench").write_text(f"{deps} an-older-build\n")
    with pytest.raises(AssertionError, match="pip"):  # sources changed: it reinstalls
        compare.ensure_runproc(folder)


def test_the_python_floor_is_the_interpreter_runproc_starts(tmp_path: Path) -> None:
    script = tmp_path / "runproc"
    script.write_text("#!/opt/venv/bin/python3.11\nimport sys\n")
    assert compare.interpreter_of(str(script)) == "/opt/venv/bin/python3.11"
    script.write_text("#!/usr/bin/env python3\n")  # not a path to an interpreter: this one
    assert compare.interpreter_of(str(script)) == sys.executable
    script.write_text("#!/bin/sh\n'''exec' '/a path/python3' \"$0\" \"$@\"\n")  # pip's long-path preamble
    assert compare.interpreter_of(str(script)) == sys.executable
    assert compare.interpreter_of(str(tmp_path / "missing")) == sys.executable
    (tmp_path / "python").write_text("")  # a venv's bin/: the python beside the script
    assert compare.interpreter_of(str(script)) == str(tmp_path / "python")


def test_runprocs_default_folder_sits_beside_the_peers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compare.default_runproc_dir() == tmp_path / "runproc-bench" / "runproc"
