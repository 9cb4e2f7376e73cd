"""runproc beside go-task, ansible-core and pyinfra on every workload of issue 14, in one table.

    bench/run                                  # 5 rounds of every workload (a few minutes)
    bench/run --quick                          # a smoke (~20 s, ansible most of it): 1 round, small workloads
    bench/run --rounds 9 --markdown docs/performance.md
    bench/run --workloads W1,W3 --rounds 3

Workloads (the same work written in each tool's own format, generated into a temporary folder):

  W1       N x /bin/true in sequence (N = 100; --quick 5)
  W2       N x sleep S in parallel (20 x 0.5 s; --quick 3 x 0.2 s)
  W3       a dry run of 10 steps (params, vars, needs, when, retry, verify, assert, wait, finally)
  version  TOOL --version
  fanout   one `true` on H loopback sshd hosts, H at a time (H = --hosts, 50; --quick 2)

The peers: go-task (a Taskfile.yml with ``deps``/``cmds``, ``task --dry`` for W3), ansible-core
(a playbook on localhost with ``connection: local``, ``--check`` for W3, W2 as 20 local hosts
with ``-f 20``, fan-out as ``ansible all -m command`` with pipelining on and no SSH connection
kept open from one run to the next) and pyinfra (a deploy on ``@local``,
``--dry`` for W3, fan-out as ``pyinfra INV exec``). They are installed on first use into a venv
of their own (``$XDG_CACHE_HOME/runproc-bench/peers``, by default ``~/.cache/...``; reused
afterwards), never into the environment that runs runproc. Where a peer has no equivalent
(go-task has no SSH; pyinfra runs one host's operations in order and allows one ``@local``,
so it cannot run W2's sleeps side by side) its cell says so.

Timing: wall time of the whole command, interpreter start to exit, output to a pipe. Each
round runs, for every workload, its floor (a bash loop of the same execs, bash background
sleeps, ``python -c pass``), runproc cold, then runproc and each peer alternately (runproc,
go-task, runproc, ansible, runproc, pyinfra), so a burst of load from elsewhere on the machine
hits both sides of a comparison; the table gives the median and min-max over the rounds, and
runproc's median over the best peer's. One untimed warm-up run of every command comes first
(page cache, bytecode, and the warm server's start), except with --quick. runproc is this
checkout installed as a user installs it: built into a wheel and installed (not editable) into
a venv of its own beside the peers' (``$XDG_CACHE_HOME/runproc-bench/runproc``, reinstalled
when engine/, pyproject.toml or setup.py change), with bytecode caching on, its state and logs
in the temporary folder; ``--runproc SCRIPT`` measures another one (``--runproc
"$(python3 -c 'import sys; print(sys.prefix)')/bin/runproc"`` for a development install). A
venv, as for the peers: the .pth files of the interpreter's own site-packages (an editable
install's import hook, whatever the machine added) are run by every Python start there, not
in a venv (docs/performance.md, "Where runproc is installed"). "runproc" is runproc as a user gets it: a command
handed to the warm server that the first command started (docs/performance.md#warm-start;
the bench's own, in the temporary folder, stopped at the end); "runproc cold" is the same
command with RUNPROC_WARM=0, importing everything itself.

``--markdown FILE`` writes the same table as markdown; when FILE already holds the lines
``<!-- bench/run: begin -->`` and ``<!-- bench/run: end -->`` only what is between them is
replaced (that is how docs/performance.md's summary is regenerated).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench import fanout, runner

ROOT = Path(__file__).resolve().parent.parent
PEERS = ("go-task", "ansible-core", "pyinfra")
# what pip installs into the peers' venv: go-task comes as a wheel holding its Go binary
REQUIREMENTS = ("ansible-core", "pyinfra", "go-task-bin")
# each peer's command, in the venv's bin/
EXECUTABLES = {"go-task": "task", "ansible-core": "ansible-playbook", "pyinfra": "pyinfra"}
WORKLOADS = {
    "W1": "{steps} × /bin/true in sequence",
    "W2": "{sleeps} × sleep {seconds:g} in parallel",
    "W3": "dry run of 10 steps",
    "version": "--version",
    "fanout": "`true` on {hosts} sshd hosts",
}
BEGIN, END = "<!-- bench/run: begin -->", "<!-- bench/run: end -->"
COLD = "runproc cold"  # the column of runproc with RUNPROC_WARM=0
TIMEOUT = 600.0  # a peer stuck longer than this ends the bench rather than hanging it


@dataclass(frozen=True)
class Sizes:
    steps: int = 100
    sleeps: int = 20
    seconds: float = 0.5
    hosts: int = 50


QUICK = Sizes(steps=5, sleeps=3, seconds=0.2, hosts=2)
# ansible over SSH: pipelining on (its documented fast setting: one ssh per host, no module
# copied over sftp), and no control master left behind to serve the next round's run from an
# open connection (runproc and pyinfra connect afresh every run; so does ansible here)
ANSIBLE_SSH = {"ANSIBLE_PIPELINING": "True", "ANSIBLE_SSH_ARGS": "-o ControlMaster=no"}


# --- the peers' files -------------------------------------------------------------------------
# Pure functions of the workload and its sizes, so that a test can check them without
# installing or running anything. None: the peer has no equivalent (see NOT_APPLICABLE).

NOT_APPLICABLE = {
    ("go-task", "fanout"): "go-task has no SSH",
    ("pyinfra", "W2"): "pyinfra runs a host's operations in order and allows a single @local",
}


def _yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=200)


def taskfile(workload: str, sizes: Sizes) -> str | None:
    """The workload as a go-task Taskfile (version 3); the task to run has the workload's name."""
    tasks: dict[str, Any]
    if workload == "W1":
        tasks = {"w1": {"cmds": ["/bin/true"] * sizes.steps}}
        return _yaml({"version": "3", "tasks": tasks})
    if workload == "W2":
        # deps run in parallel, each a task of its own
        tasks = {"w2": {"deps": [f"s{i}" for i in range(sizes.sleeps)]}}
        tasks |= {f"s{i}": {"cmds": [f"sleep {sizes.seconds:g}"]} for i in range(sizes.sleeps)}
        return _yaml({"version": "3", "tasks": tasks})
    if workload == "W3":
        # runproc's W3 (bench/runner.py): needs -> deps (run once), when -> if, finally -> defer;
        # go-task has no retry, verify or rollback, so those are left out (its side does less)
        steps = ["probe", *(f"s{i}" for i in range(1, 10))]
        tasks = {
            "w3": {"cmds": [{"defer": {"task": "tidy"}}, *({"task": s} for s in steps)]},
            "probe": {"cmds": ["/bin/true"]},
            "s1": {"cmds": ["mkdir -p {{.DIR}}"]},
            "s2": {"cmds": ["echo {{.VERSION}} > {{.DIR}}/version"]},
            "s3": {"deps": ["s1"], "cmds": ["echo {{.REPLICAS}} > {{.DIR}}/replicas"]},
            "s4": {"deps": ["s2", "s3"], "cmds": ["cat {{.DIR}}/version"]},
            "s5": {"cmds": [{"cmd": "echo scale to {{.REPLICAS}}", "if": "[ {{.REPLICAS}} -gt 1 ]"}]},
            "s6": {"cmds": ['echo "$(cat {{.DIR}}/version)"', "test -d {{.DIR}}"]},
            "s7": {"cmds": ["test {{.REPLICAS}} -ge 1"]},
            "s8": {"cmds": ["sleep 1"]},
            "s9": {"cmds": ["echo done"]},
            "tidy": {"cmds": ["rm -rf {{.DIR}}"]},
        }
        return _yaml({"version": "3", "run": "once",
                      "vars": {"VERSION": "1.2.3", "REPLICAS": 3, "DIR": "/tmp/w3-task-{{.VERSION}}"},
                      "tasks": tasks})
    return None


