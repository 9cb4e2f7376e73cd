"""Shell completion (issue 18, must-have 4), driven the way the shells drive it.

argcomplete's protocol: the shell runs ``runproc`` with ``_ARGCOMPLETE=1``, the line in
``COMP_LINE`` and the cursor in ``COMP_POINT``; the candidates come back on file descriptor 8
(or in the file ``_ARGCOMPLETE_STDOUT_FILENAME`` names), separated by ``_ARGCOMPLETE_IFS``
(a vertical tab unless the shell says otherwise). Each case runs runproc as a subprocess
with that environment; one sources the bash script in a real bash and reads COMPREPLY.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import completion, main

PROCEDURE = """\
procedure: deploy
params:
  version: {type: str, default: "1.0"}
  region: {type: str, default: eu, choices: [eu, us]}
  apply: {type: bool, default: false}
steps:
  - id: backup
    shell: echo backup
  - id: migrate
    shell: echo migrate
  - id: restart
    on: web
    shell: echo restart
finally:
  - id: cleanup
    shell: echo cleanup
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a procedure, a subfolder and a state holding one recorded run."""
    here = tmp_path_factory.mktemp("completion")
    (here / "deploy.yml").write_text(PROCEDURE)
    (here / "notes.txt").write_text("not a procedure\n")
    (here / "runbooks").mkdir()
    (here / "runbooks" / "restart.yml").write_text("procedure: restart\nsteps:\n  - id: go\n    shell: 'true'\n")
    return here


@pytest.fixture(scope="module")
def run_id(workdir: Path) -> str:
    state = f"sqlite:///{workdir}/state.db"
    done = subprocess.run([sys.executable, "-m", "engine.cli", "runbooks/restart.yml", "--state", state, "--output",
                           "json"], cwd=workdir, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rid: str = json.loads(done.stdout)["run_id"]
    return rid


def complete(line: str, cwd: Path, **env: str) -> list[str]:
    """The candidates runproc offers for ``line`` with the cursor at its end."""
    out = cwd / f".completion-{os.getpid()}-{abs(hash(line))}.out"
    environ = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
               "_ARGCOMPLETE_STDOUT_FILENAME": str(out), "RUNPROC_STATE": f"sqlite:///{cwd}/state.db", **env}
    environ.pop("_ARC_DEBUG", None)
    done = subprocess.run([sys.executable, "-m", "engine.cli"], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # nothing reaches the terminal
    text = out.read_text()
    out.unlink()
    return text.split(env.get("_ARGCOMPLETE_IFS", "\v")) if text else []


def test_subcommands_and_procedure_files(workdir: Path) -> None:
    first = complete("runproc ", workdir)
    for name in ("run", "validate", "graph", "show", "resume", "rollback", "init", "completion", "serve"):
        assert name in first
    assert "deploy.yml" in first and "runbooks/" in first and "notes.txt" not in first
    assert complete("runproc val", workdir) == ["validate "]
    assert complete("runproc runbooks/", workdir) == ["runbooks/restart.yml "]


def test_flags_of_a_command_and_of_a_run(workdir: Path) -> None:
    assert complete("runproc validate --o", workdir) == ["--output "]
    assert complete("runproc deploy.yml --dry", workdir) == ["--dry-run "]  # one candidate: a space after
    assert set(complete("runproc show --", workdir)) >= {"--state", "--output", "--help"}
    assert complete("runproc deploy.yml --output ", workdir) == ["text", "json"]
    assert complete("runproc completion f", workdir) == ["fish "]


def test_step_ids_for_only(workdir: Path) -> None:
    assert complete("runproc deploy.yml --only ", workdir) == ["backup", "migrate", "restart"]
    assert complete("runproc run deploy.yml --dry-run --only m", workdir) == ["migrate "]


def test_param_names_then_their_values(workdir: Path) -> None:
    assert complete("runproc deploy.yml -p ", workdir) == ["version=", "region=", "apply="]
    assert complete("runproc deploy.yml -p reg", workdir) == ["region="]
    assert complete("runproc deploy.yml -p region=", workdir) == ["region=eu", "region=us"]
    assert complete("runproc deploy.yml --param apply=t", workdir) == ["apply=true "]


def test_run_ids_from_the_state(workdir: Path, run_id: str) -> None:
    for command in ("show", "resume", "rollback"):
        assert complete(f"runproc {command} ", workdir) == [f"{run_id} "]
    assert complete(f"runproc show {run_id[:3]}", workdir) == [f"{run_id} "]
    # another state on the line: its runs (none here), and a missing SQLite file is not created
    missing = workdir / "elsewhere" / "state.db"
    assert complete(f"runproc show --state sqlite:///{missing} ", workdir) == []
    assert not missing.parent.exists()


def test_a_file_that_does_not_read_offers_nothing(workdir: Path) -> None:
    assert complete("runproc notes.txt --only ", workdir) == []
    assert complete("runproc missing.yml -p ", workdir) == []


def test_fish_and_zsh_get_descriptions(workdir: Path) -> None:
    fish = complete("runproc validate --o", workdir, _ARGCOMPLETE_SHELL="fish", _ARGCOMPLETE_DFS="\t",
                    _ARGCOMPLETE_IFS="\n", _ARGCOMPLETE_SUPPRESS_SPACE="1")
    assert fish == ["--output\t"]
    zsh = complete("runproc gr", workdir, _ARGCOMPLETE_SHELL="zsh", _ARGCOMPLETE_SUPPRESS_SPACE="1")
    assert [z.split(":", 1)[0] for z in zsh] == ["graph"]


def test_every_registered_command_completes_its_own_flags() -> None:
    """Commands are read from the dispatcher's registry and each one's parser from the command
    itself, so a command added there (schedule, import...) completes with no change here."""
    names = completion.commands()
    from engine.cli import app

    assert set(names) >= {"run", *app.SUBCOMMANDS, *app.RUN_COMMANDS, *app._COMMAND_MODULES}
    for name in names:
        parser = completion.command_parser(name)
        flags = {o for a in parser._actions for o in a.option_strings}
        assert "--help" in flags and len(flags) > 1, (name, flags)


def test_a_verb_a_command_picks_itself(workdir: Path) -> None:
    """runproc serve token add: serve picks the verb from its words (no argparse subcommands);
    given them, it builds the verb's parser, whose flags complete."""
    assert complete("runproc serve token add --", workdir) == ["--help", "--role", "--tokens"]
    assert complete("runproc state info --o", workdir) == ["--output "]
    assert complete("runproc serve --bi", workdir) == ["--bind "]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_shell_code(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", shell]) == 0
    code = capsys.readouterr().out
    assert "_ARGCOMPLETE" in code and "runproc" in code
    if shell == "fish":
        assert "complete --command runproc" in code
    else:
        assert "complete -o nospace -o default -o bashdefault -F _python_argcomplete runproc" in code
    assert main(["completion", "tcsh"]) == 2


def test_normal_commands_do_not_load_argcomplete(workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "_ARGCOMPLETE"}
    for argv in (["--version"], ["validate", "deploy.yml"]):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "engine.cli", *argv], cwd=workdir,
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "argcomplete" not in done.stderr and "engine.cli.completion" not in done.stderr


def test_the_bash_script_in_a_real_bash(workdir: Path, tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.fail("bash is needed (the shell of the project's machines)")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "runproc").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m engine.cli "$@"\n')
    (bindir / "runproc").chmod(0o755)
    script = ('source <(runproc completion bash)\n'
              'COMP_LINE="runproc deploy.yml --only mi"; COMP_POINT=${#COMP_LINE}\n'
              'COMP_WORDS=(runproc deploy.yml --only mi); COMP_CWORD=3; COMP_TYPE=9\n'
              '_python_argcomplete runproc mi --only\n'
              'printf "<%s>\\n" "${COMPREPLY[@]}"\n')
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([bash, "--norc", "--noprofile", "-c", script], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "<migrate >\n"), done.stderr
