#!/usr/bin/env python3
"""Control the local platform, as systemctl and kubectl control a real one. Stdlib only.

    python3 ctl.py --state .state init                         # first release 1.0.0 on blue, router -> blue
    python3 ctl.py --state .state stage 1.1.0 [--broken true]       # "download" a release
    python3 ctl.py --state .state start green --version 1.1.0 --port 18082
    python3 ctl.py --state .state switch green                 # the router now sends traffic to green
    python3 ctl.py --state .state status --blue-port 18081 --green-port 18082
    python3 ctl.py --state .state up --router-port 18080 --blue-port 18081 --green-port 18082
    python3 ctl.py --state .state stop green | down

Layout of the state directory:
    releases/<version>/VERSION   a release (BROKEN beside it makes its /health fail)
    colours/<colour>             the version deployed on that colour
    router                       the live colour, one word
    <name>.pid, <name>.log       processes started here (blue, green, router)
    app.db                       the SQLite database (migrations: examples/local/migrate.yml)

Every command prints one JSON document on stdout, so a procedure can read ``steps.x.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLOURS = ("blue", "green")
FIRST_VERSION = "1.0.0"


def other(colour: str) -> str:
    return "green" if colour == "blue" else "blue"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------- processes


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not yet reaped, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return not stat.parent.exists()  # no /proc on this system: trust kill(0)


def pid_of(state: Path, name: str) -> int | None:
    """The pid of a live process this tool started as ``name`` (None if gone)."""
    text = read(state / f"{name}.pid")
    if text is None:
        return None
    pid = int(text)
    if not alive(pid):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # a recycled pid belongs to someone else
        try:
            if b"app.py" not in cmdline.read_bytes():
                return None
        except OSError:
            return None
    return pid


def spawn(state: Path, name: str, argv: list[str]) -> int:
    stop(state, name)
    log = open(state / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    # a service outlives the step that starts it: without the step's token, runproc does not
    # count it among the step's processes (which it kills when the step ends)
    env = {k: v for k, v in os.environ.items() if k != "RUNPROC_STEP_TOKEN"}
    proc = subprocess.Popen(argv, cwd=HERE, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True, close_fds=True, env=env)
    log.close()
    write_atomic(state / f"{name}.pid", f"{proc.pid}\n")
    return proc.pid


def stop(state: Path, name: str, grace: float = 3.0) -> bool:
    """SIGTERM, then SIGKILL after ``grace`` seconds; True when something was running."""
    pid = pid_of(state, name)
    (state / f"{name}.pid").unlink(missing_ok=True)
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + grace
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.05)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


# ---------------------------------------------------------------- commands


def status(state: Path, ports: dict[str, int | None]) -> dict:
    live = read(state / "router") or "blue"
    out = {
        "initialised": (state / "router").exists(),
        "live": live,
        "idle": other(live),
        "versions": {c: read(state / "colours" / c) for c in COLOURS},
        "running": {n: pid_of(state, n) is not None for n in (*COLOURS, "router")},
        "releases": sorted(p.name for p in (state / "releases").glob("*")) if (state / "releases").is_dir() else [],
    }
    out["live_version"] = out["versions"][live]
    if ports.get("blue") and ports.get("green"):
        out["live_port"], out["idle_port"] = ports[live], ports[other(live)]
    return out


def stage(state: Path, version: str, broken: bool = False) -> dict:
    release = state / "releases" / version
    release.mkdir(parents=True, exist_ok=True)
    (release / "VERSION").write_text(version + "\n")
    marker = release / "BROKEN"
    if broken:
        marker.write_text("this release fails its health check\n")
    else:
        marker.unlink(missing_ok=True)
    return {"release": str(release), "version": version, "broken": broken}


def init(state: Path) -> dict:
    state.mkdir(parents=True, exist_ok=True)
    (state / "colours").mkdir(exist_ok=True)
    created = not (state / "router").exists()
    if created:
        stage(state, FIRST_VERSION)
        write_atomic(state / "colours" / "blue", FIRST_VERSION + "\n")
        write_atomic(state / "router", "blue\n")
    return {"state": str(state), "created": created}


def start(state: Path, colour: str, version: str, port: int, python: str) -> dict:
    release = state / "releases" / version
    if not (release / "VERSION").exists():
        raise SystemExit(f"ctl: no release {version} in {state / 'releases'} (stage it first)")
    previous = read(state / "colours" / colour)
    pid = spawn(state, colour, [python, str(HERE / "app.py"), "serve", "--colour", colour, "--port", str(port),
                                "--release", str(release), "--db", str(state / "app.db")])
    (state / "colours").mkdir(exist_ok=True)
    write_atomic(state / "colours" / colour, version + "\n")
    return {"colour": colour, "version": version, "previous_version": previous, "port": port, "pid": pid}


def start_router(state: Path, port: int, blue: int, green: int, python: str) -> dict:
    pid = spawn(state, "router", [python, str(HERE / "app.py"), "router", "--port", str(port), "--state",
                                  str(state), "--upstream", f"blue={blue}", "--upstream", f"green={green}"])
    return {"router": port, "pid": pid}


def switch(state: Path, colour: str) -> dict:
    previous = read(state / "router")
    write_atomic(state / "router", colour + "\n")
    return {"live": colour, "previous": previous}


def up(state: Path, router: int, blue: int, green: int, python: str) -> dict:
    """Initialise if needed; make sure the live colour and the router are running."""
    out = init(state)
    live = read(state / "router") or "blue"
    ports = {"blue": blue, "green": green}
    started = []
    if pid_of(state, live) is None:
        start(state, live, read(state / "colours" / live) or FIRST_VERSION, ports[live], python)
        started.append(live)
    if pid_of(state, "router") is None:
        start_router(state, router, blue, green, python)
        started.append("router")
    return {**out, "started": started, **status(state, ports)}


def down(state: Path) -> dict:
    return {"stopped": [n for n in (*COLOURS, "router") if stop(state, n)]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--state", type=Path, default=HERE / ".state")
    p.add_argument("--python", default=sys.executable, help="interpreter for the processes")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("init")
    s = sub.add_parser("stage")
    s.add_argument("version")
    s.add_argument("--broken", choices=("true", "false"), default="false",
                   help="true: the release fails its health check")
    s = sub.add_parser("start")
    s.add_argument("colour", choices=COLOURS)
    s.add_argument("--version", required=True)
    s.add_argument("--port", type=int, required=True)
    s = sub.add_parser("stop")
    s.add_argument("name", choices=(*COLOURS, "router"))
    s = sub.add_parser("switch")
    s.add_argument("colour", choices=COLOURS)
    for name in ("status", "up"):
        s = sub.add_parser(name)
        s.add_argument("--blue-port", type=int)
        s.add_argument("--green-port", type=int)
        s.add_argument("--router-port", type=int, required=name == "up")
    sub.add_parser("down")
    args = p.parse_args(argv)
    state: Path = args.state.resolve()
    if args.command == "init":
        out = init(state)
    elif args.command == "stage":
        out = stage(state, args.version, args.broken == "true")
    elif args.command == "start":
        out = start(state, args.colour, args.version, args.port, args.python)
    elif args.command == "stop":
        out = {"name": args.name, "stopped": stop(state, args.name)}
    elif args.command == "switch":
        out = switch(state, args.colour)
    elif args.command == "status":
        out = status(state, {"blue": args.blue_port, "green": args.green_port})
    elif args.command == "up":
        if not (args.blue_port and args.green_port):
            p.error("up needs --blue-port and --green-port")
        out = up(state, args.router_port, args.blue_port, args.green_port, args.python)
    else:
        out = down(state)
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