def playbook(workload: str, sizes: Sizes) -> str | None:
    """The workload as an ansible playbook for the inventory of ``ansible_inventory``."""
    play: dict[str, Any] = {"name": workload.lower(), "hosts": "localhost", "gather_facts": False}
    if workload == "W1":
        play["tasks"] = [{"name": f"s{i}", "ansible.builtin.command": "/bin/true"} for i in range(sizes.steps)]
    elif workload == "W2":
        # ansible runs a host's tasks in order: parallel work is one task on many hosts (-f N)
        play["hosts"] = "w2"
        play["tasks"] = [{"name": "sleep", "ansible.builtin.command": f"sleep {sizes.seconds:g}"}]
    elif workload == "W3":
        # run with --check: command/shell tasks are skipped, assert evaluated, the probe runs
        play["vars"] = {"version": "1.2.3", "replicas": 3, "dir": "/tmp/w3-ansible-{{ version }}"}
        play["tasks"] = [{"name": "w3", "block": [
            {"name": "probe", "ansible.builtin.command": "/bin/true", "check_mode": False, "changed_when": False},
            {"name": "s1", "ansible.builtin.command": "mkdir -p {{ dir }}"},
            {"name": "s2", "ansible.builtin.shell": "echo {{ version }} > {{ dir }}/version"},
            {"name": "s3", "ansible.builtin.shell": "echo {{ replicas }} > {{ dir }}/replicas"},
            {"name": "s4", "ansible.builtin.command": "cat {{ dir }}/version", "register": "s4",
             "retries": 3, "delay": 1, "until": "s4 is skipped or s4.rc == 0"},
            {"name": "s5", "ansible.builtin.command": "echo scale to {{ replicas }}", "when": "replicas > 1"},
            {"name": "s6", "ansible.builtin.command": "echo \"{{ s4.stdout | default('') }}\""},
            {"name": "s6 verify", "ansible.builtin.command": "test -d {{ dir }}"},
            {"name": "s7", "ansible.builtin.assert": {"that": "replicas >= 1"}},
            {"name": "s8", "ansible.builtin.command": "sleep 1"},
            {"name": "s9", "ansible.builtin.command": "echo done"},
        ], "always": [{"name": "tidy", "ansible.builtin.command": "rm -rf {{ dir }}"}]}]
    else:
        return None
    return _yaml([play])


