"""``python -m engine.cli``: the same entry point as the ``runproc`` command."""

from .app import main_entry

main_entry()
