"""The public functions: what the CLI calls, and what any embedder calls the same way.

    import engine
    proc = engine.load("procedures/db-migration.yml")
    result = engine.plan(proc, {"migration_version": "20260101000000"}, offline=True)
    result = engine.run(proc, {"migration_version": "20260101000000"}, yes=True, on_event=print)

Every function takes the caller's choices as a ``RunOptions`` (``options=``) or as its field
names as keywords (``dry_run=True``, ``forks=5``); a bad choice is a ``ProcedureError`` before
anything runs, as the CLI's exit 2.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import Problem, ProcedureError, RefusedError

if TYPE_CHECKING:
    from .execution.events import Event
    from .execution.options import RunOptions
    from .execution.results import RunResult
    from .execution.scheduler import Run
    from .execution.store import StateStore, StoreOpener
    from .format.model import Procedure

EventSink = Callable[["Event"], None]
Asker = Callable[[str], bool]


def load(path: str | Path) -> Procedure:
    """Read and validate a procedure file; ``ProcedureError`` lists every problem, located."""
    from .format.loader import load as _load

    return _load(path)


def procedure_files(folder: str | Path) -> list[Path]:
    """The procedure files of a folder (``runproc list DIR``, ``runproc serve --procedures DIR``): its
    ``*.yml`` and ``*.yaml``, then its subfolders' one level down (examples/local/*.yml); hidden
    folders (.git, .state) are not looked into. A YAML file with neither a top-level ``procedure:``
    nor ``steps:`` key (an inventory, Alertmanager's config beside the procedures it starts) is not
    a procedure and is left out; one with either is listed, broken or not."""
    import re

    folder = Path(folder)

    def yaml_in(d: Path) -> list[Path]:
        return sorted([*d.glob("*.yml"), *d.glob("*.yaml")])

    files = yaml_in(folder)
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files += yaml_in(sub)
    keys = re.compile(r"^(procedure|steps)\s*:", re.MULTILINE)
    out = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            out.append(file)  # unreadable: listed, and its problem said where it is read
            continue
        if keys.search(text):
            out.append(file)
    return out


def validate(*paths: str | Path) -> dict[str, list[Problem]]:
    """Each file's problems (an empty list: the file is valid). Never raises for a bad file."""
    out: dict[str, list[Problem]] = {}
    for path in paths:
        try:
            load(path)
            out[str(path)] = []
        except ProcedureError as exc:
            out[str(path)] = list(exc.problems)
    return out


def prepare(procedure: Procedure | str | Path, params: dict[str, Any] | None = None, *,
            options: RunOptions | None = None, cli_params: dict[str, str] | None = None,
            on_event: EventSink | None = None, ask: Asker | None = None,
            store: StateStore | StoreOpener | None = None, cwd: str | None = None, **keywords: Any) -> Run:
    """A run ready to ``execute()``: params resolved, secrets read, the state store checked.

    ``params`` are typed values (a params file), ``cli_params`` text as from ``-p``. ``store``:
    by default the store at ``options.state`` (``$RUNPROC_STATE``, the XDG state dir), opened
    when first needed. A real run records what ``resume``/``rollback_run`` will need.
    """
    from .execution.options import RunOptions
    from .execution.scheduler import Run
    from .state.opening import store_opener

    chosen = RunOptions.from_keywords(options, **keywords)
    proc = procedure if not isinstance(procedure, str | Path) else load(procedure)
    run = Run(proc, params=params, cli_params=cli_params, options=chosen, on_event=on_event, ask=ask,
              store=store if store is not None else store_opener(chosen.state))
    if not run.dry_run and chosen.journal:
        _record_inputs(run, chosen.inventory, cwd)
    return run


def _record_inputs(run: Run, inventory: str | None, cwd: str | None) -> None:
    """What `runproc resume/rollback RUN` will need, taken before the run starts."""
    from .execution.events import Note
    from .state import replay

    inventory = str(Path(inventory).resolve()) if inventory else None
    try:
        run.journal_inputs = replay.capture(run, inventory, cwd or os.getcwd())
    except Exception as exc:  # noqa: BLE001 - the run itself must not fail for its history
        run.emit(Note("warning", f"run inputs not recorded (resume/rollback will refuse it): {exc}"))


@contextmanager
def signals_to(run: Run) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP interrupt ``run`` (first: roll back, second: abandon undos,
    third: abandon cleanup) while the block runs; the previous handlers come back after."""
    def on_signal(signum: int, frame: Any) -> None:
        run.interrupt()  # sets events and emits; the main thread only waits (Run.execute)

    # SIGHUP too: a closed terminal or ssh session must not leave a change half done
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def execute(run: Run, *, handle_signals: bool = False) -> RunResult:
    """Execute a prepared run; with ``handle_signals`` (the main thread only) signals interrupt it."""
    if not handle_signals:
        return run.execute()
    with signals_to(run):
        return run.execute()


def run(procedure: Procedure | str | Path, params: dict[str, Any] | None = None, *,
        handle_signals: bool = False, **kwargs: Any) -> RunResult:
    """Run a procedure (``dry_run=True``: plan it); the keywords are ``prepare``'s."""
    return execute(prepare(procedure, params, **kwargs), handle_signals=handle_signals)


def plan(procedure: Procedure | str | Path, params: dict[str, Any] | None = None, **kwargs: Any) -> RunResult:
    """A dry run: checks and readonly steps run, writes are shown (``offline=True``: nothing runs)."""
    kwargs.setdefault("dry_run", True)
    if not kwargs["dry_run"]:
        raise ProcedureError(Problem("plan", 0, 0, "a plan is a dry run: dry_run=False is run()'s"))
    return run(procedure, params, **kwargs)


# ---------------------------------------------------------------- a recorded run, again


def _recorded(run_id: str, verb: str, params: dict[str, Any] | None, cli_params: dict[str, str] | None,
              state: str | None) -> Any:
    """The recorded run, checked replayable (InvalidInputError or RefusedError when not)."""
    from .state import replay
    from .state.opening import open_store

    store = open_store(state)
    try:
        given = dict(cli_params or {})
        return replay.load(store, run_id, verb, given, {**(params or {}), **given})
    finally:
        store.close()


@contextmanager
def _in_run_folder(rec: Any) -> Iterator[None]:
    """In the folder the run started in (a relative child path renders as it did), then back."""
    from .state import replay

    here = replay.chdir_to(rec)
    try:
        yield
    finally:
        if here is not None:
            os.chdir(here)


def _decide_in_flight(items: list[Any], inflight: str, confirm: Asker | None, run_id: str, verb: str,
                      say: Callable[[str], None] | None) -> list[tuple[Any, bool]]:
    """Each step (or host) that was in flight when the run stopped, and whether to act on it
    again: re-run it (resume) or undo it (rollback). ``inflight``: ``ask`` (``confirm`` asks;
    without it, RefusedError), ``again`` (``--yes``) or ``skip`` (``--skip-inflight``)."""
    if inflight not in ("ask", "again", "skip"):
        raise ProcedureError(Problem("inflight", 0, 0, f"expected ask, again or skip, got {inflight!r}"))
    out: list[tuple[Any, bool]] = []
    act = "run it again" if verb == "resume" else "undo it too"
    for item in items:
        if item.automatic:
            if say is not None:
                say(f"{item} was in flight when run {run_id} stopped; it is readonly or idempotent: run again")
            out.append((item, True))
            continue
        if inflight != "ask":
            out.append((item, inflight == "again"))
            continue
        if confirm is None:
            raise RefusedError(f"{item} was in flight when run {run_id} stopped: its action may or may not have "
                               f"happened. Give --yes to {act}, or --skip-inflight to "
                               + ("treat it as done" if verb == "resume" else "leave it as it is"))
        if not confirm(f"{item} was in flight when run {run_id} stopped: its action may or may not have "
                       f"happened. {act[0].upper()}{act[1:]}?"):
            raise RefusedError(f"{item}: not confirmed; nothing was {'run' if verb == 'resume' else 'undone'} "
                               "(--skip-inflight " + ("treats it as done" if verb == "resume" else "leaves it")
                               + ")")
        out.append((item, True))
    return out


def resume(run_id: str, params: dict[str, Any] | None = None, *, cli_params: dict[str, str] | None = None,
           on_event: EventSink | None = None, ask: Asker | None = None, say: Callable[[str], None] | None = None,
           watch: list[Any] | None = None, handle_signals: bool = False, inflight: str = "ask",
           confirm: Asker | None = None, from_step: str | None = None, **keywords: Any) -> RunResult:
    """Continue a recorded run that did not end ok, or whose runner was killed: steps recorded
    ok are not run again (their results are ``steps.<id>``; a fanned-out step's finished hosts
    likewise); the recorded params and options, plus ``keywords`` (the present choices:
    ``state``, ``yes``, ``ignore_window``...). ``params``: secret params, given again.

    A step that was in flight when the runner stopped is run again when it is readonly or
    ``idempotent: true``; otherwise ``inflight`` says: ``ask`` (``confirm`` asks a person;
    without one, RefusedError), ``again`` (run it again) or ``skip`` (treat it as done).
    ``say`` hears what will happen before it does; ``watch`` receives the run's stop event (an
    asker waiting at a confirm gives up when it is set). RefusedError when it cannot be resumed.
    ``from_step``: retry from that step: it and every step that needs it run again, even
    recorded ok (then a run that ended ok may be resumed too)."""
    from .state import replay

    rec = _recorded(run_id, "resume", params, cli_params, keywords.get("state"))
    plan_ = replay.resume_plan(rec, from_step)
    for item, again in _decide_in_flight(plan_.in_flight, inflight, confirm, rec.run_id, "resume", say):
        if not again:
            replay.treat_as_done(plan_, item, rec.run_id)
    if say is not None:
        done = ", ".join(plan_.done) if plan_.done else "no step"
        hosts = "".join(f"; {sid} on {', '.join(sorted(h))}" for sid, h in plan_.hosts_done.items())
        say(f"run {rec.run_id} ({rec.proc.procedure}): {done}{hosts} done before, not run again")
    with _in_run_folder(rec):
        run = replay.build_run(rec, on_event=on_event, ask=ask, completed=plan_.done,
                               completed_hosts=plan_.hosts_done, **keywords)
        if watch is not None:
            watch.append(run.stop)
        run.journal_inputs = replay.inputs_of_replay(rec, "resume")
        return execute(run, handle_signals=handle_signals)


def rollback_run(run_id: str, params: dict[str, Any] | None = None, *, cli_params: dict[str, str] | None = None,
                 state: str | None = None, confirm: Asker | None = None, say: Callable[[str], None] | None = None,
                 handle_signals: bool = False, inflight: str = "ask",
                 on_event: EventSink | None = None) -> tuple[dict[str, Any], int]:
    """Undo what a recorded run completed and did not undo yet, most recent first; (the
    rollback's report, its exit code: 0 all undone, 4 an undo failed). ``on_event`` hears the
    undos (RollbackStarted, RollbackFinished) and the end (RunFinished). ``confirm`` is asked
    before anything is undone (None: go ahead); a no is RefusedError. A step (or host, or
    undo) that was in flight when the runner stopped may have changed things: ``inflight``
    ``again`` undoes it too, ``skip`` leaves it, ``ask`` asks ``confirm`` (RefusedError
    without one). A signal, with ``handle_signals``, stops the undo running and lists the
    rest as not undone."""
    from .state import replay

    rec = _recorded(run_id, "rollback", params, cli_params, state)
    plan_ = replay.undo_plan(rec)
    for item, again in _decide_in_flight(plan_.in_flight, inflight, confirm, rec.run_id, "rollback", say):
        if again:
            replay.include_in_flight(plan_, item)
        elif say is not None:
            say(f"{item} was in flight when run {rec.run_id} stopped: left as it is (--skip-inflight)")
    kept = f"; kept (no rollback defined): {', '.join(plan_.kept)}" if plan_.kept else ""
    if not plan_.undo:
        if say is not None:
            say(f"run {rec.run_id}: nothing to undo{kept}")
        return {"run_id": None, "of_run": rec.run_id, "kind": "rollback", "status": "ok", "exit_code": 0,
                "steps": [], "rolled_back": [], "not_undone": [], "kept": plan_.kept}, 0
    if say is not None:
        say(f"run {rec.run_id} ({rec.proc.procedure}): will undo {', '.join(plan_.undo)} in this order{kept}")
    if confirm is not None and not confirm("Roll back?"):
        raise RefusedError("not confirmed: nothing was undone")
    with _in_run_folder(rec):
        run_ = replay.build_run(rec, state=state, yes=True, on_event=on_event)

        def on_signal(signum: int, frame: Any) -> None:
            run_.rollback_cancel.set()  # the undo running is stopped; the others are listed not undone

        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) if handle_signals else ()
        previous = {s: signal.signal(s, on_signal) for s in handled}
        try:
            report, code = replay.roll_back(rec, plan_, run_)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    return {**report, "undo": plan_.undo}, code  # the order the undos were to run in


