"""Run-scoped open connections: opened once on first use, reused by every step, closed at the end."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Resources:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, Any] = {}
        self._closers: list[tuple[str, Callable[[], None]]] = []
        self._locks: dict[str, threading.Lock] = {}

    def get(self, key: str, open_: Callable[[], Any], close: Callable[[Any], None] | None = None) -> Any:
        """The resource for ``key``, opening it with ``open_`` the first time."""
        with self._lock:
            if key in self._items:
                return self._items[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # open outside the global lock: connecting may take seconds
            if key in self._items:
                return self._items[key]
            item = open_()
            with self._lock:
                self._items[key] = item
                if close is not None:
                    self._closers.append((key, lambda: close(item)))
            return item

    def lock_for(self, key: str) -> threading.Lock:
        """A lock serialising use of one resource (a DB connection runs one transaction at a time)."""
        with self._lock:
            return self._locks.setdefault(f"use:{key}", threading.Lock())

    def close_all(self) -> list[str]:
        errors: list[str] = []
        for key, closer in reversed(self._closers):
            try:
                closer()
            except Exception as exc:  # noqa: BLE001 - closing must not hide the run's outcome
                errors.append(f"{key}: {exc}")
        self._closers.clear()
        self._items.clear()
        return errors