def ansible_inventory(sizes: Sizes, python: str) -> str:
    """localhost and W2's local hosts, all ``ansible_connection=local`` on the venv's python
    (no interpreter discovery, which would cost each host a probe)."""
    local = f"ansible_connection=local ansible_python_interpreter={python}"
    rows = [f"localhost {local}", "", "[w2]", *(f"w2-{i:02d} {local}" for i in range(sizes.sleeps))]
    return "\n".join(rows) + "\n"


def deploy(workload: str, sizes: Sizes) -> str | None:
    """The workload as a pyinfra deploy file, for ``pyinfra @local FILE``."""
    head = f'"""{workload}, written for pyinfra by bench/compare.py."""\n\nfrom pyinfra.operations import server\n\n'
    if workload == "W1":
        return head + "".join(f'server.shell(name="s{i}", commands=["/bin/true"])\n' for i in range(sizes.steps))
    if workload == "W3":
        # run with --dry; a Python `if` and `assert` stand for when: and assert:
        return head + textwrap.dedent("""\
            VERSION = "1.2.3"
            REPLICAS = 3
            DIR = f"/tmp/w3-pyinfra-{VERSION}"

            server.shell(name="probe", commands=["/bin/true"])
            server.shell(name="s1", commands=[f"mkdir -p {DIR}"])
            server.shell(name="s2", commands=[f"echo {VERSION} > {DIR}/version"])
            server.shell(name="s3", commands=[f"echo {REPLICAS} > {DIR}/replicas"])
            server.shell(name="s4", commands=[f"cat {DIR}/version"], _retries=3, _retry_delay=1)
            if REPLICAS > 1:
                server.shell(name="s5", commands=[f"echo scale to {REPLICAS}"])
            server.shell(name="s6", commands=[f'echo "$(cat {DIR}/version)"', f"test -d {DIR}"])
            assert REPLICAS >= 1, "s7"
            server.shell(name="s8", commands=["sleep 1"])
            server.shell(name="s9", commands=["echo done"])
            server.shell(name="tidy", commands=[f"rm -rf {DIR}"])
            """)
    return None


def pyinfra_inventory(hosts: list[tuple[str, str, int]], user: str, key: Path, known_hosts: Path) -> str:
    """The fan-out hosts (name, address, port) as a pyinfra inventory file (paramiko), with the
    same client key and the same known_hosts, checked strictly, as runproc and ansible use."""
    common = {"ssh_user": user, "ssh_key": str(key), "ssh_known_hosts_file": str(known_hosts),
              "ssh_strict_host_key_checking": "yes", "ssh_allow_agent": False, "ssh_look_for_keys": False}
    rows = [f"    ({name!r}, {{**COMMON, 'ssh_hostname': {address!r}, 'ssh_port': {port}}}),"
            for name, address, port in hosts]
    return f"COMMON = {common!r}\n\nbench = [\n" + "\n".join(rows) + "\n]\n"


