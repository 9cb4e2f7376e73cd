"""Shared pytest configuration: real-server fixtures live in tests/servers (see tests/servers/*.py)."""

pytest_plugins = [
    "tests.servers.postgres",
    "tests.servers.sshd",
    "tests.servers.http",
    "tests.servers.s3",
    "tests.servers.kube",
    "tests.servers.temporal",
]
