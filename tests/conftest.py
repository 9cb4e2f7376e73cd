"""Shared pytest configuration: real-server fixtures live in tests/servers (see tests/servers/*.py)."""

import signal
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