def peer_files(workload: str, sizes: Sizes, python: str = "python3") -> dict[str, str]:
    """Every peer's files for ``workload``: name -> text (the fan-out's need live hosts)."""
    w = workload.lower()
    files = {f"Taskfile.{w}.yml": taskfile(workload, sizes), f"{w}.playbook.yml": playbook(workload, sizes),
             f"{w}_deploy.py": deploy(workload, sizes)}
    out = {name: text for name, text in files.items() if text is not None}
    if any(name.endswith(".playbook.yml") for name in out):
        out["hosts.ini"] = ansible_inventory(sizes, python)
    return out


# --- the peers' venv -------------------------------------------------------------------------

def default_peers_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "runproc-bench" / "peers"


def _clean_env() -> dict[str, str]:
    """The environment without anything that would point a venv's python at another one."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE", "NO_COLOR")}


def ensure_peers(folder: Path, upgrade: bool = False) -> Path:
    """The peers' venv, created and filled on first use; its bin/ folder.

    A marker file names what was installed, so a second run only checks it; an interrupted
    install leaves no marker and is completed next time (pip skips what is already there).
    """
    bin_dir = folder / "bin"
    marker = folder / ".runproc-bench"
    wanted = " ".join(REQUIREMENTS)
    ready = marker.exists() and marker.read_text().strip() == wanted
    if ready and not upgrade and all((bin_dir / exe).exists() for exe in EXECUTABLES.values()):
        return bin_dir
    print(f"installing {', '.join(REQUIREMENTS)} into {folder} (once; reused by later runs)", file=sys.stderr)
    env = _clean_env()
    if not (bin_dir / "python").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, env=env)
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *(["--upgrade"] if upgrade else [])]
    done = subprocess.run([*pip, *REQUIREMENTS], env=env)
    if done.returncode != 0:
        sys.exit(f"bench/run: could not install the peers into {folder} (pip exit {done.returncode})")
    marker.write_text(wanted + "\n")
    return bin_dir


# --- runproc's own venv ----------------------------------------------------------------------
# What a wheel of this checkout is built from (MANIFEST.in and setup.py decide what goes in it)
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "engine")


def default_runproc_dir() -> Path:
    return default_peers_dir().parent / "runproc"


def source_fingerprint(root: Path = ROOT) -> tuple[str, str]:
    """(the dependencies' fingerprint, the code's): a hash of what pyproject.toml requires
    (its dependencies and Python), and one of every file a wheel is built from (bytecode
    caches aside), so an edit not yet committed is measured too."""
    import hashlib
    import json
    import tomllib

    project = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {})
    wanted = {k: project.get(k) for k in ("dependencies", "requires-python")}
    deps = hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:16]
    code = hashlib.sha256()
    for name in SOURCES:
        top = root / name
        files = [top] if top.is_file() else sorted(f for f in top.rglob("*")
                                                     if f.is_file() and "__pycache__" not in f.parts)
        for f in files:
            code.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return deps, code.hexdigest()[:16]


def ensure_runproc(folder: Path) -> str:
    """This checkout installed as a user installs it, into a venv of its own; its console script.

    The venv, runproc's dependencies and the build tools are installed once (again when
    pyproject.toml's requirements change); the wheel of runproc itself is rebuilt, offline
    (``--no-build-isolation``, with the venv's setuptools), whenever its sources differ from
    the installed one's. It is built from a copy of the sources, not in the checkout (an
    in-tree build/ folder can keep a module deleted since), with the checkout's commit written
    in as setup.py would from a checkout, so its ``--version`` names the commit.
    """
    script = folder / "bin" / "runproc"
    marker = folder / ".runproc-bench"
    deps, code = source_fingerprint()
    have = marker.read_text().split() if marker.exists() else []
    if script.exists() and have == [deps, code]:
        return str(script)
    env = _clean_env()
    python = folder / "bin" / "python"
    if not python.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, env=env)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    with_deps = not have or have[0] != deps
    print(f"installing this checkout into {folder}{' with its dependencies' if with_deps else ''} "
          "(again only when its sources change)", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="runproc-src-") as d:
        src = Path(d) / "src"
        for name in SOURCES:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "_build.py"))
            elif (ROOT / name).exists():
                src.mkdir(exist_ok=True)
                shutil.copy2(ROOT / name, src / name)
        from engine.version import checkout_commit  # the checkout is on the path (bench/run puts it there)

        commit = checkout_commit(str(ROOT))
        if commit:  # what setup.py writes from a checkout (there is no .git in the copy)
            (src / "engine" / "_build.py").write_text(
                f'"""Written by bench/compare.py for this build."""\n\nCOMMIT = "{commit}"\n')
        done = subprocess.run([*pip, "setuptools>=61", "wheel", str(src)], env=env) if with_deps else None
        if done is None or done.returncode == 0:
            done = subprocess.run([*pip, "--no-deps", "--force-reinstall", "--no-build-isolation", str(src)],
                                  env=env)
    if done.returncode != 0 or not script.exists():
        sys.exit(f"bench/run: could not install runproc into {folder} (pip exit {done.returncode})")
    marker.write_text(f"{deps} {code}\n")
    return str(script)


def interpreter_of(script: str) -> str:
    """The Python a console script runs on, for the floor ``python -c pass``: the ``python``
    beside it in a venv, else its #! line when that names a Python, else this interpreter
    (pip writes a ``/bin/sh`` preamble when the path is long or has a space)."""
    beside = Path(script).parent / "python"
    if beside.exists():
        return str(beside)
    try:
        with open(script, "rb") as f:
            first = f.readline().decode(errors="replace").strip()
    except OSError:
        return sys.executable
    named = first[2:].strip()
    if first.startswith("#!") and os.path.isabs(named) and " " not in named \
            and os.path.basename(named).startswith("python"):
        return named
    return sys.executable


# --- measuring ---------------------------------------------------------------------------------

@dataclass
class Command:
    argv: list[str]
    env: dict[str, str]
    cwd: Path

    def time(self) -> float:
        took, _ = runner.wall(self.argv, self.env, self.cwd, timeout=TIMEOUT)
        return took


@dataclass
class Workload:
    key: str
    title: str
    floor_label: str
    floor: Command | None
    runproc: Command
    peers: dict[str, Command | None]
    samples: dict[str, list[float]] = field(default_factory=dict)
    # runproc with RUNPROC_WARM=0: every command imports the engine itself (docs/performance.md)
    cold: Command | None = None

    def order(self) -> list[tuple[str, Command]]:
        """One round: the floor, runproc cold, then runproc before each peer (runproc, peer,
        runproc, peer...)."""
        out: list[tuple[str, Command]] = [("floor", self.floor)] if self.floor else []
        if self.cold:
            out.append((COLD, self.cold))
        present = [(name, cmd) for name, cmd in self.peers.items() if cmd is not None]
        for name, cmd in present:
            out += [("runproc", self.runproc), (name, cmd)]
        return out or [("runproc", self.runproc)]

    def run_round(self) -> None:
        for name, cmd in self.order():
            self.samples.setdefault(name, []).append(cmd.time())


def _version(argv: list[str], env: dict[str, str]) -> str:
    """The first version number a ``--version`` prints (``ansible [core 2.19.14]`` -> 2.19.14)."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    found = re.search(r"\d+\.\d+(\.\d+)?", done.stdout or done.stderr)
    return found.group(0) if found else "?"


