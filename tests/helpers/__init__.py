"""Helpers shared by the tests: not collected by pytest (no test_ prefix)."""
