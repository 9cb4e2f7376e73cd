"""`runproc validate`: every kind of problem, located at file:line:col, as a user sees it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.validate import cli, write

pytestmark = pytest.mark.usefixtures("in_tmp")


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def problems(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str) -> list[str]:
    """Validate ``text``; assert it is refused with exit 2; return the problem lines."""
    name = write(tmp_path, text)
    done = cli(capsys, "validate", name)
    assert done.rc == 2, done.out
    assert done.out == ""
    return done.lines


# ---------------------------------------------------------------- YAML


def test_yaml_syntax_error_has_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            shell: [echo, hi
          - id: b
    """)
    assert len(lines) == 1
    assert lines[0].startswith("procedures/x.yml:5:")
    assert "YAML syntax error" in lines[0]


def test_duplicate_key_names_both_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            shell: echo one
            timeout: 5s
            shell: echo two
    """)
    assert lines == ["procedures/x.yml:6:5: duplicate key 'shell' (first defined at line 4) "
                     "(hint: YAML keeps only one of them; remove or rename one)"]


def test_duplicate_keys_and_tags_do_not_hide_other_problems(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            shell: echo
            shell: again
            timout: 5s
          - id: b
            needs: [c]
            shell: !vault abc
    """)
    assert lines == [
        "procedures/x.yml:5:5: duplicate key 'shell' (first defined at line 4) "
        "(hint: YAML keeps only one of them; remove or rename one)",
        "procedures/x.yml:6:5: steps[0]: unknown key 'timout' (did you mean 'timeout'?)",
        "procedures/x.yml:8:13: steps[1]: needs unknown step 'c'",
        "procedures/x.yml:9:12: unsupported YAML tag '!vault'",
    ]


def test_non_mapping_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        - id: a
          shell: echo
    """)
    assert lines == ["procedures/x.yml:1:1: a procedure is a YAML mapping with 'procedure:' and 'steps:'; "
                     "this document is a list"]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n"])
def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    assert problems(capsys, tmp_path, text) == [
        "procedures/x.yml:1:1: the file is empty; a procedure is a YAML mapping"]


def test_file_too_large_is_refused_before_parsing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.format.yamlsrc import MAX_FILE_BYTES

    path = tmp_path / "procedures" / "huge.yml"
    path.parent.mkdir()
    with path.open("w") as f:
        f.write("procedure: huge\n")
        f.write(("# " + "x" * 1021 + "\n") * (MAX_FILE_BYTES // 1024 + 1))
    done = cli(capsys, "validate", "procedures/huge.yml")
    assert done.rc == 2
    assert done.lines[0].startswith(f"procedures/huge.yml:1:1: file is {path.stat().st_size:,} bytes; "
                                    f"the limit is {MAX_FILE_BYTES:,}")


def test_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    done = cli(capsys, "validate", "nope.yml")
    assert (done.rc, done.lines) == (2, ["nope.yml: no such file"])


def test_two_documents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps: [{id: a, shell: echo}]
        ---
        procedure: y
    """)
    assert lines[0].startswith("procedures/x.yml:3:1: more than one YAML document in the file")


def test_deep_nesting_is_refused_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The C composer segfaults at a few hundred thousand levels; we never compose.
    (tmp_path / "deep.yml").write_text("procedure: x\nvars:\n  v: " + "[" * 300_000 + "]" * 300_000 + "\n")
    done = cli(capsys, "validate", "deep.yml")
    assert done.rc == 2
    assert done.lines == ["deep.yml:3:104: YAML nested more than 100 levels deep"]


def test_undefined_alias(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - *step
    """)
    assert lines == ["procedures/x.yml:3:5: undefined YAML alias *step (hint: define it first with &step)"]


def test_anchors_and_merge_keys_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = write(tmp_path, """
        procedure: x
        vars:
          defaults: &defaults {timeout: 30s, retry: {attempts: 2}}
        steps:
          - <<: *defaults
            id: a
            shell: echo a
          - <<: *defaults
            id: b
            shell: echo b
            timeout: 5s
    """)
    assert cli(capsys, "validate", name).rc == 0
    from engine import load

    proc = load(name)
    assert [s.timeout for s in proc.steps] == [30.0, 5.0]
    assert [s.retry.attempts for s in proc.steps if s.retry] == [2, 2]


# ---------------------------------------------------------------- schema


def test_typo_key_with_suggestion_exact_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            shell: echo a
          - id: b
            shell: echo b
            timout: 5m
    """)
    assert lines == ["procedures/x.yml:7:5: steps[1]: unknown key 'timout' (did you mean 'timeout'?)"]


