"""What the command modules and the run path share: exit codes, the argument parser, problem
printing, and running a built Run at the terminal (console sink, confirm asker, signals, report).

Kept to the standard library at import time: engine.cli imports it on every start, ``--version``
included, so anything heavier is imported inside the function that needs it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

EXIT_INVALID = 2
# EX_SOFTWARE (sysexits.h): runproc itself went wrong; the traceback is in a crash file
EXIT_INTERNAL = 70
# 128 + SIGPIPE: what a shell reports for `git log | head` (git dies of the signal), so a
# pipeline under `set -o pipefail` behaves the same with runproc in it
EXIT_BROKEN_PIPE = 141
# the --state help of the commands that read the journal
STATE_HELP = ("state URL: sqlite:///path or postgresql://user@host:port/db; default $RUNPROC_STATE or "
              "the XDG state dir")
# the --otel help of the commands that run something (docs/traces.md)
OTEL_HELP = ("export the run's trace over OTLP/HTTP (to $OTEL_EXPORTER_OTLP_ENDPOINT, default "
             "http://localhost:4318; needs runproc[otel]); on by itself when that variable is set (docs/traces.md)")


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main() maps a usage error to exit 2 itself."""

    def error(self, message: str) -> None:  # usage errors are exit 2, as for invalid input
        from ..errors import UsageError

        self.print_usage(sys.stderr)
        raise UsageError(f"{self.prog}: error: {message}")


def print_problems(exc: Any) -> None:
    """Each located problem of a ProcedureError on its own stderr line (file:line:col: message)."""
    for problem in exc.problems:
        print(str(problem), file=sys.stderr)


def console_sink(ns: argparse.Namespace) -> tuple[Any, Any, list[Any]]:
    """(event consumer, confirm asker or None, the list the asker watches for a stop event)."""
    sink: Any
    if ns.output == "text":
        from ..ui.console import ConsoleView

        sink = ConsoleView(verbose=ns.verbose)
    else:
        from ..ui.console import NoticeSink

        sink = NoticeSink()  # stdout carries the JSON document alone
    stop: list[Any] = []
    ask = asker(sink, stop) if is_tty(sys.stdin) else None
    return trace_sink(ns, sink), ask, stop


def trace_sink(ns: argparse.Namespace, sink: Any) -> Any:
    """``sink`` wrapped in the run's trace when tracing is on (``--otel``, or the standard
    OTEL_EXPORTER_OTLP_ENDPOINT: docs/traces.md); else ``sink`` itself."""
    from ..observe import tracing_wanted  # the standard library only: the SDK is imported when tracing

    flag = bool(getattr(ns, "otel", False))
    if not tracing_wanted(flag):
        return sink
    from ..observe.tracing import TraceSink

    return TraceSink(sink, explicit=flag)


def drive(run: Any, ns: argparse.Namespace) -> Any:
    """Execute a prepared run with the signals routed to it; write the report and the JSON."""
    from .. import api
    from ..ui.logs import route_library_logs

    route_library_logs(verbose=bool(getattr(ns, "verbose", False)))  # no library noise on the terminal
    result = api.execute(run, handle_signals=True)
    deliver(result, ns)
    return result


def deliver(result: Any, ns: argparse.Namespace) -> None:
    """What the command line asked for once a run is over: the report folder, the JSON."""
    from ..ui.logs import write_library_log

    if ns.report_dir:
        from ..ui.report import write_bundle

        try:
            write_bundle(result, ns.report_dir)
            write_library_log(Path(ns.report_dir) / "logs")  # what paramiko & co. said, in full
        except OSError as exc:  # the run is over: its outcome, not the report's, is the exit code
            print(f"runproc: could not write the report to {ns.report_dir}: {exc}", file=sys.stderr)
    if ns.output == "json":
        from ..ui.report import to_json_text

        try:
            sys.stdout.write(to_json_text(result) + "\n")
            sys.stdout.flush()
        except OSError:
            silence_stdout()


