"""Fan-out over SSH (``on:``) against real sshd processes on 127.0.0.2-5 (tests/servers/sshd.py).

Every test points the client at its own known_hosts file (through the inventory or the
host var) and at a temporary HOME, so the real ~/.ssh is never read or written.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.execution import events as ev
from engine.execution.fanout import batch_sizes, too_many_failures
from engine.transports.ssh import parse_jumps, parse_ssh_args, settings_for, wrapped
from tests.servers.sshd import SshHost, write_inventory


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch HOME: paramiko's look_for_keys and ~/.ssh/known_hosts resolve inside it."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def write_proc(tmp: Path, text: str, name: str = "proc.yml") -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def run(proc: Path, tmp: Path, **options: Any) -> engine.RunResult:
    return engine.run(proc, state=f"sqlite:///{tmp}/state.db", **options)


def inventory(tmp: Path, hosts: list[SshHost], known_hosts: Path, *, roles: dict[str, str] | None = None,
              extra_vars: dict[str, Any] | None = None) -> Path:
    path = write_inventory(tmp / "inventory.ini", hosts, extra_vars=extra_vars, known_hosts=known_hosts)
    for name, role in (roles or {}).items():
        (tmp / "host_vars").mkdir(exist_ok=True)
        (tmp / "host_vars" / f"{name}.yml").write_text(f"role: {role}\n")
    return path


def marker(host: SshHost, tag: str) -> Path:
    return host.workdir / tag


def accepted_logins(host: SshHost) -> int:
    return host.log_path.read_text(errors="replace").count("Accepted publickey")


def statuses(result: engine.RunResult, step: str) -> dict[str, str]:
    hosts = result.steps[step].hosts
    assert hosts is not None
    return {name: r.status for name, r in hosts.items()}


# ---------------------------------------------------------------- fan-out basics


def test_fanout_result_per_host_with_host_template(sshd_hosts: list[SshHost], known_hosts_file: Path,
                                                   tmp_path: Path) -> None:
    inv = inventory(tmp_path, sshd_hosts, known_hosts_file,
                    roles={"node1": "db", "node2": "web", "node3": "web", "node4": "cache"})
    proc = write_proc(tmp_path, f"""
        procedure: fanout-basic
        inventory: {inv.name}
        steps:
          - id: hello
            on: nodes
            shell: echo {{{{ host.name }}}} {{{{ host.vars.role }}}} $RUNPROC_NODE {{{{ host.address }}}}
    """)
    events: list[ev.Event] = []
    result = run(proc, tmp_path, on_event=events.append)
    assert result.ok, result.error
    step = result.steps["hello"]
    assert step.status == "ok"
    assert step.hosts is not None and list(step.hosts) == ["node1", "node2", "node3", "node4"]
    roles = {"node1": "db", "node2": "web", "node3": "web", "node4": "cache"}
    for h in sshd_hosts:
        r = step.hosts[h.name]
        assert r.status == "ok"
        assert r.fields["rc"] == 0
        assert r.fields["stdout"] == f"{h.name} {roles[h.name]} {h.name} {h.address}\n"
    progress = [e.message for e in events if isinstance(e, ev.StepProgress) and e.step_id == "hello"]
    assert progress[-1] == "4/4 hosts ok"
    output_hosts = {e.host for e in events if isinstance(e, ev.StepOutput) and e.step_id == "hello"}
    assert output_hosts == {"node1", "node2", "node3", "node4"}
    as_json = result.to_json()["steps"][0]
    assert as_json["hosts"]["node3"]["status"] == "ok"
    assert as_json["hosts"]["node3"]["stdout"].startswith("node3 web")


def test_env_cwd_stdin_and_json_over_ssh(sshd_hosts: list[SshHost], known_hosts_file: Path,
                                         tmp_path: Path) -> None:
    inv = inventory(tmp_path, sshd_hosts[:1], known_hosts_file)
    proc = write_proc(tmp_path, f"""
        procedure: fanout-env
        inventory: {inv.name}
        steps:
          - id: probe
            on: node1
            env: {{GREETING: "it's a test; $HOME `id`"}}
            shell:
              cmd: 'printf "{{\\"greeting\\": \\"%s\\", \\"dir\\": \\"%s\\", \\"in\\": \\"%s\\"}}" "$GREETING" "$(pwd)" "$(cat)"'
              cwd: {sshd_hosts[0].workdir}
              stdin: from-stdin
    """)
    result = run(proc, tmp_path)
    assert result.ok, result.error
    fields = result.steps["probe"].hosts["node1"].fields  # type: ignore[index]
    assert fields["json"] == {"greeting": "it's a test; $HOME `id`", "dir": str(sshd_hosts[0].workdir),
                              "in": "from-stdin"}


def test_limit_narrows_the_hosts(sshd_hosts: list[SshHost], known_hosts_file: Path, tmp_path: Path) -> None:
    inv = inventory(tmp_path, sshd_hosts, known_hosts_file)
    proc = write_proc(tmp_path, """
        procedure: fanout-limit
        steps:
          - id: hello
            on: nodes
            shell: echo $RUNPROC_NODE
          - id: others
            on: node4
            shell: echo never
    """)
    result = run(proc, tmp_path, inventory=str(inv), limit="node1,node3")
    assert result.ok, result.error
    assert statuses(result, "hello") == {"node1": "ok", "node3": "ok"}
    # --limit leaving none of a step's hosts skips it, as ansible-playbook skips the play
    assert result.steps["others"].status == "skipped"
    assert "--limit" in result.steps["others"].notes[0]

    bad = run(proc, tmp_path, inventory=str(inv), limit="nosuchhost")
    assert bad.steps["hello"].status == "failed"
    assert "--limit 'nosuchhost' matches no host" in (bad.steps["hello"].error or "")


def test_empty_match_is_an_error_unless_optional(sshd_hosts: list[SshHost], known_hosts_file: Path,
                                                 tmp_path: Path) -> None:
    inv = inventory(tmp_path, sshd_hosts[:1], known_hosts_file)
    proc = write_proc(tmp_path, f"""
        procedure: fanout-empty
        inventory: {inv.name}
        steps:
          - id: typo
            on: nodez
            shell: echo hi
    """)
    result = run(proc, tmp_path)
    assert result.exit_code == 1
    error = result.steps["typo"].error or ""
    assert "no host in the inventory matches 'nodez'" in error
    assert "proc.yml:" in error  # located at the step's 'on'

    proc = write_proc(tmp_path, f"""
        procedure: fanout-optional
        inventory: {inv.name}
        steps:
          - id: canaries
            on: "?canaries"
            shell: echo hi
          - id: after
            on: node1
            shell: echo after
    """)
    result = run(proc, tmp_path)
    assert result.ok, result.error
    assert result.steps["canaries"].status == "skipped"
    assert result.steps["after"].status == "ok"


def test_no_inventory_is_a_clear_error(tmp_path: Path) -> None:
    proc = write_proc(tmp_path, """
        procedure: fanout-noinv
        steps:
          - id: hello
            on: all
            shell: echo hi
    """)
    result = run(proc, tmp_path)
    assert result.steps["hello"].status == "failed"
    assert "no inventory was given: pass -i INVENTORY" in (result.steps["hello"].error or "")


# ---------------------------------------------------------------- serial, max_fail, rollback


def test_serial_1_max_fail_0_stops_after_first_failure(sshd_hosts: list[SshHost], known_hosts_file: Path,
                                                       tmp_path: Path) -> None:
    inv = inventory(tmp_path, sshd_hosts, known_hosts_file)
    tag = f"ran-{uuid.uuid4().hex[:8]}"
    proc = write_proc(tmp_path, f"""
        procedure: fanout-serial
        inventory: {inv.name}
        steps:
          - id: rolling
            on: nodes
            serial: 1
            shell: touch "$RUNPROC_NODE_DIR/{tag}" && test {{{{ host.name }}}} != node2
    """)
    result = run(proc, tmp_path)
    assert result.exit_code == 1
    assert statuses(result, "rolling") == {"node1": "ok", "node2": "failed", "node3": "cancelled",
                                           "node4": "cancelled"}
    step = result.steps["rolling"]
    assert step.status == "failed"
    assert "1 of 4 hosts failed: node2: command exited with 1" in (step.error or "")
    assert [marker(h, tag).exists() for h in sshd_hosts] == [True, True, False, False]
    assert "max_fail 0" in (step.hosts["node3"].error or "")  # type: ignore[index]


def test_max_fail_tolerates_failures_within_the_batch(sshd_hosts: list[SshHost], known_hosts_file: Path,
                                                      tmp_path: Path) -> None:
    inv = inventory(tmp_path, sshd_hosts, known_hosts_file)
    proc = write_proc(tmp_path, f"""
        procedure: fanout-maxfail
        inventory: {inv.name}
        steps:
          - id: tolerant
            on: nodes
            serial: 2
            max_fail: 50%
            shell: test {{{{ host.name }}}} != node2
          - id: next
            on: nodes
            shell: echo next
          - id: cleanup_anyway
            needs: []
            on: nodes
            shell: echo independent
    """)
    result = run(proc, tmp_path)
    assert result.ok, result.error
    assert statuses(result, "tolerant") == {"node1": "ok", "node2": "failed", "node3": "ok", "node4": "ok"}
    assert result.steps["tolerant"].status == "ok"
    assert any("tolerated by max_fail 50%" in n for n in result.steps["tolerant"].notes)
    # as in an Ansible play, the failed host is left out of the steps that follow from it
    assert result.steps["next"].status == "ok"
    assert statuses(result, "next") == {"node1": "ok", "node2": "skipped", "node3": "ok", "node4": "ok"}
    assert "failed in step tolerant" in result.steps["next"].hosts["node2"].notes[0]  # type: ignore[index]
    # a step that does not need it still reaches every host
    assert set(statuses(result, "cleanup_anyway").values()) == {"ok"}


def test_rollback_runs_only_where_the_step_succeeded(sshd_hosts: list[SshHost], known_hosts_file: Path,
                                                     tmp_path: Path) -> None:
    inv = inventory(tmp_path, sshd_hosts, known_hosts_file)
    tag = f"undone-{uuid.uuid4().hex[:8]}"
    proc = write_proc(tmp_path, f"""
        procedure: fanout-rollback
        inventory: {inv.name}
        steps:
          - id: change
            on: nodes
            shell: test {{{{ host.name }}}} != node2
            rollback:
              shell: echo {{{{ host.name }}}} > "$RUNPROC_NODE_DIR/{tag}"
    """)
    result = run(proc, tmp_path)
    assert result.exit_code == 1  # failed, rollback complete
    assert statuses(result, "change") == {"node1": "rolled_back", "node2": "failed", "node3": "rolled_back",
                                          "node4": "rolled_back"}
    for h in sshd_hosts:
        if h.name == "node2":
            assert not marker(h, tag).exists()
        else:
            assert marker(h, tag).read_text() == f"{h.name}\n"
    step = result.steps["change"]
    assert step.rollback is not None and step.rollback.status == "ok"
    assert step.status == "failed"  # the root cause keeps its status; the undo is in .rollback


# ---------------------------------------------------------------- host keys


def test_unknown_host_key_is_refused_before_auth_then_accepted(sshd_hosts: list[SshHost], tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    inv = inventory(tmp_path, sshd_hosts[:2], known)
    tag = f"unknown-{uuid.uuid4().hex[:8]}"
    proc = write_proc(tmp_path, f"""
        procedure: fanout-unknown
        inventory: {inv.name}
        steps:
          - id: touch
            on: nodes
            shell: touch "$RUNPROC_NODE_DIR/{tag}"
    """)
    logins = [accepted_logins(h) for h in sshd_hosts[:2]]
    result = run(proc, tmp_path)
    assert result.exit_code == 1
    for h in sshd_hosts[:2]:
        error = result.steps["touch"].hosts[h.name].error or ""  # type: ignore[index]
        assert f"unknown host key for [{h.address}]:{h.port}" in error
        assert "--accept-new-hosts" in error
        assert f"ssh-keyscan -p {h.port} {h.address} >> {known}" in error
        assert not marker(h, tag).exists()
    time.sleep(0.2)
    assert [accepted_logins(h) for h in sshd_hosts[:2]] == logins  # no authentication even started
    assert known.read_text() == ""

    accepted: list[str] = []
    result = run(proc, tmp_path, accept_new_hosts=True,
                 on_event=lambda e: accepted.append(e.text) if isinstance(e, ev.Note) else None)
    assert result.ok, result.error
    assert all(marker(h, tag).exists() for h in sshd_hosts[:2])
    assert sorted(known.read_text().splitlines()) == sorted(h.host_key_line() for h in sshd_hosts[:2])
    assert any(f"recorded in {known}" in text for text in accepted)
    # recorded: a plain run now passes
    assert run(proc, tmp_path).ok


def test_inventory_may_accept_new_hosts(sshd_hosts: list[SshHost], tmp_path: Path) -> None:
    known = tmp_path / "kh" / "known_hosts"  # the directory is created too
    inv = inventory(tmp_path, sshd_hosts[:1], known, extra_vars={"runproc_accept_new_hosts": True})
    proc = write_proc(tmp_path, f"""
        procedure: fanout-inv-accept
        inventory: {inv.name}
        steps:
          - id: hello
            on: all
            shell: echo ok
    """)
    assert run(proc, tmp_path).ok
    assert known.read_text() == sshd_hosts[0].host_key_line() + "\n"


def test_changed_host_key_is_always_refused(sshd_hosts: list[SshHost], tmp_path: Path) -> None:
    node1, node2 = sshd_hosts[:2]
    known = tmp_path / "known_hosts"
    # node2's key recorded under node1's name: to the client, node1's key "changed"
    wrong = f"[{node1.address}]:{node1.port} " + " ".join(node2.host_key_line().split()[1:])
    known.write_text(f"# a comment\n{wrong}\n")
    inv = inventory(tmp_path, [node1], known)
    tag = f"changed-{uuid.uuid4().hex[:8]}"
    proc = write_proc(tmp_path, f"""
        procedure: fanout-changed
        inventory: {inv.name}
        steps:
          - id: touch
            on: node1
            shell: touch "$RUNPROC_NODE_DIR/{tag}"
    """)
    logins = accepted_logins(node1)
    result = run(proc, tmp_path, accept_new_hosts=True)
    assert result.exit_code == 1
    error = result.steps["touch"].hosts["node1"].error or ""  # type: ignore[index]
    assert f"HOST KEY CHANGED for [{node1.address}]:{node1.port}" in error
    assert f"{known}:2" in error and "remove line 2" in error
    assert not marker(node1, tag).exists()
    assert known.read_text() == f"# a comment\n{wrong}\n"  # not "fixed" behind the operator's back
    time.sleep(0.2)
    assert accepted_logins(node1) == logins


def test_known_hosts_file_host_var_and_hashed_entries(sshd_hosts: list[SshHost], tmp_path: Path) -> None:
    node1 = sshd_hosts[0]
    known = tmp_path / "hashed_known_hosts"
    known.write_text(node1.host_key_line() + "\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], check=True, capture_output=True)
    assert node1.address not in known.read_text()
    inv = tmp_path / "inventory.yml"
    inv.write_text(json.dumps({"all": {"hosts": {"n1": {
        "ansible_host": node1.address, "ansible_port": node1.port, "ansible_user": node1.user,
        "ansible_ssh_private_key_file": str(node1.client_key_path),
        "ansible_ssh_known_hosts_file": str(known)}}}}))
    proc = write_proc(tmp_path, """
        procedure: fanout-hashed
        steps:
          - id: hello
            on: n1
            shell: echo $RUNPROC_NODE
    """)
    result = run(proc, tmp_path, inventory=str(inv))
    assert result.ok, result.error
    assert result.steps["hello"].hosts["n1"].fields["stdout"] == "node1\n"  # type: ignore[index]


# ---------------------------------------------------------------- timeouts


def test_timeout_kills_the_remote_process(sshd_hosts: list[SshHost], known_hosts_file: Path,
                                          tmp_path: Path) -> None:
    inv = inventory(tmp_path, sshd_hosts[:2], known_hosts_file)
    seconds = f"61.{uuid.uuid4().int % 10_000 + 1:04d}"  # a unique marker for pgrep
    proc = write_proc(tmp_path, f"""
        procedure: fanout-timeout
        inventory: {inv.name}
        steps:
          - id: slow
            on: nodes
            timeout: 1s
            shell: echo started; sleep {seconds} | cat; echo never
    """)
    t0 = time.monotonic()
    result = run(proc, tmp_path)
    elapsed = time.monotonic() - t0
    assert result.exit_code == 1
    assert statuses(result, "slow") == {"node1": "timed_out", "node2": "timed_out"}
    assert result.steps["slow"].status == "timed_out"
    assert result.steps["slow"].hosts["node1"].fields["stdout"] == "started\n"  # type: ignore[index]
    assert elapsed < 15
    deadline = time.monotonic() + 5
    while True:
        left = subprocess.run(["pgrep", "-f", f"sleep {seconds}"], capture_output=True, text=True)
        if left.returncode != 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert left.returncode == 1, f"remote sleep still running: {left.stdout}"


def test_interrupt_kills_running_hosts_and_cancels_the_rest(sshd_hosts: list[SshHost], known_hosts_file: Path,
                                                              tmp_path: Path) -> None:
    import threading

    from engine.api import prepare
    from engine.format.loader import load

    inv = inventory(tmp_path, sshd_hosts, known_hosts_file)
    seconds = f"62.{uuid.uuid4().int % 10_000 + 1:04d}"
    proc = write_proc(tmp_path, f"""
        procedure: fanout-interrupt
        inventory: {inv.name}
        steps:
          - id: slow
            on: nodes
            serial: 2
            shell: echo started; sleep {seconds}
    """)
    started = threading.Event()

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.StepOutput) and "started" in event.text:
            started.set()

    r = prepare(load(proc), state=f"sqlite:///{tmp_path}/state.db", on_event=on_event)
    box: list[engine.RunResult] = []
    worker = threading.Thread(target=lambda: box.append(r.execute()))
    worker.start()
    assert started.wait(20)
    time.sleep(0.3)
    r.interrupt()
    worker.join(30)
    assert box, "the run did not finish after the interrupt"
    result = box[0]
    assert result.exit_code == 130
    assert statuses(result, "slow") == {"node1": "cancelled", "node2": "cancelled", "node3": "cancelled",
                                        "node4": "cancelled"}
    assert "not started" in (result.steps["slow"].hosts["node4"].error or "")  # type: ignore[index]
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", f"sleep {seconds}"], capture_output=True, text=True)
    assert left.returncode == 1, f"remote sleep still running: {left.stdout}"


# ---------------------------------------------------------------- bastions, become, local


def test_proxyjump_through_another_sshd(sshd_hosts: list[SshHost], known_hosts_file: Path,
                                        tmp_path: Path) -> None:
    bastion, target = sshd_hosts[0], sshd_hosts[1]
    inv = tmp_path / "inventory.ini"
    common = (f"-o ProxyJump={bastion.user}@{bastion.address}:{bastion.port} "
              f"-o UserKnownHostsFile={known_hosts_file} -o IdentitiesOnly=yes")
    inv.write_text(
        f"behind ansible_host={target.address} ansible_port={target.port} ansible_user={target.user} "
        f"ansible_ssh_private_key_file={target.client_key_path} ansible_ssh_common_args={shlex.quote(common)}\n")
    proc = write_proc(tmp_path, """
        procedure: fanout-jump
        steps:
          - id: hello
            on: behind
            shell: echo $RUNPROC_NODE
    """)
    before = accepted_logins(bastion)
    result = run(proc, tmp_path, inventory=str(inv))
    assert result.ok, result.error
    assert result.steps["hello"].hosts["behind"].fields["stdout"] == "node2\n"  # type: ignore[index]
    time.sleep(0.2)
    assert accepted_logins(bastion) == before + 1  # the bastion was logged into, once


def test_proxyjump_to_an_inventory_host_and_proxycommand(sshd_hosts: list[SshHost], known_hosts_file: Path,
                                                         tmp_path: Path) -> None:
    node1, node2, node3 = sshd_hosts[:3]
    inv = write_inventory(tmp_path / "inventory.ini", [node1], known_hosts=known_hosts_file, group="bastions")
    key, kh = node1.client_key_path, known_hosts_file
    jump = f"-o ProxyJump=node1 -o UserKnownHostsFile={kh} -o IdentitiesOnly=yes"
    command = (f"-o UserKnownHostsFile={kh} -o IdentitiesOnly=yes -o 'ProxyCommand=ssh -q -i {key} "
               f"-o UserKnownHostsFile={kh} -o StrictHostKeyChecking=yes -p {node1.port} "
               f"-W %h:%p {node1.user}@{node1.address}'")
    with inv.open("a") as f:
        f.write("[behind]\n")
        for h, args in ((node2, jump), (node3, command)):
            f.write(f"{h.name} ansible_host={h.address} ansible_port={h.port} ansible_user={h.user} "
                    f"ansible_ssh_private_key_file={key} ansible_ssh_common_args={shlex.quote(args)}\n")
    proc = write_proc(tmp_path, f"""
        procedure: fanout-jump2
        inventory: {inv.name}
        steps:
          - id: hello
            on: behind
            shell: echo $RUNPROC_NODE
    """)
    result = run(proc, tmp_path)
    assert result.ok, result.error
    hosts = result.steps["hello"].hosts
    assert hosts is not None
    assert hosts["node2"].fields["stdout"] == "node2\n"
    assert hosts["node3"].fields["stdout"] == "node3\n"


def test_become_runs_through_sudo(sshd_hosts: list[SshHost], known_hosts_file: Path, tmp_path: Path) -> None:
    # no sudo on the test machine: a stand-in records its arguments, then runs the command
    fake = sshd_hosts[0].workdir / f"fake-sudo-{uuid.uuid4().hex[:6]}"
    log = fake.with_suffix(".log")
    fake.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        printf '%s ' "$@" > {log}
        while [ "$1" != "-u" ]; do shift; done
        shift 2
        exec "$@"
    """))
    fake.chmod(0o755)
    inv = inventory(tmp_path, sshd_hosts[:1], known_hosts_file,
                    extra_vars={"ansible_become": "yes", "ansible_become_user": "postgres",
                                "ansible_become_exe": str(fake)})
    proc = write_proc(tmp_path, f"""
        procedure: fanout-become
        inventory: {inv.name}
        steps:
          - id: hello
            on: nodes
            env: {{WHO: someone}}
            shell: echo as $WHO
    """)
    result = run(proc, tmp_path)
    assert result.ok, result.error
    assert result.steps["hello"].hosts["node1"].fields["stdout"] == "as someone\n"  # type: ignore[index]
    assert log.read_text().startswith("-n -u postgres /bin/sh -c export WHO=someone")