def test_typo_in_nested_and_top_level_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        descripton: oops
        params:
          n: {type: int, defualt: 3}
        steps:
          - id: a
            shell: {cmd: echo, cwdd: /tmp}
            retry: {attempts: 3, dealy: 1s}
    """)
    assert lines == [
        "procedures/x.yml:2:1: procedure: unknown key 'descripton' (did you mean 'description'?)",
        "procedures/x.yml:4:18: params.n: unknown key 'defualt' (did you mean 'default'?)",
        "procedures/x.yml:7:24: steps[0]: unknown key 'cwdd' (did you mean 'cwd'?)",
        "procedures/x.yml:8:26: steps[0].retry: unknown key 'dealy' (did you mean 'delay'?)",
    ]


def test_wrong_types_and_yaml11_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        concurrency: "4"
        steps:
          - id: a
            shell: echo
            readonly: "yes"
          - id: b
            shell: echo
            readonly: yes
          - id: c
            shell: echo
            continue_on_error: off
            retry: {attempts: 0755}
          - id: d
            shell: 5
            timeout: 1:30
    """)
    assert lines == [
        "procedures/x.yml:2:14: concurrency: expected an integer, got the string '4' "
        "(hint: remove the quotes to make it a number)",
        "procedures/x.yml:6:15: steps[0].readonly: expected true or false, got the string 'yes' "
        "(hint: runproc reads YAML 1.2, where 'yes' is a string; write true or false)",
        "procedures/x.yml:9:15: steps[1].readonly: expected true or false, got the string 'yes' "
        "(hint: runproc reads YAML 1.2, where 'yes' is a string; write true or false)",
        "procedures/x.yml:12:24: steps[2].continue_on_error: expected true or false, got the string 'off' "
        "(hint: runproc reads YAML 1.2, where 'off' is a string; write true or false)",
        "procedures/x.yml:13:23: steps[2].retry.attempts: expected an integer, got the string '0755' "
        "(hint: a leading zero is ambiguous (octal in YAML 1.1): write 0o755 for octal, or drop the zero)",
        "procedures/x.yml:15:12: steps[3].shell: expected a string, got the number 5",
        "procedures/x.yml:16:14: steps[3].timeout: expected a duration such as 30s, 5m, 1h30m or a number "
        "of seconds, got '1:30'",
    ]


def test_yaml12_on_key_is_the_string_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # YAML 1.1 reads the key `on:` as the boolean true; the step's `on` must survive.
    name = write(tmp_path, """
        procedure: x
        steps:
          - id: a
            on: webservers
            shell: hostname
    """)
    assert cli(capsys, "validate", name).rc == 0
    from engine import load

    assert load(name).steps[0].on == "webservers"


def test_unknown_executor_key_with_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            shel: ls
    """)
    assert lines == ["procedures/x.yml:4:5: steps[0]: unknown key 'shel' (did you mean 'shell'?)"]


def test_step_without_executor_lists_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            name: does nothing
    """)
    assert len(lines) == 1
    assert lines[0].startswith("procedures/x.yml:3:5: steps[0]: no executor key; use one of ")
    for name in ("assert", "confirm", "procedure", "shell", "wait"):
        assert name in lines[0]


def test_two_executors_in_one_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            shell: echo
            wait: 5s
    """)
    assert lines == ["procedures/x.yml:5:5: steps[0]: more than one executor ('shell', 'wait'); "
                     "a step does one thing: split it into steps"]


def test_option_inside_and_beside(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            shell: {cmd: ls, cwd: /tmp}
            cwd: /var
    """)
    assert lines == ["procedures/x.yml:5:5: steps[0]: 'cwd' is given both inside 'shell' and beside it; keep one"]


def test_options_beside_the_executor_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = write(tmp_path, """
        procedure: x
        steps:
          - id: a
            shell: ls
            cwd: /tmp
          - id: b
            wait: {seconds: 1m}
    """)
    assert cli(capsys, "validate", name).rc == 0
    from engine import load

    proc = load(name)
    assert proc.steps[0].action.options.cwd == "/tmp"
    assert proc.steps[1].action.options.seconds == 60.0