def absolute_state(url: str | None) -> str:
    """The state URL with an absolute path: apply may change directory before it is opened."""
    from ..errors import ProcedureError
    from ..state.opening import default_state_url, is_postgres, state_path

    url = url or default_state_url()
    if is_postgres(url):
        return url
    try:
        return f"sqlite:///{state_path(url).expanduser().resolve()}"
    except ProcedureError:
        return url  # malformed: the run reports it as invalid input, in its own words


def is_tty(stream: Any) -> bool:
    """Whether a person is there; a closed or replaced stream counts as no."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def silence_stdout() -> None:
    """The reader of stdout went away (``| head``): exit quietly, as cat does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def asker(view: Any, stop_run: list[Any]) -> Any:
    """Ask on the terminal; the prompt goes to stderr (as ``read -p``), stdout may be a report.

    It polls stdin so that an interrupt while a question waits ends the wait (the answer is
    then no): a thread blocked in ``input()`` could never be stopped.
    """
    import select

    def ask(message: str, stop: Any = None) -> bool:
        # the table so far stays on the screen above the question (the operator approves
        # having seen the checks), and a fresh live table follows the answer. ``stop``: an
        # event set when the answer came from elsewhere (runproc approve, the web page)
        pause, resume = getattr(view, "pause", None), getattr(view, "resume", None)
        if pause is not None:
            pause()
        try:
            sys.stderr.write(f"{message} [y/N] ")
            sys.stderr.flush()
            while True:
                if (stop_run and stop_run[0].is_set()) or (stop is not None and stop.is_set()):
                    sys.stderr.write("\n")
                    return False
                readable, _, _ = select.select([sys.stdin], [], [], 0.2)
                if readable:
                    answer = sys.stdin.readline().strip().lower()
                    return answer in ("y", "yes")
        finally:
            if resume is not None:
                resume()
    ask.stoppable = True  # type: ignore[attr-defined]  # the approvals gate may stop the question
    return ask


def crashed(exc: BaseException) -> int:
    """The last resort: one line and a crash file with the traceback, never a raw traceback.

    Secrets the run knew are masked in the file too (every live Redactor of this process).
    """
    import tempfile
    import time
    import traceback

    text = "".join(traceback.format_exception(exc))
    redaction = sys.modules.get("engine.format.redaction")
    if redaction is not None:
        text = redaction.redact_everywhere(text)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    from ..execution.store import state_home

    base = state_home() / "crashes"
    where = "no crash file could be written"
    for folder in (base, Path(tempfile.gettempdir())):
        path = folder / f"runproc-crash-{stamp}-{os.getpid()}.txt"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(f"runproc {sys.argv[1:]!r}\n{text}")
        except OSError:
            continue
        where = f"details: {path}"
        break
    summary = str(exc).splitlines()[0] if str(exc) else ""
    if redaction is not None:
        summary = redaction.redact_everywhere(summary)
    print(f"runproc: internal error: {type(exc).__name__}{': ' + summary[:200] if summary else ''} ({where}); "
          "please report it", file=sys.stderr)
    return EXIT_INTERNAL


def engine_interrupt(stop: Any, leave: Any) -> Any:
    """The SIGINT handler of a controller following a run on the Temporal engine: the first
    Ctrl-C interrupts the run (its running steps are stopped on their workers, then it rolls
    back, and this keeps following); the second stops following: the run goes on there."""

    def handler(*_: Any) -> None:
        if not stop.is_set():
            stop.set()
            print("interrupted: stopping the running steps on their workers, then rolling back "
                  "(Ctrl-C again to stop following; the run goes on)", file=sys.stderr, flush=True)
        else:
            leave.set()

    return handler


def left_running(report: dict[str, Any], engine: str) -> int:
    """Said when a controller stopped following (a second Ctrl-C); exit 130."""
    run_id = report.get("run_id")
    print(f"runproc: stopped following run {run_id}; it goes on there: runproc show {run_id} --engine {engine}",
          file=sys.stderr)
    return 130


def no_empty_engine(value: str | None) -> None:
    """``--engine ''`` (a script's unset variable) must not quietly run here instead."""
    if value is not None and not value.strip():
        from ..errors import UsageError

        raise UsageError("runproc: --engine '': expected temporal://HOST:PORT[/NAMESPACE]; leave --engine out to "
                         "run here")
