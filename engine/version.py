"""The version of runproc (pyproject.toml says the same; tests/cli/test_list_schema_graph.py checks)."""

__version__ = "0.1.0"