def test_missing_required_keys_and_bad_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: Bad_Name
        steps:
          - shell: echo
          - id: Deploy
            shell: echo
    """)
    assert lines == [
        "procedures/x.yml:1:12: procedure: 'Bad_Name' is not a valid procedure name: use lower-case letters, "
        "digits and '-', starting with a letter or digit",
        "procedures/x.yml:3:5: steps[0]: missing required key 'id'",
        "procedures/x.yml:4:9: steps[1].id: 'Deploy' is not a valid step id: use lower-case letters, digits "
        "and '_', not starting with a digit",
    ]


def test_no_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert problems(capsys, tmp_path, "procedure: x\nsteps: []\n") == [
        "procedures/x.yml:2:8: steps: a procedure needs at least one step"]
    assert problems(capsys, tmp_path, "procedure: x\n") == [
        "procedures/x.yml:1:1: procedure: missing required key 'steps'"]


def test_param_declarations_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        params:
          a: {type: string}
          b: {type: int, default: "3"}
          c: {type: int, min: 5, max: 1}
          d: {type: str, required: true, default: x}
          e: {type: str, pattern: "(unclosed"}
          f: {type: str, choices: [a, b], default: c}
        steps:
          - id: s
            shell: echo
    """)
    assert lines == [
        "procedures/x.yml:3:13: params.a.type: expected one of 'str', 'int', 'float', 'bool' or 'list', "
        "got 'string' (did you mean 'str'?)",
        "procedures/x.yml:4:6: params.b: default: expected an integer, got '3'",
        "procedures/x.yml:5:6: params.c: 'min' (5) is above 'max' (1)",
        "procedures/x.yml:6:6: params.d: 'required: true' and a 'default' contradict: with a default the "
        "param is never missing; drop one",
        "procedures/x.yml:7:27: params.e.pattern: invalid regular expression: missing ), unterminated "
        "subpattern at position 0",
        "procedures/x.yml:8:6: params.f: default: 'c' is not one of 'a', 'b'",
    ]


def test_secret_and_connection_shapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        secrets:
          a: {env: A, file: a.txt}
          b: TOKEN
        connections:
          db: {postgress: "postgresql://x"}
          api: {http: {base_url: "https://x", timeot: 5s}}
          two: {sqlite: a.db, s3: {bucket: b}}
        steps:
          - id: s
            shell: echo
    """)
    assert lines == [
        "procedures/x.yml:3:6: secrets.a: a secret takes exactly one of 'env', 'file', 'vault', "
        "'aws_secretsmanager' or 'aws_ssm'",
        "procedures/x.yml:4:6: secrets.b: expected a mapping, got the string 'TOKEN' "
        "(hint: a secret is {env: VARIABLE} or {file: PATH})",
        "procedures/x.yml:6:8: connections.db: unknown connection kind 'postgress' (did you mean 'postgres'?)",
        "procedures/x.yml:7:39: connections.api: unknown key 'timeot' for a http connection "
        "(did you mean 'timeout'?)",
        "procedures/x.yml:8:23: connections.two: more than one kind ('sqlite', 's3'); a connection has one",
    ]


def test_needs_may_be_one_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = write(tmp_path, """
        procedure: x
        steps:
          - id: a
            shell: echo
          - id: b
            needs: []
            shell: echo
          - id: c
            needs: a
            shell: echo {{ steps.a.stdout }}
    """)
    assert cli(capsys, "validate", name).rc == 0
    from engine import load

    assert load(name).steps[2].needs == ["a"]


# ---------------------------------------------------------------- needs and the DAG


def test_unknown_need_with_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: backup
            shell: echo
          - id: migrate
            needs: [bakup]
            shell: echo
    """)
    assert lines == ["procedures/x.yml:6:13: steps[1]: needs unknown step 'bakup' (did you mean 'backup'?)"]


def test_finally_cannot_need_main_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            shell: echo
        finally:
          - id: cleanup
            needs: [a]
            shell: echo
    """)
    assert lines == ["procedures/x.yml:7:13: finally[0]: needs unknown step 'a' in finally (hint: finally steps "
                     "run after all the main steps; 'needs' orders steps within finally)"]


def test_self_loop_and_three_cycle_with_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            needs: [b]
            shell: echo
          - id: b
            needs: [c]
            shell: echo
          - id: c
            needs: [a]
            shell: echo
          - id: d
            needs: [d]
            shell: echo
    """)
    hint = " (hint: each step needs the next one; a step without 'needs' needs the step before it)"
    assert lines == [
        "procedures/x.yml:4:12: steps: dependency cycle: a -> b -> c -> a" + hint,
        "procedures/x.yml:13:12: steps: dependency cycle: d -> d" + hint,
    ]


