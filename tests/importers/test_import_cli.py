"""runproc import through the CLI: what a user meets there (one subprocess per case)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PLAYBOOK = """\
- hosts: localhost
  tasks:
    - name: hello
      command: echo hello
    - lineinfile: {path: /etc/hosts, line: x}
"""


def _runproc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def test_import_writes_a_file_that_validates_and_says_what_is_left(tmp_path: Path) -> None:
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    done = _runproc("import", "ansible", "site.yml", "-o", "site.proc.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "2 steps, 1 TODO(import)" in done.stderr
    assert "site.yml:5: step 'lineinfile'" in done.stderr
    assert "Traceback" not in done.stderr
    check = _runproc("validate", "site.proc.yml", cwd=tmp_path)
    assert check.returncode == 0, check.stderr


def test_an_existing_output_is_never_overwritten_without_force(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("#!/bin/sh\n# Step 1: hi\necho hi\n")
    (tmp_path / "out.yml").write_text("mine\n")
    refused = _runproc("import", "shell", "run.sh", "-o", "out.yml", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == \
        "runproc import: out.yml exists; not overwriting it (--force replaces it)"
    assert (tmp_path / "out.yml").read_text() == "mine\n"
    forced = _runproc("import", "shell", "run.sh", "-o", "out.yml", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "out.yml").read_text().startswith("# Imported from run.sh")


def test_bad_input_is_one_located_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "broken.yml").write_text("- hosts: all\n  tasks: [\n")
    done = _runproc("import", "ansible", "broken.yml", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("broken.yml:3:1: YAML syntax error")
    missing = _runproc("import", "shell", "nope.sh", cwd=tmp_path)
    assert (missing.returncode, missing.stderr.strip()) == (2, "runproc import: nope.sh: no such file")


def test_a_script_given_as_a_playbook_and_yaml_given_as_a_script_are_named_with_the_command_that_fits(
        tmp_path: Path) -> None:
    (tmp_path / "deploy.sh").write_text("#!/bin/sh\nset -e\necho deploy\n")
    (tmp_path / "site.yml").write_text("- hosts: web\n  tasks:\n    - command: /bin/true\n")
    script = _runproc("import", "ansible", "deploy.sh", cwd=tmp_path)
    assert script.returncode == 2 and script.stdout == ""
    assert script.stderr.strip() == ("deploy.sh:1:1: this is a shell script, not an Ansible playbook "
                                     "(hint: runproc import shell deploy.sh)")
    playbook = _runproc("import", "shell", "site.yml", cwd=tmp_path)
    assert playbook.returncode == 2 and playbook.stdout == ""
    assert "site.yml:1:1: this is YAML, not a shell script" in playbook.stderr
    assert "runproc import ansible site.yml" in playbook.stderr and "Traceback" not in playbook.stderr
