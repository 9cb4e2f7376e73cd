"""Fan-out benchmark: one ``true`` on 20 loopback sshd hosts, runproc next to ansible.

    python3 bench/fanout.py [--hosts 20] [--repeat 3] [--login-rc]

Starts ``--hosts`` OpenSSH servers on 127.0.0.2, 127.0.0.3, ... (each its own host key, one
ed25519 client key, a known_hosts file listing them all), writes one INI inventory, then
times, ``--repeat`` times each, in the same process and on the same hosts:

- ``runproc FILE -i INV --forks N``: the whole command, interpreter start to exit;
- ``engine.run(...)`` in this process (imports already paid), for the engine's own share;
- ``ansible all -i INV -m command -a true -f N``.

It prints a table (best and median wall time, and runproc's ratio to ansible).

Login shells: sshd runs every command through the user's login shell, and bash sources
~/.bashrc when started by sshd. On a developer machine that file can cost 0.2 s of CPU
per command (pyenv init), the same for both tools, which would measure the .bashrc, not
the fan-out. The servers therefore set ``SHLVL=1`` (bash skips ~/.bashrc when it is a
nested shell); ``--login-rc`` keeps the .bashrc to see its cost.

Nothing leaves loopback; everything lives in a temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SSHD = "/usr/sbin/sshd"
LOOPBACK_LIMIT = 250  # 127.0.0.2 .. 127.0.0.251


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
                   check=True, capture_output=True)


class Hosts:
    """``count`` sshd processes on 127.0.0.2.. with a shared client key; stopped by ``stop()``."""

    def __init__(self, base: Path, count: int, login_rc: bool) -> None:
        if count > LOOPBACK_LIMIT:
            raise SystemExit(f"at most {LOOPBACK_LIMIT} hosts")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.base = base
        self.user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True,
                                                             text=True).stdout.strip()
        self.client_key = base / "id_ed25519"
        keygen(self.client_key)
        self.known_hosts = base / "known_hosts"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.hosts: list[tuple[str, str, int]] = []
        lines = []
        for i in range(count):
            name, address = f"h{i + 1:02d}", f"127.0.0.{i + 2}"
            d = base / name
            d.mkdir()
            keygen(d / "host_key")
            port = free_port(address)
            config = d / "sshd_config"
            config.write_text(textwrap.dedent(f"""\
                ListenAddress {address}:{port}
                HostKey {d / 'host_key'}
                PidFile {d / 'sshd.pid'}
                AuthorizedKeysFile {self.client_key}.pub
                PubkeyAuthentication yes
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                StrictModes no
                UsePAM no
                UseDNS no
                PrintMotd no
                PrintLastLog no
                MaxStartups 200:30:400
                Subsystem sftp internal-sftp
                LogLevel ERROR
            """) + ("" if login_rc else "SetEnv SHLVL=1\n"))
            log = (d / "sshd.log").open("wb")
            self.procs.append(subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                               stdout=log, stderr=subprocess.STDOUT))
            self.hosts.append((name, address, port))
            key = (d / "host_key.pub").read_text().split()
            lines.append(f"[{address}]:{port} {key[0]} {key[1]}\n")
        self.known_hosts.write_text("".join(lines))
        self._wait()

    def _wait(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        for name, address, port in self.hosts:
            while True:
                try:
                    with socket.create_connection((address, port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise SystemExit(f"sshd {name} on {address}:{port} did not start") from None
                    time.sleep(0.02)

    def inventory(self, path: Path) -> Path:
        common = f"-o UserKnownHostsFile={self.known_hosts} -o IdentitiesOnly=yes"
        rows = [f"{name} ansible_host={address} ansible_port={port}" for name, address, port in self.hosts]
        path.write_text("[bench]\n" + "\n".join(rows) + "\n\n[bench:vars]\n"
                        f"ansible_user={self.user}\nansible_ssh_private_key_file={self.client_key}\n"
                        f"ansible_ssh_common_args='{common}'\n"
                        "ansible_python_interpreter=/usr/bin/python3\n")
        return path

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


# one ``true`` on every host of the inventory's ``bench`` group (the group Hosts.inventory writes)
PROCEDURE = "procedure: bench-fanout\nsteps:\n  - id: noop\n    on: bench\n    shell: 'true'\n"


def ansible_env(base: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` plus ansible's temp and control-path folders under ``base`` (nothing in ~/.ansible),
    no colours, and host keys checked against the inventory's known_hosts as runproc checks them."""
    return {**env, "ANSIBLE_LOCAL_TEMP": str(base / "ansible-local"),
            "ANSIBLE_REMOTE_TEMP": str(base / "ansible-remote"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(base / "cp"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_HOST_KEY_CHECKING": "True"}


def timed(fn: Callable[[], None], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def check(cmd: list[str], env: dict[str, str], what: str) -> Callable[[], None]:
    def run() -> None:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise SystemExit(f"{what} failed (rc {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--login-rc", action="store_true", help="let bash source ~/.bashrc on the hosts")
    parser.add_argument("--no-ansible", action="store_true", help="skip the ansible side")
    args = parser.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="runproc-bench-"))
    hosts = Hosts(base, args.hosts, args.login_rc)
    try:
        inv = hosts.inventory(base / "inventory.ini")
        proc = base / "fanout.yml"
        proc.write_text(PROCEDURE)
        state = f"sqlite:///{base}/state.db"
        # the bench's own warm server (engine/cli/warm.py), stopped at the end
        (base / "warm").mkdir(mode=0o700)
        env = {**os.environ, "HOME": str(base / "home"), "PYTHONPATH": str(ROOT), "RUNPROC_WARM_DIR": str(base / "warm")}
        Path(env["HOME"]).mkdir()
        runproc = shutil.which("runproc", path=str(Path(sys.executable).parent))
        cli = [runproc] if runproc else [sys.executable, "-m", "engine.cli"]
        rows: list[tuple[str, list[float]]] = []

        command = [*cli, str(proc), "-i", str(inv), "--forks", str(args.hosts), "--state", state]
        check(command, env, "runproc")()  # untimed: page cache, and the warm server's start
        rows.append((f"runproc FILE -i INV --forks {args.hosts}", timed(check(command, env, "runproc"), args.repeat)))
        rows.append(("same, cold (RUNPROC_WARM=0)",
                     timed(check(command, env | {"RUNPROC_WARM": "0"}, "runproc"), args.repeat)))

        sys.path.insert(0, str(ROOT))
        import engine

        def in_process() -> None:
            result = engine.run(proc, inventory=str(inv), forks=args.hosts, state=state)
            if not result.ok:
                raise SystemExit(f"engine.run failed: {result.error}")
        rows.append(("engine.run(...) in process", timed(in_process, args.repeat)))

        if not args.no_ansible:
            ansible = shutil.which("ansible")
            if ansible is None:
                print("ansible not found: skipping it", file=sys.stderr)
            else:
                aenv = ansible_env(base, env)
                rows.append((f"ansible all -i INV -m command -a true -f {args.hosts}",
                             timed(check([ansible, "all", "-i", str(inv), "-m", "command", "-a", "true",
                                          "-f", str(args.hosts)], aenv, "ansible"), args.repeat)))

        print(f"\nfan-out of `true` to {args.hosts} loopback sshd hosts, {args.repeat} runs each "
              f"({os.cpu_count()} CPUs; login rc files {'sourced' if args.login_rc else 'skipped'})\n")
        width = max(len(label) for label, _ in rows)
        print(f"{'command':<{width}}  {'best s':>7}  {'median s':>8}  {'vs ansible':>10}")
        ansible_best = rows[-1][1] if rows[-1][0].startswith("ansible") else None
        for label, times in rows:
            ratio = (f"{min(times) / min(ansible_best):>9.2f}x" if ansible_best and not label.startswith("ansible")
                     else f"{'':>10}")
            print(f"{label:<{width}}  {min(times):>7.3f}  {statistics.median(times):>8.3f}  {ratio}")
        median = statistics.median(rows[0][1])
        print(f"\nrunproc end to end: {median:.3f} s median (issue 14's target on 50 hosts: <= 0.8 s; "
              f"{'met' if median <= 0.8 else 'NOT met'} here)")
        return 0
    finally:
        sys.path.insert(0, str(ROOT))
        from engine.cli.warmserver import stop_servers_in

        stop_servers_in(base / "warm")
        hosts.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
