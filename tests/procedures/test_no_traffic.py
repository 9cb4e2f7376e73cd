"""The headline command is safe on any machine: a dry run of a shipped procedure, typed as is
(no --offline), sends nothing to an address nobody chose.

Every shipped procedure is dry-run for real (checks and readonly steps execute) in a runproc
whose sockets are guarded: a ``sitecustomize`` refuses, and records, any name lookup or
connection that is not loopback, before anything leaves the machine. The commands the steps
run (curl, pg_isready...) are other programs: for them every rendered action is read and each
host it names must be loopback. kubectl reads the user's kubeconfig, where a context named
``production`` is likely: a ``kubectl`` stand-in first on PATH records every context a call would
use that the test kubeconfig (a context ``production`` on a cluster off this machine, also the
current context) names, and contacts nothing. Then the same with the production inventory chosen
explicitly (``-i inventory/production.yml``): its hosts are names under ``.example``, which the
guard refuses before any lookup.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import RUNPROC, child_env

ROOT = Path(__file__).resolve().parents[2]
PROCEDURES = sorted(ROOT.glob("procedures/*.yml"))
REQUIRED = {
    "backup-verification": ["-p", "backup_file=/backups/latest.sql.gz"],
    "blue-green-deploy": ["-p", "version=2.4.0"],
    "db-migration": ["-p", "migration_version=20240320120000"],
    "mitigate-restart": ["-p", "platform=kubernetes"],
    "mitigate-rollback": ["-p", "platform=kubernetes"],
    "point-in-time-recovery": ["-p", "recovery_time=2024-03-20 14:30:00"],
    "scale-up": ["-p", "platform=kubernetes"],
}

GUARD = textwrap.dedent('''
    """Test guard: refuse and record every lookup or connection that is not loopback."""
    import ipaddress, os, socket

    _LOG = os.environ["RUNPROC_NET_GUARD_LOG"]
    _LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}

    def _loopback(host):
        if host is None:
            return True
        host = host.decode() if isinstance(host, bytes) else str(host)
        if host.lower() in _LOCAL_NAMES or host.lower().endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return False

    def _refuse(what, host):
        with open(_LOG, "a") as f:
            f.write(f"{what} {host}\\n")
        raise socket.gaierror(socket.EAI_NONAME, f"refused by the test guard: {host}")

    _getaddrinfo = socket.getaddrinfo
    def getaddrinfo(host, *args, **kwargs):
        if not _loopback(host):
            _refuse("lookup", host)
        return _getaddrinfo(host, *args, **kwargs)
    socket.getaddrinfo = getaddrinfo

    _gethostbyname = socket.gethostbyname
    def gethostbyname(host):
        if not _loopback(host):
            _refuse("lookup", host)
        return _gethostbyname(host)
    socket.gethostbyname = gethostbyname

    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
    def _check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            with open(_LOG, "a") as f:
                f.write(f"connect {address[0]}\\n")
            raise ConnectionRefusedError(f"refused by the test guard: {address[0]}")
    def connect(self, address):
        _check(self, address)
        return _connect(self, address)
    def connect_ex(self, address):
        _check(self, address)
        return _connect_ex(self, address)
    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
''')

# Stands in for kubectl: finds the context a call would use (--context, else the kubeconfig's
# current context), records it with its server when that server is not this machine, and fails as
# kubectl does without a cluster. A context the kubeconfig lacks sends nothing: kubectl stops.
KUBECTL = textwrap.dedent('''
    import ipaddress, json, os, sys
    from urllib.parse import urlsplit

    args = sys.argv[1:]
    def flag(name):
        for i, a in enumerate(args):
            if a == name and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(name + "="):
                return a.split("=", 1)[1]
        return None
    config = json.load(open(flag("--kubeconfig") or os.environ["KUBECONFIG"]))
    name = flag("--context") or config["current-context"]
    contexts = {c["name"]: c["context"] for c in config["contexts"]}
    if name not in contexts:
        sys.exit(f'error: context "{name}" does not exist')
    clusters = {c["name"]: c["cluster"] for c in config["clusters"]}
    host = urlsplit(clusters[contexts[name]["cluster"]]["server"]).hostname
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    if not local:
        with open(os.environ["RUNPROC_NET_GUARD_LOG"], "a") as f:
            f.write(f"kubectl context {name} {host}\\n")
    sys.exit("Unable to connect to the server: refused by the test guard")
''')
USER_KUBECONFIG = {
    "apiVersion": "v1", "kind": "Config", "current-context": "production",
    "clusters": [{"name": "prod", "cluster": {"server": "https://kube.prod.unjucks.example:6443"}}],
    "users": [{"name": "ops", "user": {"token": "not-a-secret"}}],
    "contexts": [{"name": "production", "context": {"cluster": "prod", "user": "ops"}}],
}

# hosts in commands that other programs run: URLs (not s3://BUCKET), and -h/--host flags
_URL_HOST = re.compile(r"\b(?!s3://)[a-z][a-z0-9+.-]*://(?:[^@/\s'\"]+@)?(\[[^\]]+\]|[^:/\s'\"?#]+)")
# names that look like hosts but are never contacted
NOT_CONTACTED = {"test.example.com"}  # template-health-check's RDF vocabulary namespace (an IRI)
_HOST_FLAG = re.compile(r"(?:^|\s)(?:-h|--host(?:=|\s))\s*['\"]?([A-Za-z0-9_.:-]+)")


def _host_is_local(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() in ("localhost",) or host.startswith("$") or host.startswith("<") or host in NOT_CONTACTED:
        return True  # a shell variable or an unknown value: not an address chosen here
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _actions(doc: dict[str, Any]) -> list[str]:
    out = []
    for step in doc.get("steps", []):
        for key in ("action", "rollback_action"):
            if isinstance(step.get(key), str):
                out.append(step[key])
        children = step.get("steps")
        if isinstance(children, dict):
            out += [c["action"] for c in children.values() if isinstance(c.get("action"), str)]
    return out


def _dry_runs(tmp: Path, extra: list[str]) -> dict[str, tuple[subprocess.CompletedProcess[str], Path]]:
    guard_dir = tmp / "guard"
    guard_dir.mkdir()
    (guard_dir / "sitecustomize.py").write_text(GUARD)
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(f"#!{sys.executable}\n{KUBECTL}")
    (bin_dir / "kubectl").chmod(0o755)
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(json.dumps(USER_KUBECONFIG))
    running = {}
    for path in PROCEDURES:
        name = path.stem
        log = tmp / f"{name}.net"
        log.write_text("")
        env = child_env({"RUNPROC_NET_GUARD_LOG": str(log),
                         "RUNPROC_STATE": f"sqlite:///{tmp}/{name}.db",
                         "KUBECONFIG": str(kubeconfig),
                         "PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]]),
                         "PYTHONPATH": os.pathsep.join(filter(None, [str(guard_dir), os.environ.get("PYTHONPATH")]))})
        argv = [*RUNPROC, str(path.relative_to(ROOT)), "--dry-run", "--output", "json", *REQUIRED.get(name, []), *extra]
        running[name] = (subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          stdin=subprocess.DEVNULL, text=True), log)
    done = {}
    for name, (proc, log) in running.items():
        out, err = proc.communicate(timeout=240)
        done[name] = (subprocess.CompletedProcess(proc.args, proc.returncode, out, err), log)
    return done


@pytest.mark.parametrize("inventory", ["default", "production"])
def test_no_dry_run_of_a_shipped_procedure_leaves_the_machine(tmp_path: Path, inventory: str) -> None:
    extra = ["-i", "inventory/production.yml"] if inventory == "production" else []
    results = _dry_runs(tmp_path, extra)
    assert len(results) >= 15
    problems: dict[str, list[str]] = {}
    for name, (done, log) in results.items():
        assert done.returncode in (0, 1), f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}"
        doc = json.loads(done.stdout)
        assert doc["dry_run"] is True
        found = [line for line in log.read_text().splitlines() if line]
        for action in _actions(doc):
            hosts = _URL_HOST.findall(action) + _HOST_FLAG.findall(action)
            found += [f"action names {h}" for h in hosts if not _host_is_local(h)]
        if found:
            problems[name] = sorted(set(found))
    if inventory == "default":
        assert problems == {}
    else:
        # production is chosen here: only lookups of its .example hosts may be attempted, and
        # the guard refused each before it left the machine
        for name, found in problems.items():
            bad = [f for f in found if not f.split()[-1].endswith(".example")]
            assert bad == [], f"{name}: {bad}"


@pytest.mark.parametrize("path", sorted(ROOT.glob("inventory/*")), ids=lambda p: p.name)
def test_shipped_inventories_target_only_example_names_or_this_machine(path: Path) -> None:
    from engine.inventory import load_inventory

    inventory = load_inventory(path)
    for host in inventory.hosts.values():
        target = str(host.vars.get("ansible_host", host.name))
        local = host.vars.get("ansible_connection") == "local" or _host_is_local(target)
        assert local or target.endswith(".example"), (path.name, host.name, target)
    addresses = re.findall(r"\b(?:\d{1,3}\.){3}\d{1,3}\b", path.read_text())
    assert all(ipaddress.ip_address(a).is_loopback for a in addresses), (path.name, addresses)
