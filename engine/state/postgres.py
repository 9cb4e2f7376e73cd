"""The state store in PostgreSQL: shared by a team (placeholder until the PostgreSQL store lands)."""

from __future__ import annotations

from typing import NoReturn

from .opening import state_problem


def parse_url(url: str) -> None:
    pass


def open_postgres(url: str) -> NoReturn:
    raise state_problem(url, "PostgreSQL state is not supported by this runproc yet")