def test_cycle_through_implicit_needs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # b and c need the step before them; a needs c: a -> c -> b -> a
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            needs: [c]
            shell: echo
          - id: b
            shell: echo
          - id: c
            shell: echo
    """)
    assert [line.split(" (hint")[0] for line in lines] == [
        "procedures/x.yml:4:12: steps: dependency cycle: a -> c -> b -> a"]


def test_duplicate_step_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            shell: echo
          - id: a
            shell: echo
    """)
    assert lines == ["procedures/x.yml:5:9: steps[1]: duplicate step id 'a' (first at line 3)"]


# ---------------------------------------------------------------- expressions


def test_undeclared_param_var_step_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        params:
          version: {type: str}
        vars:
          dir: /tmp
        secrets:
          token: {env: TOKEN}
        steps:
          - id: a
            shell: echo {{ params.verison }}
          - id: b
            shell: echo {{ vars.dirr }}
          - id: c
            shell: echo {{ steps.aa.stdout }}
          - id: d
            shell: echo {{ secrets.tokn }}
          - id: e
            when: foo == 1
            shell: echo
    """)
    assert lines == [
        "procedures/x.yml:10:12: steps[0].shell: undeclared param 'verison' (did you mean 'version'?)",
        "procedures/x.yml:12:12: steps[1].shell: unknown var 'dirr' (did you mean 'dir'?)",
        "procedures/x.yml:14:12: steps[2].shell: unknown step 'aa' (did you mean 'a'?)",
        "procedures/x.yml:16:12: steps[3].shell: undeclared secret 'tokn' (did you mean 'token'?)",
        "procedures/x.yml:18:11: steps[4].when: unknown name 'foo'",
    ]


def test_reference_to_a_step_not_upstream(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            shell: echo
          - id: b
            needs: []
            when: steps.a.rc == 0
            shell: echo
          - id: c
            shell: echo {{ steps.a.stdout }}
          - id: d
            needs: [c]
            shell: echo {{ steps.b.stdout }}
    """)
    # c needs b (the step before it) which does not need a; d needs c which needs b: fine
    assert lines == [
        "procedures/x.yml:7:11: steps[1].when: uses steps.a but does not (transitively) need it; its value "
        "would depend on timing: add 'a' to 'needs'",
        "procedures/x.yml:10:12: steps[2].shell: uses steps.a but does not (transitively) need it; its value "
        "would depend on timing: add 'a' to 'needs' (c -> b: each waits only for the step above it, and 'b' "
        "has needs: [], so it starts a new branch)",
    ]


def test_own_result_only_in_verify_and_rollback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            shell: echo {{ steps.a.rc }}
            verify:
              - assert: steps.a.rc == 0
              - shell: echo {{ result.rc }}
            rollback:
              shell: echo {{ steps.a.stdout }}
    """)
    assert lines == [
        "procedures/x.yml:4:12: steps[0].shell: a step cannot use its own result here (steps.a)",
        "procedures/x.yml:7:16: steps[0].verify[1].shell: 'result' is only defined in 'expect' and 'until', "
        "where it is the result of the action checked",
    ]


def test_names_valid_where_they_stand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = write(tmp_path, """
        procedure: x
        params:
          env: {type: str, default: prod, choices: [prod, staging]}
        vars:
          base: /srv/{{ params.env }}
          logs: "{{ vars.base }}/logs"
        secrets:
          token: {env: TOKEN}
        preconditions:
          - shell: test -d {{ vars.base }}
            expect: result.rc == 0
        steps:
          - id: a
            shell: echo {{ run.id }} {{ env.HOME }} {{ now('%Y') }} {{ secrets.token }}
          - id: b
            on: web
            shell: echo {{ host.name }} {{ steps.a.stdout | trim }}
            retry: {attempts: 3, until: result.rc == 0 and host.name != ''}
            verify:
              - shell: curl -s {{ host.address }}
                expect: "'ok' in result.stdout and steps.b.hosts"
          - id: c
            assert: ["steps.b.ok", "params.env in ['prod', 'staging']"]
            when: "'{{ not a template here }}' is not none"
        finally:
          - id: d
            shell: echo {% for s in [1, 2] %}{{ loop.index }}{{ s }}{% endfor %} {{ steps.c.status }}
    """)
    done = cli(capsys, "validate", name)
    assert (done.rc, done.err) == (0, "")


def test_vars_see_only_earlier_vars(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        vars:
          a: "{{ vars.b }}"
          b: one
          c: "{{ steps.s.rc }}"
        steps:
          - id: s
            shell: echo
    """)
    assert lines == [
        "procedures/x.yml:3:6: vars.a: var 'b' is not declared before this one",
        "procedures/x.yml:5:6: vars.c: no step results exist here (it runs before any step)",
    ]


