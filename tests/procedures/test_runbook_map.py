"""docs/procedures.md maps every section of the runbook to the procedure implementing it (or says
why none does), and names every procedure of the library there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# the runbook's sections with something to do (its headings), as the map spells them
SECTIONS = [
    "System Overview > Architecture Components", "System Overview > Critical Metrics Dashboard",
    "Daily Operations > Morning Health Check", "Daily Operations > Performance Monitoring",
    "Daily Operations > Template System Checks", "Incident Response > Severity Levels",
    "Step 1: Initial Assessment", "Step 2: Diagnosis", "1. Service Restart", "2. Rollback to Previous Version",
    "3. Scale Up Resources", "Incident Response > Communication Templates",
    "Scheduled Maintenance Windows: weekly", "Scheduled Maintenance Windows: monthly",
    "Pre-Maintenance Checklist > 24 Hours Before", "Pre-Maintenance Checklist > 2 Hours Before",
    "Blue-Green Deployment Process", "Database Migrations", "Security Updates",
    "Key Performance Indicators", "Prometheus Alert Rules", "Log Analysis Queries",
    "1. High Response Times", "2. Template Generation Failures", "3. Database Connection Issues",
    "4. Authentication/Authorization Issues", "Database Optimization", "Application Optimization",
    "Complete Service Outage", "Database Backup Verification", "Point-in-Time Recovery",
    "Escalation Matrix", "External Contacts", "Communication Channels",
]


def _map() -> list[tuple[str, str, str]]:
    text = (ROOT / "docs" / "procedures.md").read_text()
    body = text.split("## The runbook, section by section", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in body.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    cells = [tuple(c.strip() for c in row.strip("|").split(" | ")) for row in rows[1:]]
    return [(c[0], c[1], c[2] if len(c) > 2 else "") for c in cells]


def test_every_runbook_section_has_a_procedure_or_a_reason():
    rows = _map()
    for section in SECTIONS:
        found = [r for r in rows if section in r[0]]
        assert found, f"docs/procedures.md: the runbook's {section!r} is not in the map"
        for _, procedure, why in found:
            assert procedure != "none" or why, f"{section}: no procedure and no reason"


def test_every_procedure_is_in_the_map_and_names_its_section():
    named = set(re.findall(r"`([a-z0-9-]+)`", " ".join(r[1] for r in _map())))
    for path in sorted((ROOT / "procedures").glob("*.yml")):
        assert path.stem in named, f"docs/procedures.md: {path.stem} is not in the runbook map"
        assert path.read_text().startswith("# Runbook: "), f"{path.name}: its header names no section of the runbook"