def _checkout() -> str:
    """This checkout's commit, and whether engine/ has changes not committed (they are measured)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "engine"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "not a git checkout"
    return f"{head}{' + uncommitted changes in engine/' if dirty else ''}" if head else "not a git checkout"


def peer_environment(tmp: Path, bin_dir: Path) -> dict[str, str]:
    """The peers' environment: their venv first on PATH, ansible's temp folders in ``tmp``."""
    env = {**_clean_env(), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "VIRTUAL_ENV": str(bin_dir.parent)}
    return fanout.ansible_env(tmp, env) | {"ANSIBLE_LOCALHOST_WARNING": "False",
                                           "ANSIBLE_RETRY_FILES_ENABLED": "False"}


def runproc_environment(tmp: Path) -> dict[str, str]:
    """runproc's environment: its state, logs and warm server in ``tmp``."""
    # nothing that would point runproc's python at other modules than its own install
    env = {k: v for k, v in runner.bench_env(tmp).items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["XDG_STATE_HOME"] = str(tmp / "xdg-state")  # runproc's logs stay in the temporary folder
    # the warm server of these runs (engine/cli/warm.py) is the bench's own, stopped at the end
    (tmp / "run").mkdir(mode=0o700, exist_ok=True)
    env["XDG_RUNTIME_DIR"] = str(tmp / "run")
    return env


def build(keys: list[str], sizes: Sizes, tmp: Path, bin_dir: Path, rp: str,
          hosts: fanout.Hosts | None) -> list[Workload]:
    """Every workload's floor, runproc and peer commands, their files written into ``tmp``."""
    env = runproc_environment(tmp)
    peer_env = peer_environment(tmp, bin_dir)
    files = runner.procedures(tmp, steps=sizes.steps, sleeps=sizes.sleeps, seconds=sizes.seconds)
    task, play, pyinfra = (str(bin_dir / EXECUTABLES[p]) for p in PEERS)
    python = str(bin_dir / "python")
    for key in keys:
        for name, text in peer_files(key, sizes, python).items():
            (tmp / name).write_text(text)

    def cmd(argv: list[str], e: dict[str, str] = env) -> Command:
        return Command(argv, e, tmp)

    def peer(argv: list[str]) -> Command:
        return cmd(argv, peer_env)

    pass_ = cmd([interpreter_of(rp), "-c", "pass"])  # the interpreter runproc starts, with its site
    out: list[Workload] = []
    for key in keys:
        title = f"{key}: {WORKLOADS[key].format(**sizes.__dict__)}"
        if key == "W1":
            out.append(Workload(key, title, "(bash loop)",
                                cmd(["bash", "-c", f"for i in $(seq {sizes.steps}); do /bin/true; done"]),
                                cmd([rp, str(files["w1"])]),
                                {"go-task": peer([task, "--taskfile", "Taskfile.w1.yml", "w1"]),
                                 "ansible-core": peer([play, "-i", "hosts.ini", "w1.playbook.yml"]),
                                 "pyinfra": peer([pyinfra, "-y", "@local", "w1_deploy.py"])}))
        elif key == "W2":
            sleeps = f"for i in $(seq {sizes.sleeps}); do sleep {sizes.seconds:g} & done; wait"
            out.append(Workload(key, title, "(bash &)",
                                cmd(["bash", "-c", sleeps]), cmd([rp, str(files["w2"])]),
                                {"go-task": peer([task, "--taskfile", "Taskfile.w2.yml", "w2"]),
                                 "ansible-core": peer([play, "-i", "hosts.ini", "-f", str(sizes.sleeps),
                                                       "w2.playbook.yml"]),
                                 "pyinfra": None}))
        elif key == "W3":
            out.append(Workload(key, title, "(python -c pass)", pass_,
                                cmd([rp, str(files["w3"]), "--dry-run"]),
                                {"go-task": peer([task, "--taskfile", "Taskfile.w3.yml", "--dry", "w3"]),
                                 "ansible-core": peer([play, "-i", "hosts.ini", "--check", "w3.playbook.yml"]),
                                 "pyinfra": peer([pyinfra, "--dry", "@local", "w3_deploy.py"])}))
        elif key == "version":
            out.append(Workload(key, title, "(python -c pass)", pass_, cmd([rp, "--version"]),
                                {"go-task": peer([task, "--version"]),
                                 "ansible-core": peer([str(bin_dir / "ansible"), "--version"]),
                                 "pyinfra": peer([pyinfra, "--version"])}))
        elif key == "fanout" and hosts is not None:
            inv = hosts.inventory(tmp / "fanout.ini")
            (tmp / "fanout.yml").write_text(fanout.PROCEDURE)
            (tmp / "fanout_inventory.py").write_text(
                pyinfra_inventory(hosts.hosts, hosts.user, hosts.client_key, hosts.known_hosts))
            home = {"HOME": str(tmp / "home")}  # no ~/.ssh of the user's: the bench's keys only
            n = str(sizes.hosts)
            out.append(Workload(key, title, "", None,
                                cmd([rp, "fanout.yml", "-i", str(inv), "--forks", n], env | home),
                                {"go-task": None,
                                 "ansible-core": cmd([str(bin_dir / "ansible"), "all", "-i", str(inv), "-m",
                                                      "command", "-a", "true", "-f", n],
                                                     peer_env | home | ANSIBLE_SSH),
                                 "pyinfra": cmd([pyinfra, "-y", "--parallel", n, "fanout_inventory.py",
                                                 "exec", "--", "true"], peer_env | home)}))
    for w in out:
        w.cold = Command(w.runproc.argv, w.runproc.env | {"RUNPROC_WARM": "0"}, w.runproc.cwd)
    return out


# --- the table ---------------------------------------------------------------------------------

def _cell(samples: list[float] | None) -> str:
    if not samples:
        return "n/a"
    return f"{statistics.median(samples):.3f} ({min(samples):.3f}–{max(samples):.3f})"


def rows(workloads: list[Workload]) -> list[list[str]]:
    """The table: a header, then one row per workload (seconds, median (min–max))."""
    out = [["workload", "floor", COLD, "runproc", *PEERS, "runproc / best peer"]]
    for w in workloads:
        medians = {p: statistics.median(w.samples[p]) for p in PEERS if w.samples.get(p)}
        ratio = "n/a"
        if medians:
            best = min(medians, key=lambda p: medians[p])
            ratio = f"{statistics.median(w.samples['runproc']) / medians[best]:.2f} ({best})"
        floor = f"{statistics.median(w.samples['floor']):.3f} {w.floor_label}" if w.samples.get("floor") else "—"
        out.append([w.title, floor, _cell(w.samples.get(COLD)), _cell(w.samples["runproc"]),
                    *(_cell(w.samples.get(p)) for p in PEERS), ratio])
    return out


def notes(workloads: list[Workload]) -> list[str]:
    keys = {w.key for w in workloads}
    return [f"{peer} {key}: n/a, {why}" for (peer, key), why in NOT_APPLICABLE.items() if key in keys]


def text_table(table: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(wd) for c, wd in zip(r, widths, strict=True)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * wd for wd in widths))
    return "\n".join(lines)


def markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(r) + " |" for r in table]
    lines.insert(1, "|" + "|".join(" --- " for _ in table[0]) + "|")
    return "\n".join(lines)


def write_markdown(path: Path, body: str) -> None:
    """``body`` into ``path``: between the markers when it has them, else the whole file."""
    block = f"{BEGIN}\n{body.rstrip()}\n{END}"
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old and old.index(BEGIN) < old.index(END):
        path.write_text(old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):])
    else:
        path.write_text(block + "\n")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(prog="bench/run", description=doc.split("\n\n")[0],
                                     epilog="\n\n".join(doc.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 5; --quick 1)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke of ~20 s (ansible is most of it): 1 round, small workloads, no warm-up")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the table as markdown to FILE")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"a comma-separated subset of {', '.join(WORKLOADS)} (default: all)")
    parser.add_argument("--hosts", type=int, default=None, help="fan-out hosts (default 50; --quick 2; 0 skips it)")
    parser.add_argument("--peers-dir", type=Path, default=None,
                        help="the peers' venv (default $XDG_CACHE_HOME/runproc-bench/peers)")
    parser.add_argument("--upgrade-peers", action="store_true", help="upgrade the peers in their venv first")
    parser.add_argument("--runproc", default=None, metavar="SCRIPT",
                        help="the runproc script to measure (default: this checkout, installed into a venv of "
                             "its own, $XDG_CACHE_HOME/runproc-bench/runproc)")
    ns = parser.parse_args(argv)
    keys = [k.strip() for k in ns.workloads.split(",") if k.strip()]
    unknown = [k for k in keys if k not in WORKLOADS]
    if unknown or not keys:
        parser.error(f"unknown workload {', '.join(unknown) or '(none given)'}; known: {', '.join(WORKLOADS)}")
    ns.keys = keys
    if ns.rounds is not None and ns.rounds < 1:
        parser.error("--rounds must be at least 1")
    return ns


