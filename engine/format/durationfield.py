"""The model's duration field: a float of seconds, read from ``30s``/``5m``/``1h30m``/a number."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

from .durations import DURATION_SCHEMA, parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(DURATION_SCHEMA)]
