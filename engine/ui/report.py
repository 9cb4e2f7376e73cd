"""Reports of a run: the JSON document (spec "Command line"), JUnit XML, an evidence bundle."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..execution.results import RunResult


def to_json_text(result: RunResult) -> str:
    # every field was redacted as it was made; this pass guards what a plugin may have missed
    return result.redact(json.dumps(result.to_json(), indent=2, default=str, ensure_ascii=False))


# characters XML 1.0 cannot hold (a NUL in a command's output would make junit.xml unreadable)
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def to_junit(result: RunResult) -> str:
    from xml.etree import ElementTree as ET  # only a --report-dir pays for it

    failures = sum(1 for s in result.steps.values() if s.status in ("failed", "timed_out", "rollback_failed"))
    skipped = sum(1 for s in result.steps.values() if s.status in ("skipped", "planned", "cancelled"))
    suite = ET.Element("testsuite", name=result.procedure, tests=str(len(result.steps)),
                       failures=str(failures), skipped=str(skipped), time=f"{result.duration:.3f}",
                       timestamp=result.started_at)
    for step in result.steps.values():
        case = ET.SubElement(suite, "testcase", classname=f"{result.procedure}.{step.phase}", name=step.id,
                             time=f"{step.duration:.3f}")
        if step.status in ("failed", "timed_out", "rollback_failed"):
            ET.SubElement(case, "failure", message=step.status).text = _xml_text(step.error or "")
        elif step.status in ("skipped", "planned", "cancelled"):
            ET.SubElement(case, "skipped", message=step.status)
        out = step.fields.get("stdout")
        if isinstance(out, str) and out:
            ET.SubElement(case, "system-out").text = _xml_text(out)
        err = step.fields.get("stderr")
        if isinstance(err, str) and err:
            ET.SubElement(case, "system-err").text = _xml_text(err)
    return result.redact(ET.tostring(suite, encoding="unicode"))


def write_bundle(result: RunResult, directory: str | Path) -> Path:
    """``report.json``, ``junit.xml`` and one log per step in ``directory``."""
    d = Path(directory)
    (d / "steps").mkdir(parents=True, exist_ok=True)
    (d / "report.json").write_text(to_json_text(result) + "\n", encoding="utf-8")
    (d / "junit.xml").write_text(to_junit(result) + "\n", encoding="utf-8")
    for step in result.steps.values():
        (d / "steps" / f"{step.id}.log").write_text(result.redact(_step_log(step.to_json())), encoding="utf-8")
    return d


def _step_log(data: dict[str, Any]) -> str:
    lines = [f"step: {data['id']}", f"status: {data['status']}", f"started_at: {data.get('started_at')}",
             f"duration: {data.get('duration')}s", f"attempts: {data.get('attempts')}"]
    if data.get("action"):
        lines.append(f"action: {data['action']}")
    if data.get("error"):
        lines.append(f"error: {data['error']}")
    for note in data.get("notes") or []:
        lines.append(f"note: {note}")
    for stream in ("stdout", "stderr"):
        if data.get(f"{stream}_log"):
            lines.append(f"full {stream}: {data[f'{stream}_log']}")
        if data.get(stream):
            lines.append(f"--- {stream} ---\n{data[stream]}")
    if data.get("rollback"):
        rb = data["rollback"]
        lines.append(f"--- rollback: {rb.get('status')} ---")
        if rb.get("action"):
            lines.append(f"action: {rb['action']}")
        if rb.get("error"):
            lines.append(f"error: {rb['error']}")
    unit = "iteration" if data.get("loop") else "host"  # a loop's iterations stand where hosts do
    for host, h in (data.get("hosts") or {}).items():
        lines.append(f"--- {unit} {host}: {h.get('status')} ---")
        if unit == "iteration":  # each its own action, attempts and error, as a step's log says
            lines.extend(f"{k}: {h[k]}" for k in ("action", "attempts", "error") if h.get(k))
            undo = h.get("rollback")
            if isinstance(undo, dict):
                lines.append(f"rollback: {undo.get('status')}: {undo.get('action') or ''}"
                             + (f" ({undo['error']})" if undo.get("error") else ""))
        for stream in ("stdout", "stderr"):
            if h.get(stream):
                lines.append(f"[{stream}]\n{h[stream]}")
    return "\n".join(lines) + "\n"
