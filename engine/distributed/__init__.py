"""Running procedures on Temporal: a workflow interprets the validated procedure, workers in
each network zone execute its steps as activities with the local run's own step code
(engine/execution/portable.py). Imported only with ``--engine temporal://``, ``runproc
worker`` or ``runproc approve``: ``temporalio`` is the optional extra ``runproc[temporal]``.
"""

from __future__ import annotations

from ..errors import InvalidInputError

EXTRA_HINT = "pip install 'runproc[temporal]'"


def require_temporalio() -> None:
    """A clear error naming the extra when temporalio is not installed."""
    try:
        import temporalio  # noqa: F401
    except ImportError:
        raise InvalidInputError(f"the Temporal engine needs the temporalio package: {EXTRA_HINT}") from None
