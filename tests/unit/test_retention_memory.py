"""Cutting a big log to its head and tail streams it: memory stays flat however large the head."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from engine.state.retention import trim_file


def test_trim_file_copies_in_chunks_not_the_whole_head_at_once(tmp_path: Path) -> None:
    log = tmp_path / "flood-stdout.log"
    with log.open("wb") as out:
        for i in range(24):  # 24 MiB: a head of ~10 MiB and a tail of ~10 MiB are kept
            out.write(bytes([65 + i]) * (1 << 20))
    tracemalloc.start()
    try:
        cut = trim_file(log, 20 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kept = log.read_bytes()
    assert cut > 0 and len(kept) <= 20 << 20
    assert kept.startswith(b"A" * 1000) and kept.endswith(bytes([65 + 23]) * 1000)
    assert b"bytes cut from this log" in kept
    # read whole, the head alone would be ~10 MiB of Python bytes; in 1 MiB chunks it is ~1 MiB
    assert peak < 3 << 20, peak
