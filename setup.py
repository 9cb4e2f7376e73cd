"""Build hooks only (the project is described in pyproject.toml): record the git commit a wheel
or an sdist is built from in ``engine/_build.py``, so ``runproc --version`` of an installed
runproc says ``0.1.0 (git abc1234)`` as a checkout does (engine/version.py reads it).

An sdist made from a checkout carries the file, so a wheel built from that sdist (no .git
there: ``python -m build`` does exactly this) still knows its commit. Nothing is written into
the source tree: the file goes into the build folder or the sdist's release tree.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))
GENERATED = os.path.join("engine", "_build.py")


def _commit() -> str | None:
    # engine/version.py by path: importing the package would need its dependencies installed
    spec = importlib.util.spec_from_file_location("_runproc_version", os.path.join(HERE, "engine", "version.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    commit: str | None = module.checkout_commit(HERE)
    return commit


def _write(folder: str, commit: str) -> None:
    path = os.path.join(folder, GENERATED)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.remove(path)  # the sdist's tree hard-links source files: never write through a link
    with open(path, "w", encoding="utf-8") as f:
        f.write(f'"""Written by setup.py when this build was made."""\n\nCOMMIT = "{commit}"\n')


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        commit = _commit()
        if commit:  # else: an sdist's own _build.py (copied as a module of the package) stands
            _write(self.build_lib, commit)


class Sdist(sdist):
    def make_release_tree(self, base_dir: str, files: Any) -> None:
        super().make_release_tree(base_dir, files)
        commit = _commit()
        if commit:
            _write(base_dir, commit)


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
