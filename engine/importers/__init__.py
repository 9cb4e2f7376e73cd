"""Importers: an Ansible playbook or a shell script as a procedure's YAML text.

They produce text (with comments and ``# TODO(import)`` markers for a person to finish) and
check it with engine.format's loader before returning it; the CLI (engine/cli/importing.py,
``runproc import``) writes it out. docs/import.md says what is translated and how.
"""

from __future__ import annotations

from .common import Imported

__all__ = ["Imported", "import_playbook", "import_script"]


def import_playbook(text: str, file: str) -> Imported:
    """An Ansible playbook's text as a procedure (raises ProcedureError when it is no playbook)."""
    from .ansible import import_playbook as run

    return run(text, file)


def import_script(text: str, file: str) -> Imported:
    """A shell script's text as a procedure, one step per commented block."""
    from .shell import import_script as run

    return run(text, file)
