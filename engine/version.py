"""The version of runproc (pyproject.toml says the same; tests/cli/test_list_schema_graph.py checks),
and the git commit it was built from.

``describe()`` is what ``runproc --version`` prints after the name. It must stay cheap (the
command costs little more than starting Python: tests/cli/test_startup.py), so the commit is
read from files, never by spawning git: from a checkout (the folder above this package holds
``.git``), ``.git/HEAD`` and the ref it names; from a wheel or an sdist, the ``_build.py`` that
setup.py writes into them while the checkout is at hand. Only the folder right above the
package is looked at: a wheel installed into a virtualenv inside some other repository must not
report that repository's commit. This module imports nothing but ``os`` (setup.py loads it by path).
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def describe() -> str:
    """``0.1.0 (git abc1234)`` where the commit is known, else ``0.1.0``."""
    commit = checkout_commit(os.path.dirname(_PACKAGE)) or built_commit()
    return f"{__version__} (git {commit[:7]})" if commit else __version__


def built_commit() -> str | None:
    """The commit recorded in a wheel or sdist at build time (``engine/_build.py``), if any."""
    try:
        from ._build import COMMIT  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # a checkout, or a build made without git at hand
        return None
    return str(COMMIT) or None


def checkout_commit(root: str) -> str | None:
    """The full commit id checked out in ``root`` (a repository's work tree), read from its
    git files: HEAD as a ref (loose, or in packed-refs) or detached, and a linked worktree's
    ``.git`` file pointing at its git folder. None when there is no repository or it is unreadable."""
    gitdir = os.path.join(root, ".git")
    try:
        if os.path.isfile(gitdir):  # a linked worktree or a submodule: "gitdir: PATH"
            pointer = _read(gitdir)
            if not pointer.startswith("gitdir:"):
                return None
            gitdir = os.path.normpath(os.path.join(root, pointer[len("gitdir:"):].strip()))
        head = _read(os.path.join(gitdir, "HEAD"))
        if not head.startswith("ref:"):
            return head if _is_sha(head) else None  # a detached HEAD
        ref = head[len("ref:"):].strip()
        common = gitdir  # a worktree keeps its HEAD here and its refs in the common folder
        if os.path.isfile(os.path.join(gitdir, "commondir")):
            common = os.path.normpath(os.path.join(gitdir, _read(os.path.join(gitdir, "commondir"))))
        for folder in dict.fromkeys((gitdir, common)):
            loose = os.path.join(folder, *ref.split("/"))
            if os.path.isfile(loose):
                sha = _read(loose)
                return sha if _is_sha(sha) else None
        return _packed(os.path.join(common, "packed-refs"), ref)
    except (OSError, UnicodeDecodeError):
        return None


def _packed(path: str, ref: str) -> str | None:
    if not os.path.isfile(path):
        return None  # an unborn branch: a repository with no commit yet
    with open(path, encoding="utf-8") as f:
        for line in f:
            sha, _, name = line.strip().partition(" ")
            if name == ref and _is_sha(sha):
                return sha
    return None


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def _is_sha(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)
