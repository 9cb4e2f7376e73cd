"""The scheduler never waits on its signal-polling timeout: a finished step is handled at once."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import engine


def _proc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_many_trivial_steps_cost_little(tmp_path: Path) -> None:
    steps = "".join(f"  - id: s{i}\n    assert: 'true'\n" for i in range(200))
    path = _proc(tmp_path, "procedure: quick\nsteps:\n" + steps)
    proc = engine.load(path)
    engine.run(proc, journal=False)  # warm imports
    t0 = time.monotonic()
    result = engine.run(proc, journal=False)
    took = time.monotonic() - t0
    assert result.ok
    assert took < 0.5, f"{took * 1000 / 200:.2f} ms per step"


def test_step_completion_is_not_delayed_by_the_poll_timeout(tmp_path: Path) -> None:
    path = _proc(tmp_path, """
        procedure: timing
        steps:
          - id: a
            wait: 0.05s
          - id: b
            wait: 0.05s
          - id: c
            needs: []
            wait: 0.12s
          - id: d
            needs: [b, c]
            wait: 0.05s
        finally:
          - id: f
            wait: 0.05s
    """)
    proc = engine.load(path)
    engine.run(proc, journal=False)
    samples = []
    for _ in range(3):
        result = engine.run(proc, journal=False)
        assert result.ok
        samples.append(result.duration)
    # critical path a, b, d, f = 0.2 s; a wait on the 0.5 s poll would show as > 0.5 s
    assert min(samples) < 0.35, samples