# ---------------------------------------------------------------- on Temporal


def run_on_engine(procedure: Procedure | str | Path, params: dict[str, Any] | None = None, *, engine: str,
                  cli_params: dict[str, str] | None = None, dry_run: bool = False, yes: bool = False,
                  no_rollback: bool = False, queue: str | None = None, schedule_to_start: float = 60.0,
                  detach: bool = False, on_event: EventSink | None = None, stop: Any = None,
                  leave: Any = None, signals: Callable[[], Any] | None = None, ignore_window: bool = False,
                  inventory: str | None = None, limit: str | None = None, forks: int | None = None,
                  accept_new_hosts: bool = False, known_hosts: str | None = None) -> dict[str, Any]:
    """Run a procedure on Temporal (``engine``: ``temporal://HOST:PORT[/NAMESPACE]``): validated
    here, its steps executed by ``runproc worker`` processes on their task queues. Returns the
    run's report (the JSON shape of a local run's), or ``{run_id}`` with ``detach``. ``stop``:
    an event that, once set, interrupts the run (its running steps are stopped, it rolls back);
    ``leave``: an event that, once set, stops following (the run goes on). docs/distributed.md."""
    from .distributed import require_temporalio
    from .distributed.client import parse_engine, submit_and_follow
    from .distributed.plan import DEFAULT_QUEUE, build
    from .execution.journal import now_iso
    from .format.params import resolve_params

    target = parse_engine(engine)
    require_temporalio()
    proc = procedure if not isinstance(procedure, str | Path) else load(procedure)
    values = resolve_params(proc, cli_params, params)
    plan_ = build(proc, values, run_id=os.urandom(6).hex(), started_at=now_iso(), dry_run=dry_run, yes=yes,
                  no_rollback=no_rollback, default_queue=queue or DEFAULT_QUEUE,
                  schedule_to_start=schedule_to_start, inventory=inventory, limit=limit, forks=forks,
                  accept_new_hosts=accept_new_hosts, known_hosts=known_hosts)
    if proc.window_times:
        plan_["window_spec"] = {"times": proc.window_times, "wait": proc.window_waits}
        _engine_window(plan_, ignore_window=ignore_window)
    if signals is not None:
        signals()
    return submit_and_follow(plan_, target, on_event=on_event, detach=detach, stop=[stop] if stop else [],
                             leave=leave)