def main(argv: list[str] | None = None) -> int:
    ns = _parse(argv)
    base = QUICK if ns.quick else Sizes()
    sizes = Sizes(base.steps, base.sleeps, base.seconds, ns.hosts if ns.hosts is not None else base.hosts)
    rounds = ns.rounds or (1 if ns.quick else 5)
    bin_dir = ensure_peers(ns.peers_dir or default_peers_dir(), ns.upgrade_peers)
    rp = ns.runproc or ensure_runproc(default_runproc_dir())
    installed = ("installed from this checkout into the bench's venv" if ns.runproc is None
                 else f"the script {ns.runproc}")
    venvs = "the peers' venv and runproc's" if ns.runproc is None else "the peers' venv"
    keys = list(ns.keys)
    skipped: list[str] = []
    if "fanout" in keys and (sizes.hosts < 1 or not Path(fanout.SSHD).exists() or not shutil.which("ssh-keygen")):
        keys.remove("fanout")
        skipped.append(f"fanout: skipped ({'--hosts 0' if sizes.hosts < 1 else f'no {fanout.SSHD} or ssh-keygen'})")

    started = time.perf_counter()
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="runproc-bench-") as d:
        tmp = Path(d)
        (tmp / "home").mkdir()
        hosts = None
        if "fanout" in keys:
            (tmp / "sshd").mkdir()
            hosts = fanout.Hosts(tmp / "sshd", sizes.hosts, login_rc=False)
        try:
            workloads = build(keys, sizes, tmp, bin_dir, rp, hosts)
            peer_env = peer_environment(tmp, bin_dir)
            versions = {"runproc": _version([rp, "--version"], runproc_environment(tmp)),
                        "go-task": _version([str(bin_dir / "task"), "--version"], peer_env),
                        "ansible-core": _version([str(bin_dir / "ansible"), "--version"], peer_env),
                        "pyinfra": _version([str(bin_dir / "pyinfra"), "--version"], peer_env)}
            if not ns.quick:
                _each(workloads, "warm-up", lambda w: [cmd.time() for _, cmd in w.order()], loads)
            for r in range(rounds):
                _each(workloads, f"round {r + 1}/{rounds}", Workload.run_round, loads)
        finally:
            from engine.cli.warmserver import stop_servers_in

            stop_servers_in(tmp)
            if hosts:
                hosts.stop()

    command = "bench/run" + (" --quick" if ns.quick else "") + (f" --rounds {rounds}" if ns.rounds else "")
    if ns.workloads != ",".join(WORKLOADS):
        command += f" --workloads {ns.workloads}"
    if ns.hosts is not None:
        command += f" --hosts {ns.hosts}"
    if ns.runproc is not None:
        command += f" --runproc {ns.runproc}"
    head = [
        f"runproc beside its peers: wall time of the whole command in seconds, median (min–max) of "
        f"{rounds} alternating round{'s' if rounds > 1 else ''}",
        f"date {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; command: `{command}` ({time.perf_counter() - started:.0f} s)",
        f"machine: {runner.machine().split(', Python')[0]}; 1-minute load average {_load(loads)}",
        f"Python {sys.version.split()[0]} ({venvs} made from this interpreter); "
        f"runproc {versions['runproc']} (checkout {_checkout()}; {installed}), "
        + ", ".join(f"{p} {versions[p]}" for p in PEERS),
    ]
    table = rows(workloads)
    tail = notes(workloads) + skipped
    print("\n".join(head) + "\n\n" + text_table(table) + ("\n\n" + "\n".join(tail) if tail else ""))
    if ns.markdown:
        md = "\n\n".join(["  \n".join(head), markdown_table(table), *(["  \n".join(tail)] if tail else [])])
        write_markdown(ns.markdown, md)
    return 0


def _load(loads: list[float]) -> str:
    """The load average read before the rounds and after each workload of each round."""
    return f"{statistics.median(loads):.1f} median, {min(loads):.1f}–{max(loads):.1f} ({len(loads)} readings)"


def _each(workloads: list[Workload], what: str, fn: Callable[[Workload], Any], loads: list[float]) -> None:
    print(f"{what}: ", end="", file=sys.stderr, flush=True)
    for w in workloads:
        print(w.key, end=" ", file=sys.stderr, flush=True)
        fn(w)
        loads.append(os.getloadavg()[0])
    print(file=sys.stderr, flush=True)
