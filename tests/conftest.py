"""Shared pytest configuration: real-server fixtures live in tests/servers (see tests/servers/*.py)."""

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "tests.servers.postgres",
    "tests.servers.sshd",
    "tests.servers.http",
    "tests.servers.s3",
    "tests.servers.kube",
    "tests.servers.temporal",
]


# The warm start (engine/cli/warm.py) is on in the suite, as for a user: the commands tests
# run go through a warm server. Its socket folder is this test process's own (one per xdist
# worker), the server leaves after a minute idle and is stopped when the session ends, so no
# test leaves one behind and none shares the developer's. tests/cli/test_warm.py gives each of
# its tests a folder of its own and compares warm and cold (RUNPROC_WARM=0) commands.
_WARM_DIR = tempfile.mkdtemp(prefix="runproc-tests-warm-")
os.environ["RUNPROC_WARM_DIR"] = _WARM_DIR
os.environ.setdefault("RUNPROC_WARM_IDLE", "60")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from engine.cli.warmserver import stop_servers_in

    stop_servers_in(_WARM_DIR)
    shutil.rmtree(_WARM_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _ctrl_c_as_a_terminal_gives_it() -> Iterator[None]:
    """Each test starts with SIGINT as a terminal's process has it: Python's KeyboardInterrupt
    handler, not blocked. A suite started as a shell's background job (`cmd &` without job
    control) inherits SIGINT ignored, and so would every process a test starts: a test that
    interrupts a run or a child with SIGINT then saw it ignored (two tests failed that way)."""
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before if before is not None else signal.default_int_handler)
        if signal.SIGINT in blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