def test_become_password_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="NOPASSWD"):
        settings_for("h", {"ansible_become": True, "ansible_become_password": "x"})


def test_ansible_connection_local(sshd_hosts: list[SshHost], known_hosts_file: Path, tmp_path: Path) -> None:
    inv = inventory(tmp_path, sshd_hosts[:1], known_hosts_file)
    with inv.open("a") as f:
        f.write("\n[nodes]\nhere ansible_connection=local\n")
    proc = write_proc(tmp_path, f"""
        procedure: fanout-local
        inventory: {inv.name}
        steps:
          - id: where
            on: nodes
            env: {{X: "1"}}
            shell: echo {{{{ host.name }}}} ${{RUNPROC_NODE:-local}} $X > where-{{{{ host.name }}}}.txt; cat where-{{{{ host.name }}}}.txt
    """)
    result = run(proc, tmp_path)
    assert result.ok, result.error
    hosts = result.steps["where"].hosts
    assert hosts is not None
    assert hosts["here"].fields["stdout"] == "here local 1\n"
    assert hosts["node1"].fields["stdout"] == "node1 node1 1\n"
    assert (tmp_path / "where-here.txt").exists()  # local hosts run in the procedure's directory


def test_inventory_password_is_redacted(sshd_hosts: list[SshHost], known_hosts_file: Path, tmp_path: Path) -> None:
    inv = inventory(tmp_path, sshd_hosts[:1], known_hosts_file, extra_vars={"ansible_password": "hunter2-pw"})
    proc = write_proc(tmp_path, f"""
        procedure: fanout-redact
        inventory: {inv.name}
        steps:
          - id: leak
            on: nodes
            shell: echo {{{{ host.vars.ansible_password }}}}
    """)
    result = run(proc, tmp_path)
    assert result.ok, result.error
    assert result.steps["leak"].hosts["node1"].fields["stdout"] == "***\n"  # type: ignore[index]
    assert "hunter2-pw" not in json.dumps(result.to_json())


