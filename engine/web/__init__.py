"""The control room: ``runproc serve``, a web page and a JSON API over the state store
(docs/web.md). Starlette, uvicorn and sse-starlette are the optional extra ``runproc[web]``:
this package's own ``__init__`` imports none of them, so ``runproc serve token add`` and the
error naming the extra work without it; ``engine.web.app`` imports them.

Layering: beside ``engine.cli`` at the top; it reads through ``engine.api``, ``engine.state``,
``engine.ui`` and ``engine.format``, answers confirm steps through ``engine.execution.approvals``
and starts runs as ``runproc`` processes; only ``engine.cli.serve`` imports it.
"""

from __future__ import annotations

from ..errors import InvalidInputError

EXTRA_HINT = "pip install 'runproc[web]'"
# what ``import`` must find for ``runproc serve``; sse-starlette serves the live updates
_NEEDED = (("starlette", "starlette"), ("uvicorn", "uvicorn"), ("sse_starlette", "sse-starlette"))


def require_web() -> None:
    """One clear error naming the extra when a package of ``runproc[web]`` is missing."""
    import importlib.util

    missing = [dist for module, dist in _NEEDED if importlib.util.find_spec(module) is None]
    if missing:
        raise InvalidInputError(f"serve needs {', '.join(missing)}, the web extra: {EXTRA_HINT}")