def test_host_outside_a_fanned_out_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            shell: echo {{ host.name }}
    """)
    assert lines == ["procedures/x.yml:4:12: steps[0].shell: 'host' is only defined in a step with 'on:' "
                     "(a fanned-out step)"]


def test_bad_jinja_syntax_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            shell: |
              echo one
              echo two {{ params. }}
              echo three
          - id: b
            when: "1 + "
            shell: echo
          - id: c
            shell: echo {{ 'unclosed }}
    """)
    # the line of a literal block (|) is exact: line 3 of the block is line 6 of the file
    assert lines == [
        "procedures/x.yml:6:7: steps[0].shell: syntax error: expected name or number",
        "procedures/x.yml:9:11: steps[1].when: syntax error: unexpected 'end of template'",
        "procedures/x.yml:12:12: steps[2].shell: syntax error: unexpected char \"'\" at 8",
    ]


def test_expression_must_be_one_expression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            when: params.x ) or ( true
            shell: echo
    """)
    assert lines == ["procedures/x.yml:4:11: steps[0].when: syntax error: unexpected ')'"]


def test_unknown_filter_and_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            shell: echo {{ 'a' | uper }}
          - id: b
            when: 1 is evenn
            shell: echo
    """)
    assert lines == [
        "procedures/x.yml:4:12: steps[0].shell: no filter named 'uper' (did you mean 'upper'?)",
        "procedures/x.yml:6:11: steps[1].when: no test named 'evenn' (did you mean 'even'?)",
    ]


# ---------------------------------------------------------------- all at once


def test_all_problems_at_once_sorted_by_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # schema problems in one step do not hide semantic ones elsewhere
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            shell: echo {{ params.nope }}
          - id: b
            shell: echo
            timout: 5s
          - id: c
            needs: [aa]
            shell: echo
            readonly: yes
          - id: d
            shel: ls
        window: "Funday 02:00-03:00"
    """)
    assert [line.split(": ", 1)[0] for line in lines] == [
        "procedures/x.yml:4:12", "procedures/x.yml:7:5", "procedures/x.yml:9:13", "procedures/x.yml:11:15",
        "procedures/x.yml:13:5", "procedures/x.yml:14:9"]
    assert "undeclared param 'nope'" in lines[0]
    assert "unknown key 'timout'" in lines[1]
    assert "needs unknown step 'aa' (did you mean 'a'?)" in lines[2]
    assert "readonly: expected true or false" in lines[3]
    assert "unknown key 'shel' (did you mean 'shell'?)" in lines[4]
    assert "window: unknown day 'funday'" in lines[5]


def test_no_cascade_from_an_invalid_definition(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the bad param, secret and step id are reported once; their uses are not also "unknown"
    lines = problems(capsys, tmp_path, """
        procedure: x
        params:
          n: {type: integer}
        secrets:
          s: TOKEN
        steps:
          - id: Build
            shell: echo {{ params.n }} {{ secrets.s }}
          - id: test
            needs: [Build]
            shell: echo {{ steps.Build.rc }}
    """)
    assert len(lines) == 3
    assert "params.n.type" in lines[0]
    assert "secrets.s" in lines[1]
    assert "steps[0].id" in lines[2]


def test_several_files_and_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "procedure: good\nsteps: [{id: a, shell: echo}]\n", "good.yml")
    bad = write(tmp_path, "procedure: bad\nsteps: [{id: a, shel: echo}]\n", "bad.yml")
    done = cli(capsys, "validate", good, bad)
    assert done.rc == 2
    assert done.lines == ["bad.yml:2:17: steps[0]: unknown key 'shel' (did you mean 'shell'?)"]
    assert cli(capsys, "validate", good).out == "good.yml: ok (good)\n"

    done = cli(capsys, "validate", "--output", "json", good, bad)
    assert done.rc == 2
    report = json.loads(done.out)
    assert report["ok"] is False
    assert [(f["file"], f["ok"]) for f in report["files"]] == [("good.yml", True), ("bad.yml", False)]
    assert report["files"][1]["problems"] == [{
        "file": "bad.yml", "line": 2, "col": 17, "hint": None,
        "message": "steps[0]: unknown key 'shel' (did you mean 'shell'?)"}]


def test_library_error_carries_the_problems(tmp_path: Path) -> None:
    import engine

    name = write(tmp_path, "procedure: x\nsteps: [{id: a, shell: echo, timout: 1}]\n")
    with pytest.raises(engine.ProcedureError) as info:
        engine.load(name)
    assert isinstance(info.value, ValueError)
    [problem] = info.value.problems
    assert (problem.file, problem.line, problem.col) == (name, 2, 30)
    assert str(problem) == "procedures/x.yml:2:30: steps[0]: unknown key 'timout' (did you mean 'timeout'?)"


def test_connections_named_by_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("engine.executors.sql")
    lines = problems(capsys, tmp_path, """
        procedure: x
        connections:
          primary: {postgres: "postgresql://u@db/app"}
          api: {http: "https://api.example.com"}
          broken: {sqlite: 5}
        steps:
          - id: a
            sql: SELECT 1
            connection: primry
          - id: b
            sql: {query: SELECT 1, connection: api}
          - id: c
            sql: SELECT 1
            connection: broken
          - id: d
            sql: SELECT 1
            connection: primary
    """)
    # the broken connection is reported once, not again where step c names it
    assert lines == [
        "procedures/x.yml:5:20: connections.broken.sqlite: expected a string, got the number 5",
        "procedures/x.yml:9:17: steps[0]: unknown connection 'primry' (did you mean 'primary'?)",
        "procedures/x.yml:11:40: steps[1]: connection 'api' is http; sql needs postgres or sqlite",
    ]


def test_host_in_a_fanned_out_steps_own_when_is_refused_with_why(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # when: and on: are decided once for the step, before its hosts: host there used to pass
    # validate and fail at run time with "'host' is undefined"
    lines = problems(capsys, tmp_path, """
        procedure: x
        steps:
          - id: a
            on: web
            when: host.name != "web1"
            shell: echo {{ host.name }}
            verify:
              - shell: test -n {{ host.name }}
    """)
    assert len(lines) == 1, lines
    assert lines[0].startswith("procedures/x.yml:5:11:") and "'host' is not defined in 'when:'" in lines[0]
    assert "decided once for the step" in lines[0] and "--limit" in lines[0]


def test_a_bad_window_in_a_list_of_windows_points_at_that_window(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        procedure: x
        window:
          - "Sun 02:00-04:00 UTC"
          - "fist Sun 01:00-05:00 UTC"
        steps:
          - id: a
            shell: "true"
    """)
    assert len(lines) == 1, lines
    assert lines[0].startswith("procedures/x.yml:4:5:") and "cannot read window 'fist Sun" in lines[0]