def test_dry_run_plans_every_host_without_running(sshd_hosts: list[SshHost], known_hosts_file: Path,
                                                  tmp_path: Path) -> None:
    inv = inventory(tmp_path, sshd_hosts[:2], known_hosts_file)
    tag = f"dry-{uuid.uuid4().hex[:8]}"
    proc = write_proc(tmp_path, f"""
        procedure: fanout-dry
        inventory: {inv.name}
        steps:
          - id: probe
            on: nodes
            readonly: true
            shell: echo $RUNPROC_NODE
          - id: change
            on: nodes
            shell: touch "$RUNPROC_NODE_DIR/{tag}"
    """)
    result = run(proc, tmp_path, dry_run=True)
    assert result.ok, result.error
    assert statuses(result, "probe") == {"node1": "ok", "node2": "ok"}
    assert statuses(result, "change") == {"node1": "planned", "node2": "planned"}
    assert result.steps["change"].status == "planned"
    assert not any(marker(h, tag).exists() for h in sshd_hosts[:2])


def test_cli_fanout_json(sshd_hosts: list[SshHost], known_hosts_file: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    cli = pytest.importorskip("engine.cli")
    inv = inventory(tmp_path, sshd_hosts, known_hosts_file)
    proc = write_proc(tmp_path, """
        procedure: fanout-cli
        steps:
          - id: hello
            on: nodes
            shell: echo $RUNPROC_NODE
    """)
    code = cli.main([str(proc), "-i", str(inv), "--limit", "node2", "--forks", "2", "--output", "json",
                     "--state", f"sqlite:///{tmp_path}/state.db"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert doc["steps"][0]["hosts"] == {"node2": doc["steps"][0]["hosts"]["node2"]}
    assert doc["steps"][0]["hosts"]["node2"]["stdout"] == "node2\n"


# ---------------------------------------------------------------- pieces


def test_batch_sizes_follow_ansible_serial() -> None:
    assert batch_sizes(4, None) == [4]
    assert batch_sizes(4, 1) == [1, 1, 1, 1]
    assert batch_sizes(5, 2) == [2, 2, 1]
    assert batch_sizes(10, "30%") == [3, 3, 3, 1]
    assert batch_sizes(3, "10%") == [1, 1, 1]  # rounds down, at least one host
    assert batch_sizes(4, 0) == [4]
    assert batch_sizes(4, 9) == [4]
    assert batch_sizes(0, 1) == []


def test_max_fail_semantics() -> None:
    assert not too_many_failures(0, 4, None)
    assert too_many_failures(1, 4, None)  # default: any failure
    assert not too_many_failures(1, 4, 1)
    assert too_many_failures(2, 4, 1)
    assert not too_many_failures(2, 10, "20%")  # 20% is not *more than* 20%
    assert too_many_failures(3, 10, "20%")
    assert too_many_failures(2, 2, "100%")  # a batch where every host failed always stops


def test_ssh_args_and_jumps() -> None:
    args = parse_ssh_args("-o ProxyJump=ops@bastion:2222 -oUserKnownHostsFile=/k -o 'ProxyCommand=nc %h %p' "
                          "-i /a -i/b -C -o IdentitiesOnly=yes")
    assert args["proxyjump"] == "ops@bastion:2222"
    assert args["userknownhostsfile"] == "/k"
    assert args["proxycommand"] == "nc %h %p"
    assert args["identityfile"] == "/a\n/b"
    jumps = parse_jumps("a,ops@b:2200,ssh://c")
    assert [(j.user, j.host, j.port) for j in jumps] == [(None, "a", None), ("ops", "b", 2200), (None, "c", None)]
    s = settings_for("web1", {"ansible_host": "10.0.0.5", "ansible_port": "2222", "ansible_user": "deploy",
                              "ansible_ssh_common_args": "-o StrictHostKeyChecking=accept-new"})
    assert (s.address, s.port, s.user, s.accept_new) == ("10.0.0.5", 2222, "deploy", True)
    assert s.known_hosts_name == "[10.0.0.5]:2222"
    assert settings_for("db", {}).known_hosts_name == "db"


def test_wrapper_reports_pid_then_execs() -> None:
    text = wrapped("echo $A; pwd", {"A": "x y"}, "/tmp", None)
    out = subprocess.run(["/bin/sh", "-c", text], capture_output=True, cwd="/", env={"PATH": os.defpath})
    first, _, rest = out.stdout.partition(b"\n")
    assert first.startswith(b"\x1erunproc-pid ") and int(first.split()[-1]) > 1
    assert rest == b"x y\n/tmp\n"


def test_importing_fanout_does_not_import_paramiko() -> None:
    code = "import sys, engine.execution.fanout, engine.transports.ssh; print('paramiko' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
