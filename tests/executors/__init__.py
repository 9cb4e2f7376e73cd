"""Executor tests: each executor against a real server on loopback (see tests/servers)."""