def _engine_window(plan_: dict[str, Any], *, ignore_window: bool) -> None:
    """Outside its window: refused as a local run is (after the input was found valid); with
    ``window.wait`` the workflow waits for it (a durable timer); a dry run says which."""
    from datetime import UTC

    from .format.window import clock_now, parse_window

    plan_.pop("window", None)
    spec = plan_.get("window_spec")
    if not spec or ignore_window:
        return
    now = clock_now()
    opens = parse_window(spec["times"]).next_opening(now)
    if opens <= now:
        return
    shown = opens.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if not spec["wait"] and not plan_.get("dry_run"):
        raise RefusedError(f"outside the maintenance window {spec['times']!r}, next open {shown} (use "
                           "--ignore-window to override, or window: {times: ..., wait: true} to wait for it)")
    plan_["window"] = {"times": spec["times"], "opens_at": shown, "wait_seconds": round((opens - now).total_seconds(), 3)}


def resume_on_engine(run_id: str, *, engine: str, yes: bool = False, ignore_window: bool = False,
                     on_event: EventSink | None = None, stop: Any = None, leave: Any = None,
                     signals: Callable[[], Any] | None = None, say: Callable[[str], None] | None = None,
                     inflight: str = "ask", confirm: Asker | None = None) -> dict[str, Any]:
    """Continue an ended run of a Temporal engine in a new run: steps that ended ok are not run
    again (their results are ``steps.<id>``). The procedure is the one the run was submitted
    with. RefusedError when it cannot be resumed (docs/distributed.md)."""
    from .distributed import require_temporalio
    from .distributed.client import parse_engine, recorded_run, submit_and_follow
    from .distributed.replay import check_resumable, in_doubt, resume_input
    from .execution.journal import now_iso
    from .state.replay import InFlight

    target = parse_engine(engine)
    require_temporalio()
    rec = recorded_run(target, run_id)
    plan_, run_id = rec.plan, rec.run_id
    for other in rec.replays:
        what = "resumed" if other.endswith(".resume") else "rolled back"
        then = "resume that one instead" if other.endswith(".resume") else "run it again instead"
        raise RefusedError(f"run {run_id} was {what} by run {other}: {then}")
    check_resumable(plan_, rec.report)  # refused before anyone is asked about a step in doubt
    skip = {(item.step, item.host) for item, again in _decide_in_flight(
        [InFlight(sid, host, False) for sid, host in in_doubt(rec.report)], inflight, confirm, run_id, "resume", say)
        if not again}
    new = resume_input(plan_, rec.report, run_id=f"{run_id}.resume", started_at=now_iso(), yes=yes,
                       treat_as_done=skip)
    _engine_window(new, ignore_window=ignore_window)  # the window as it is now
    if say is not None:
        done = ", ".join(new["resume"]["done"]) or "no step"
        hosts = "".join(f"; {sid} on {', '.join(sorted(h))}" for sid, h in new["resume"]["hosts_done"].items())
        say(f"run {run_id} ({plan_['procedure']}): {done}{hosts} done before, not run again")
    if signals is not None:
        signals()
    return submit_and_follow(new, target, on_event=on_event, detach=False, stop=[stop] if stop else [], leave=leave)