# ---------------------------------------------------------------- an inventory where the procedure goes

INVENTORY_YML = """
    # the staging hosts
    all:
      children:
        web:
          hosts:
            web1: {ansible_host: 127.0.0.2}
"""
INVENTORY_INI = """
    ; the staging hosts
    [web]
    web1 ansible_host=127.0.0.2

    [web:vars]
    ansible_user=deploy
"""


@pytest.mark.parametrize(("text", "name", "kind", "line"), [
    (INVENTORY_YML, "inventory/staging.yml", "a YAML Ansible inventory", 2),
    (INVENTORY_INI, "inventory/staging.ini", "an INI Ansible inventory", 2),
    ("web:\n  hosts:\n    web1:\ndb:\n  children: {}\n", "hosts.yml", "a YAML Ansible inventory", 1),
])
def test_an_inventory_given_as_the_procedure_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     text: str, name: str, kind: str, line: int) -> None:
    path = write(tmp_path, text, name)
    for argv in (["validate", path], [path, "--dry-run", "--offline"]):
        done = cli(capsys, *argv)
        assert done.rc == 2, done.err
        assert done.lines == [f"{path}:{line}:1: this is {kind}, not a procedure (hint: a procedure names "
                              f"its inventory with 'inventory: {Path(name).name}', or give it on the command "
                              f"line: runproc PROCEDURE -i {path})"]


def test_a_procedure_missing_its_keys_is_not_taken_for_an_inventory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = problems(capsys, tmp_path, """
        vars:
          hosts: web
        steps:
          - id: a
            shell: echo hi
    """)
    assert any("missing required key 'procedure'" in line for line in lines)
    assert not any("inventory" in line for line in lines)
    lines = problems(capsys, tmp_path, "vars:\n  web: {hosts: [a]}\n")
    assert not any("Ansible inventory" in line for line in lines)
