"""Packaging (issue 18, must-have 5): the sdist and the wheel build offline and carry what an
installed runproc needs; the version names the git commit, from a checkout and from a build;
the Containerfile runs the CLI as a user without privileges.

The build runs on a copy of the checkout in tmp_path (setuptools writes build/ and egg-info
beside the sources, which must not happen in a checkout others use), with a .git of its own
naming a known commit, and ``--no-isolation`` (an isolated build would download setuptools).
Nothing is installed: the wheel is read as a zip and imported from a folder it is unpacked to.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from engine.version import __version__, checkout_commit, describe

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# what a build reads besides engine/ (MANIFEST.in names the rest of the sdist)
TOP = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "Containerfile", ".dockerignore",
       ".pre-commit-hooks.yaml")


def _fake_git(root: Path, commit: str = COMMIT) -> None:
    (root / ".git" / "refs" / "heads").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".git" / "refs" / "heads" / "main").write_text(commit + "\n")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("build")
    src = base / "src"
    shutil.copytree(ROOT / "engine", src / "engine", ignore=shutil.ignore_patterns("__pycache__", "*.pyc",
                                                                                  "_build.py"))
    shutil.copytree(ROOT / "docs", src / "docs")
    for name in TOP:
        shutil.copy2(ROOT / name, src / name)
    _fake_git(src)
    out = base / "dist"
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
                          capture_output=True, text=True, timeout=300, cwd=base)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    wheels, sdists = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0], "base": base}


def test_the_wheel_holds_the_package_its_web_files_and_entry_points(built: dict[str, Path]) -> None:
    assert built["wheel"].name == f"runproc-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(built["wheel"]) as z:
        names = set(z.namelist())
        entry_points = z.read(f"runproc-{__version__}.dist-info/entry_points.txt").decode()
        metadata = z.read(f"runproc-{__version__}.dist-info/METADATA").decode()
    for module in ("engine/__init__.py", "engine/cli/app.py", "engine/cli/completion.py", "engine/cli/scaffold.py",
                   "engine/format/schema.py", "engine/web/app.py", "engine/py.typed"):
        assert module in names
    # every file runproc serve serves or renders, the script of the live pages included
    for folder in ("templates", "static"):
        shipped = {p.name for p in (ROOT / "engine" / "web" / folder).iterdir() if p.is_file()}
        assert shipped and {f"engine/web/{folder}/{n}" for n in shipped} <= names
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "docs/"))]
    assert "runproc = engine.cli:main_entry" in entry_points
    assert "[runproc.executors]" in entry_points and "shell = engine.executors.shell:ShellExecutor" in entry_points
    assert "Requires-Dist: argcomplete" in metadata


def test_the_sdist_rebuilds_the_wheel_and_carries_docs_and_container(built: dict[str, Path]) -> None:
    with tarfile.open(built["sdist"]) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
        recorded = t.extractfile(f"runproc-{__version__}/engine/_build.py")
        assert recorded is not None
        build_info = recorded.read().decode()
    for name in (*TOP, "engine/web/static/live.js", "engine/web/templates/run.html", "docs/install.md",
                 "docs/format.md", "engine/cli/app.py"):
        assert name in names
    # python -m build makes the wheel from the sdist, where there is no .git: the commit
    # reaches the wheel through this file
    assert f'COMMIT = "{COMMIT}"' in build_info
    assert not [n for n in names if "__pycache__" in n]


def test_an_unpacked_wheel_reports_the_commit_it_was_built_from(built: dict[str, Path]) -> None:
    site = built["base"] / "site"
    with zipfile.ZipFile(built["wheel"]) as z:
        z.extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = "import engine.version as v; print(v.__file__); print(v.describe())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                          cwd=built["base"])
    assert done.returncode == 0, done.stderr
    where, said = done.stdout.splitlines()
    assert Path(where).is_relative_to(site)  # the unpacked copy, not this checkout
    assert said == f"{__version__} (git {COMMIT[:7]})"


def test_a_checkout_reports_its_head_read_from_git_files() -> None:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.fail("this test runs in a git checkout with git installed")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert checkout_commit(str(ROOT)) == head
    assert describe() == f"{__version__} (git {head[:7]})"
    done = subprocess.run([sys.executable, "-m", "engine.cli", "--version"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert (done.returncode, done.stdout) == (0, f"runproc {__version__} (git {head[:7]})\n")


def test_git_files_in_each_form(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    _fake_git(loose)
    assert checkout_commit(str(loose)) == COMMIT

    packed = tmp_path / "packed"
    (packed / ".git").mkdir(parents=True)
    (packed / ".git" / "HEAD").write_text("ref: refs/heads/release/1.0\n")
    (packed / ".git" / "packed-refs").write_text(f"# pack-refs with: peeled fully-peeled sorted\n"
                                                 f"{'f' * 40} refs/heads/main\n{COMMIT} refs/heads/release/1.0\n")
    assert checkout_commit(str(packed)) == COMMIT

    detached = tmp_path / "detached"
    (detached / ".git").mkdir(parents=True)
    (detached / ".git" / "HEAD").write_text(COMMIT + "\n")
    assert checkout_commit(str(detached)) == COMMIT

    # a linked worktree: .git is a file naming its folder, whose refs live in the common folder
    main_git = tmp_path / "main" / ".git"
    _fake_git(main_git.parent)
    worktree_git = main_git / "worktrees" / "wt"
    worktree_git.mkdir(parents=True)
    (worktree_git / "HEAD").write_text("ref: refs/heads/main\n")
    (worktree_git / "commondir").write_text("../..\n")
    (tmp_path / "wt").mkdir()
    (tmp_path / "wt" / ".git").write_text(f"gitdir: {worktree_git}\n")
    assert checkout_commit(str(tmp_path / "wt")) == COMMIT

    unborn = tmp_path / "unborn"
    (unborn / ".git").mkdir(parents=True)
    (unborn / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert checkout_commit(str(unborn)) is None
    assert checkout_commit(str(tmp_path / "nothing")) is None


def _stages(text: str) -> list[list[tuple[str, str]]]:
    """The Containerfile's instructions by stage: (INSTRUCTION, arguments), continuations joined."""
    joined = re.sub(r"\\\n", " ", text)
    stages: list[list[tuple[str, str]]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word.upper(), rest.strip()))
    return stages


def test_the_containerfile_runs_the_cli_as_a_user_without_privileges() -> None:
    stages = _stages((ROOT / "Containerfile").read_text())
    assert len(stages) == 2
    build, final = stages
    assert all(re.fullmatch(r"\S*python:\$\{PYTHON\}-slim( AS \w+)?", s[0][1]) for s in stages)
    assert any(i == "RUN" and "python -m build --wheel" in a for i, a in build)
    users = [a for i, a in final if i == "USER"]
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith(("root:", "0:"))
    creates = next(a for i, a in final if i == "RUN" and "useradd" in a)
    assert re.search(rf"useradd .*\b{re.escape(users[-1])}\b", creates)
    entrypoint = [a for i, a in final if i == "ENTRYPOINT"]
    assert entrypoint == ['["runproc"]']
    # the user comes after the installs: nothing installed later as root, nothing run as root after
    order = [i for i, _ in final]
    assert order.index("USER") > max(n for n, i in enumerate(order) if i == "RUN")
    # the build context keeps .git (the wheel's commit) and leaves out a developer's leftovers
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
    assert ".venv/" in ignored and not [p for p in ignored if p.strip("/*") == ".git"]
