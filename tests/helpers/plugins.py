"""The redis executor example (examples/redis-executor) installed as a user would, for tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REDIS_PLUGIN = ROOT / "examples" / "redis-executor"


def install_redis_plugin(workspace: Path) -> Path:
    """``pip install`` the plugin into a folder of its own under ``workspace``; return that folder.

    Built from a copy (the build leaves metadata beside the sources) and never installed into
    the environment that runs the tests: a runproc process sees it when the folder is on its
    PYTHONPATH, where importlib.metadata finds its entry point. This process never does.
    """
    source = workspace / "plugin-src" / "redis-executor"
    shutil.copytree(REDIS_PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = workspace / "plugin-site"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          "--no-deps", "--no-index", "--no-build-isolation", "--target", str(target), str(source)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert list(target.glob("runproc_redis-*.dist-info")), "pip installed no distribution metadata"
    return target