def rollback_on_engine(run_id: str, *, engine: str, confirm: Asker | None = None,
                       say: Callable[[str], None] | None = None, inflight: str = "ask") -> tuple[dict[str, Any], int]:
    """Undo what an ended run of a Temporal engine completed and did not undo, most recent
    first, as a new run on the engine; (its report, exit code: 0 all undone, 4 an undo failed)."""
    from .distributed import require_temporalio
    from .distributed.client import parse_engine, recorded_run, submit_and_follow
    from .distributed.replay import in_doubt, rollback_input
    from .execution.journal import now_iso
    from .state.replay import InFlight

    target = parse_engine(engine)
    require_temporalio()
    rec = recorded_run(target, run_id)
    plan_, report, run_id = rec.plan, dict(rec.report), rec.run_id
    entries = {str(e["id"]): e for e in report.get("steps") or []}
    n = 1
    for other, replayed in rec.replays.items():
        if other.endswith(".resume"):
            raise RefusedError(f"run {run_id} was resumed by run {other}: roll back that one (it holds every step "
                               "the two runs did)")
        if replayed is None:
            raise RefusedError(f"run {other} is rolling run {run_id} back now: runproc show {other} --engine {engine}")
        # what an earlier rollback did (or failed to do) is the latest word on its steps
        entries.update({str(e["id"]): e for e in replayed.get("steps") or []})
        n += 1
    report["steps"] = list(entries.values())
    new_id = f"{run_id}.rollback" + (f"-{n}" if n > 1 else "")
    doubtful = [InFlight(sid, host, False) for sid, host in in_doubt(report)]
    chosen = {(item.step, item.host) for item, again in
              _decide_in_flight(doubtful, inflight, confirm, run_id, "rollback", say) if again}
    for item in doubtful:
        if (item.step, item.host) not in chosen and say is not None:
            say(f"{item} was in doubt when run {run_id} ended: left as it is (--skip-inflight)")
    new, undo, kept = rollback_input(plan_, report, run_id=new_id, started_at=now_iso(), undo_in_doubt=chosen)
    shown_kept = f"; kept (no rollback defined): {', '.join(kept)}" if kept else ""
    if new is None:
        if say is not None:
            say(f"run {run_id}: nothing to undo{shown_kept}")
        return {"run_id": None, "of_run": run_id, "kind": "rollback", "status": "ok", "exit_code": 0,
                "steps": [], "rolled_back": [], "not_undone": [], "kept": kept}, 0
    if say is not None:
        say(f"run {run_id} ({plan_['procedure']}): will undo {', '.join(undo)} in this order{shown_kept}")
    if confirm is not None and not confirm("Roll back?"):
        raise RefusedError("not confirmed: nothing was undone")
    out = submit_and_follow(new, target, on_event=None, detach=False, stop=[])
    out["kept"] = kept
    return out, int(out.get("exit_code") or 0)


# ---------------------------------------------------------------- a saved plan


class PlanChanged(RefusedError):
    """The world is not what a saved plan was made against: nothing was run (exit 3)."""

    def __init__(self, plan: dict[str, Any], changes: list[Any]) -> None:
        self.plan = plan
        self.changes = changes
        super().__init__(f"the plan no longer matches: {len(changes)} difference(s) since it was saved")


def apply(plan_path: str | Path, params: dict[str, Any] | None = None, *, cli_params: dict[str, str] | None = None,
          on_event: EventSink | None = None, ask: Asker | None = None, say: Callable[[str], None] | None = None,
          watch: list[Any] | None = None, handle_signals: bool = False, **keywords: Any) -> RunResult:
    """Run exactly what a saved plan showed (``runproc FILE --dry-run --save-plan PLAN``).

    Refused (``PlanChanged``, exit 3) before anything runs when a file the plan fingerprinted
    changed, a secret param differs, or the procedure would now read other files; a step
    whose action renders otherwise than planned fails before acting. ``params``: the secret
    params, given again (the plan keeps only their hashes); ``keywords``: the present choices
    (``state``, ``yes``, ``ignore_window``, ``report_dir``...); the plan's own (``only``,
    ``limit``, ``forks``...) are the plan's.
    """
    from .execution.options import RunOptions
    from .state import fingerprints, plans

    plan = plans.read(str(plan_path))
    changes = fingerprints.changed_files(plan)  # from their bytes alone: an edited procedure may not load
    if changes:
        raise PlanChanged(plan, changes)
    saved = plan["options"]
    proc = load(plan["procedure"]["path"])
    given = dict(cli_params or {})
    problem = plans.params_problem(plan, proc, {*given, *(params or {})})
    if problem:
        raise ProcedureError(Problem(str(plan_path), 0, 0, problem))
    # the plan's values as it resolved them (typed: JSON keeps them), then the secret ones again
    values = {k: v for k, v in plan["params"].items() if v is not None}
    values.update(params or {})
    report_dir = keywords.pop("report_dir", None)
    chosen = RunOptions(no_rollback=bool(saved.get("no_rollback")), only=tuple(saved.get("only") or ()),
                        limit=saved.get("limit"), inventory=saved.get("inventory"), forks=saved.get("forks"),
                        report_dir=str(Path(report_dir).resolve()) if report_dir else None,
                        expected_actions=plans.expected_actions(plan), **keywords)
    run_ = prepare(proc, values, cli_params=given, options=chosen, on_event=on_event, ask=ask, cwd=plan["cwd"])
    if watch is not None:
        watch.append(run_.stop)
    for name, stored in plan["secret_params"].items():
        value = run_.params.get(name)
        same = value is None if stored is None else (value is not None and plans.secret_matches(stored, value))
        if not same:
            changes.append(fingerprints.Change("param", name, None, None, "secret: not the value the plan was saved with"))
    # then what the procedure reads now: a templated inventory may point elsewhere, a new
    # host_vars file may have appeared
    now, _ = fingerprints.fingerprint(proc, saved.get("inventory"), run_.namespace())
    changes += fingerprints.diff_files(plan["files"], now)
    if changes:
        raise PlanChanged(plan, changes)
    if say is not None:
        say(f"{plan['procedure']['name']}, planned {plan.get('created_at', '?')} by {plan.get('created_by', '?')}: "
            f"{len(plan['files'])} files unchanged, {len(plans.expected_actions(plan))} actions held to the plan")
    # the plan's actions were rendered in its folder (a child procedure's path is shown relative
    # to it): run from there, so that the same procedure renders the same actions
    here, there = os.getcwd(), plan["cwd"]
    moved = there != here and Path(there).is_dir()
    if moved:
        os.chdir(there)
    try:
        return execute(run_, handle_signals=handle_signals)
    finally:
        if moved:
            os.chdir(here)
