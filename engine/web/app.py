"""The Starlette application of ``runproc serve``: pages rendered on the server, the same data
as JSON under ``/api/v1``, an OpenAPI document, tokens and roles (docs/web.md).

Endpoints are plain functions (Starlette runs them in its thread pool): each one reads the state
store, which serialises its own statements, and returns HTML or JSON. Every error is answered
in the form asked for (JSON under ``/api/``, a page elsewhere) with a clear message and the
right 4xx; a bug is a 500 saying so, with its traceback in a crash file named in the server's
log, never in the response.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import anyio.to_thread
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import InvalidInputError, ProcedureError
from ..execution.approvals import NotAllowed, NotWaiting, give, refusal
from ..execution.store import RunFilter, user_name
from ..schedule.scheduler import Scheduler
from ..schedule.slots import slot_name
from ..state.opening import default_state_url, open_store, shown_url
from ..version import __version__
from . import actions, dag, live, openapi, starts
from .alerts import BadPayload, Unprocessable, load_rules, receive
from .catalogue import Catalogue
from .data import (
    DEFAULT_LIMIT,
    STATUSES,
    BadQuery,
    NotFound,
    list_runs,
    parse_run_query,
    resolve_run,
    run_detail,
    step_logs,
)
from .render import STATIC, render
from .schedules import Running, launcher
from .tokens import Token, TokenBook, load_tokens

TOKEN_COOKIE = "runproc_token"
CSRF_COOKIE = "runproc_csrf"
# no request of this server needs more: the sign-in form is a few hundred bytes
MAX_BODY = 16 * 1024
ALERTS_MAX_BODY = 1024 * 1024  # but Alertmanager sends a whole alert group at once (max_alerts caps it)
SESSION_SECONDS = 12 * 3600
_CSRF_VALUE = re.compile(r"[A-Za-z0-9_-]{32,128}")
# a page's resources come from this server only: its own script file (no inline script), its
# own event streams, no inline style, no frame
_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    # same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" with this
    # server's own forms, which the Origin check below must refuse; other sites still see nothing
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


@dataclass(frozen=True)
class Settings:
    """What ``runproc serve`` was started with."""

    state: str | None = None  # the state URL (None: $RUNPROC_STATE or the XDG default)
    procedures: Path | None = None  # the catalogue's folder
    tokens: str | None = None  # the tokens file
    loopback: bool = True  # bound to a loopback address only
    triggers: str | None = None  # the Alertmanager rules file (engine/web/alerts.py)
    scheduler: bool = False  # run the scheduler beside the server (runproc serve does, unless --no-scheduler)


@dataclass(frozen=True)
class Who:
    """Who is asking: a token's name and role, or the local user of an open loopback server."""

    name: str | None = None
    role: str | None = None
    open: bool = False
    by_cookie: bool = False

    def can(self, action: str) -> bool:
        if self.open:
            return action == "read"  # with no tokens, nothing but reading: writes always need a token
        return Token(self.name or "", self.role or "", "").can(action)


class WebError(InvalidInputError):
    """An answer other than 200, with the message the client is shown: the request cannot be
    served as it is (no token, a bad one, a forged form, a body too large)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class Access:
    """The tokens file, read again when it changes (a token added or removed takes effect at
    once). A file that cannot be read any more closes the server rather than opening it."""

    def __init__(self, path: str | None, loopback: bool) -> None:
        self.path = path
        self.loopback = loopback
        self._book = load_tokens(path)  # at start, a bad file is invalid input (exit 2)
        self._key = self._stat()
        self._lock = threading.Lock()

    def _stat(self) -> tuple[int, int, int] | None:
        if self.path is None:
            return None
        try:
            st = Path(self.path).stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def book(self) -> TokenBook:
        if self.path is None:
            return self._book
        key = self._stat()
        with self._lock:
            if key != self._key:
                try:
                    self._book = load_tokens(self.path)
                except InvalidInputError as exc:
                    raise WebError(503, f"the tokens file cannot be used, so nobody is let in: {exc}") from None
                self._key = key
            return self._book

    def identify(self, request: Request) -> Who:
        book = self.book()
        if not book.configured:
            if not self.loopback:  # the file was emptied under a server bound beyond loopback
                raise WebError(503, "no tokens are configured and this server is not on loopback: nobody is let in")
            _check_loopback_host(request)
            return Who(open=True)
        presented, by_cookie = _presented_token(request)
        if presented is None:
            raise WebError(401, "this server needs a token: send Authorization: Bearer TOKEN, or sign in at /login",
                           {"www-authenticate": 'Bearer realm="runproc"'})
        token = book.match(presented)
        if token is None:
            raise WebError(401, "that token is not valid here (runproc serve token list shows the configured names)",
                           {"www-authenticate": 'Bearer realm="runproc", error="invalid_token"'})
        return Who(token.name, token.role, by_cookie=by_cookie)


def _presented_token(request: Request) -> tuple[str | None, bool]:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise WebError(401, "expected Authorization: Bearer TOKEN", {"www-authenticate": 'Bearer realm="runproc"'})
        return value.strip(), False
    cookie = request.cookies.get(TOKEN_COOKIE)
    return (cookie, True) if cookie else (None, False)


def _check_loopback_host(request: Request) -> None:
    """An open server answers only requests addressed to a loopback name: a web page elsewhere
    that points its own host name at 127.0.0.1 (DNS rebinding) would otherwise read every run."""
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name.startswith("[") and "]" in name:
        name = name[: name.index("]") + 1]
    if name.lower() not in LOOPBACK_NAMES and not name.startswith("127."):
        raise WebError(421, f"this server is open to its own machine only; Host {host!r} is not a loopback name "
                            "(use http://127.0.0.1:PORT or http://localhost:PORT)")


# ---------------------------------------------------------------- responses


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=str, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of this server only (never //elsewhere)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or len(value) > 2000:
        return "/runs"
    return value


def _error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"status": status, "message": message}}


# ---------------------------------------------------------------- the app


def create_app(settings: Settings, *, store: Any = None) -> Starlette:
    """The application; it opens the state now (a bad URL is invalid input before anything
    listens) and closes it when the server stops. ``store``: one already open (not closed here)."""
    access = Access(settings.tokens, settings.loopback)
    own_store = store is None
    if store is None:
        # a reader only: journals spooled during an outage are the next run's (or state sync's) to upload
        store = open_store(settings.state, upload_spool=False)
    catalogue = Catalogue(settings.procedures)
    state_shown = shown_url(getattr(store, "url", None) or settings.state or default_state_url())
    css = (STATIC / "runproc.css").read_bytes()
    script = (STATIC / "live.js").read_bytes()
    hub = live.Hub(store)
    local_user = user_name()  # who answers from an open loopback server: this machine's user
    # the Alertmanager rules (a bad file: its problems, located, before anything listens) and the
    # scheduler (its schedules listed always; it fires them only when settings.scheduler)
    rules = load_rules(settings.triggers,
                       {e.name for e in catalogue.entries() if e.ok} if settings.procedures is not None else None)
    scheduler = Scheduler(store, launch=launcher(store, lambda: state_url()), files=catalogue.files)

    def who_of(request: Request) -> Who:
        who = getattr(request.state, "who", None)
        return who if isinstance(who, Who) else Who()

    def audit(request: Request, action: str, result: str, detail: str | None = None, *, run_id: str | None = None,
              step: str | None = None, new_run: str | None = None) -> dict[str, Any] | None:
        """One audit entry (docs/web.md "Audit"): who did or tried what, on which run, and what
        came of it. Never a reason for the request to fail: a state that cannot take it is
        said in the server's log."""
        who = who_of(request)
        name = local_user if who.open else who.name
        try:
            return dict(store.audit({"user": name, "role": who.role, "action": action, "run_id": run_id,
                                     "step": step, "result": result, "detail": detail, "new_run": new_run,
                                     "via": "api" if _is_api(request) else "web"}))
        except Exception as exc:  # noqa: BLE001 - the answer stands; the log says the audit failed
            print(f"runproc serve: could not audit {action} on {run_id}: {' '.join(str(exc).split())[:200]}",
                  file=sys.stderr, flush=True)
            return None

    def csrf_of(request: Request) -> tuple[str, bool]:
        """The form token: the browser's cookie when it holds one, else a new one (set on the response)."""
        value = request.cookies.get(CSRF_COOKIE) or ""
        if _CSRF_VALUE.fullmatch(value):
            return value, False
        return secrets.token_urlsafe(32), True

    def page(request: Request, template: str, status: int = 200, nav: str = "", **context: Any) -> Response:
        csrf, fresh = csrf_of(request)
        body = render(template, who=who_of(request), csrf=csrf, version=__version__, state=state_shown, nav=nav,
                      **context)
        response = HTMLResponse(body, status_code=status)
        if fresh:
            response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/",
                                secure=request.url.scheme == "https")
        return response

    def guarded(action: str, endpoint: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """``endpoint`` for those who may ``action`` (read, start...): 401 without a valid token
        when tokens are configured, 403 when the token's role may not."""
        def wrapper(request: Request) -> Response:
            who = access.identify(request)
            request.state.who = who
            if not who.can(action):
                if who.open:
                    raise WebError(401, f"{action} needs a token, and none are configured "
                                        "(runproc serve token add NAME --role operator --tokens FILE)")
                raise WebError(403, f"{who.name} ({who.role}) may not {action}")
            return endpoint(request)
        wrapper.__name__ = getattr(endpoint, "__name__", "endpoint")
        return wrapper

    def guarded_stream(action: str, endpoint: Callable[[Request], Awaitable[Response]]
                       ) -> Callable[[Request], Awaitable[Response]]:
        """``guarded`` for an event stream: on the event loop, not in the thread pool."""
        async def wrapper(request: Request) -> Response:
            guarded(action, lambda r: Response())(request)  # raises what guarded raises
            return await endpoint(request)
        wrapper.__name__ = getattr(endpoint, "__name__", "endpoint")
        return wrapper

    def catalogued_names() -> list[str]:
        return sorted({e.name for e in catalogue.entries() if e.ok})

    # ------------------------------------------------------------ runs

    def run_query(request: Request) -> Any:
        keys = [k for k, _ in request.query_params.multi_items()]
        return parse_run_query(request.query_params, keys)

    def runs_link(base: str, query: Any, page_no: int) -> str:
        params = query.link(page_no)
        return base + ("?" + urlencode(params) if params else "")

    def runs_data(request: Request, base: str) -> dict[str, Any]:
        query = run_query(request)
        found = list_runs(store, query)
        return {"query": query, **found,
                "next": runs_link(base, query, query.page + 1) if found["more"] else None,
                "prev": runs_link(base, query, query.page - 1) if query.page > 1 else None}

    def runs_page(request: Request) -> Response:
        data = runs_data(request, "/runs")
        query = data["query"]
        return page(request, "runs.html", nav="runs", runs=data["runs"], query=query, page=query.page,
                    statuses=STATUSES, default_limit=DEFAULT_LIMIT, filtered=bool(query.given()),
                    catalogued=catalogued_names(), next_url=data["next"], prev_url=data["prev"])

    def api_runs(request: Request) -> Response:
        data = runs_data(request, "/api/v1/runs")
        query = data["query"]
        runs = [{**r, "url": f"/api/v1/runs/{r['id']}", "page": f"/runs/{r['id']}"} for r in data["runs"]]
        return JsonResponse({"runs": runs, "page": query.page, "limit": query.limit, "filters": query.given(),
                             "next": data["next"], "prev": data["prev"]})

    def run_page(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        run = run_detail(store, run_id, catalogue)
        if run.get("run_id") and run["run_id"] != run_id:  # a prefix: the page has one address
            return RedirectResponse(f"/runs/{run['run_id']}", status_code=303)
        graph = run["graph"]
        drawing = dag.draw(graph["nodes"], graph["edges"], dependencies_known=graph["dependencies_known"])
        who = who_of(request)
        answering = {w["step"]: answering_view(who, w) for w in run["waiting"]}
        # the actions this run offers (each page behind them says whether it can be done now)
        offered = ([] if run.get("dry_run") else ["cancel"] if run.get("status") == "running"
                   else ["retry", "rollback"] if run.get("status") == "ok" else ["resume", "retry", "rollback"])
        return page(request, "run.html", nav="runs", run=run, drawing=drawing, answering=answering,
                    catalogued=catalogue.find(str(run.get("procedure") or "")) is not None,
                    offered=[(a, actions.TITLES[a]) for a in offered],
                    why_not={a: may_act(who, a) for a in offered},
                    why_any=next((may_act(who, a) for a in offered if may_act(who, a)), None),
                    audit_log=store.audit_log(run["run_id"], 200) if hasattr(store, "audit_log") else [])

    # ------------------------------------------------------------ approvals

    def answerer(who: Who) -> tuple[str, str | None]:
        """Who answers a confirm step from this server: a token's holder whose role may, or the
        local user of an open loopback server (the OS user the server runs as)."""
        if who.open:
            return local_user, None
        if who.can("approve"):
            return str(who.name), who.role
        raise WebError(403, f"{who.name} ({who.role}) may not answer a confirm step; an approver's token may")

    def answering_view(who: Who, wait: dict[str, Any]) -> dict[str, Any]:
        """What the run page offers this viewer for a waiting step: a form, and whether its
        Approve may be used (the step's four_eyes and approvers), with the reason when not."""
        try:
            by, role = answerer(who)
        except WebError as exc:
            return {"can": False, "why": exc.message, "as": None}
        return {"can": True, "why": refusal(wait, by=by, role=role, approved=True),
                "as": f"{by} ({role})" if role else by}

    def give_answer(run_id: str, step: str, approved: bool, who: Who, how: str, comment: str | None,
                    asked: int | None) -> dict[str, Any]:
        by, role = answerer(who)
        try:
            return give(store, resolve_run(store, run_id), step, approved=approved, by=by, role=role, how=how,
                        comment=comment, request=asked)
        except NotAllowed as exc:
            raise WebError(403, str(exc)) from None
        except NotWaiting as exc:
            raise WebError(409, str(exc)) from None

    async def approve_form(request: Request) -> Response:
        who = access.identify(request)
        request.state.who = who
        form = await _form(request)  # its CSRF token checked before anything else
        answerer(who)  # then whether this viewer may answer at all
        decision = form.get("decision")
        if decision not in ("approve", "reject"):
            raise WebError(400, "decision: expected approve or reject")
        step = form.get("step") or ""
        asked = form.get("request") or ""
        if not step or not asked.isdigit():
            raise WebError(400, "the form names no step or question: reload the run's page")
        run_id = request.path_params["run_id"]
        given = await anyio.to_thread.run_sync(give_answer, run_id, step, decision == "approve", who, "web",
                                               form.get("comment"), int(asked))
        await anyio.to_thread.run_sync(lambda: audit(request, decision, "recorded", given.get("comment"),
                                                     run_id=given["run_id"], step=step))
        return RedirectResponse(f"/runs/{given['run_id']}#step-{step}", status_code=303)

    def api_approvals(request: Request) -> Response:
        run = run_detail(store, request.path_params["run_id"], catalogue)
        return JsonResponse({"run_id": run["run_id"], "approvals": run["approvals"], "waiting": run["waiting"]})

    async def api_approve(request: Request) -> Response:
        who = access.identify(request)
        request.state.who = who
        if who.open:  # the API's writes always need a token
            raise WebError(401, "answering through the API needs a token, and none are configured "
                                "(runproc serve token add NAME --role approver --tokens FILE)",
                           {"www-authenticate": 'Bearer realm="runproc"'})
        if who.by_cookie:  # a signed-in browser answers with the page's form, which carries a CSRF token
            raise WebError(401, "the API's writes take Authorization: Bearer TOKEN",
                           {"www-authenticate": 'Bearer realm="runproc"'})
        body = await _json(request)
        step, approved, comment = body.get("step"), body.get("approved"), body.get("comment")
        if not isinstance(step, str) or not step:
            raise WebError(400, "step: the confirm step's id, a string")
        if not isinstance(approved, bool):
            raise WebError(400, "approved: true to approve, false to reject")
        if comment is not None and not isinstance(comment, str):
            raise WebError(400, "comment: a string, or leave it out")
        given = await anyio.to_thread.run_sync(give_answer, request.path_params["run_id"], step, approved, who,
                                               "api", comment, None)
        await anyio.to_thread.run_sync(lambda: audit(request, "approve" if approved else "reject", "recorded",
                                                     comment, run_id=given["run_id"], step=step))
        return JsonResponse(given, status_code=201)

    def api_run(request: Request) -> Response:
        run = run_detail(store, request.path_params["run_id"], catalogue)
        run.pop("timeline", None)
        run.pop("journal", None)
        return JsonResponse(run)

    def api_steps(request: Request) -> Response:
        run = run_detail(store, request.path_params["run_id"], catalogue)
        return JsonResponse({"run_id": run.get("run_id"), "status": run.get("status"), "steps": run["steps"]})

    # ------------------------------------------------------------ live (server-sent events)

    async def api_run_events(request: Request) -> Response:
        after = _after(request)
        rid = await anyio.to_thread.run_sync(resolve_run, store, request.path_params["run_id"])

        async def events() -> AsyncIterator[dict[str, Any]]:
            async for name, data in hub.follow(rid, after):
                if name == "journal" and data["seq"] <= after:
                    continue  # the viewer has it (a feed shared with an earlier viewer starts earlier)
                yield _sse(name, data, data["seq"] if name == "journal" else None)
        return EventSourceResponse(events(), ping=15)

    async def api_runs_events(request: Request) -> Response:
        if request.query_params:
            raise BadQuery(next(iter(request.query_params)), "unknown parameter; the runs stream takes none")

        async def events() -> AsyncIterator[dict[str, Any]]:
            async for name, data in hub.runs():
                yield _sse(name, data, None)
        return EventSourceResponse(events(), ping=15)

    # ------------------------------------------------------------ procedures

    def last_runs(name: str, limit: int) -> list[dict[str, Any]]:
        return list(store.runs(limit, RunFilter(procedure=name, limit=limit)))

    def procedures_page(request: Request) -> Response:
        entries = catalogue.entries()
        latest = {}
        for name in {e.name for e in entries if e.ok}:
            found = last_runs(name, 1)
            if found:
                latest[name] = found[0]
        return page(request, "procedures.html", nav="procedures", entries=entries, last_runs=latest,
                    folder=str(settings.procedures) if settings.procedures is not None else None)

    def find_procedure(name: str) -> Any:
        entry = catalogue.find(name)
        if entry is None:
            where = f"in {settings.procedures}" if settings.procedures is not None else "(no --procedures folder)"
            raise NotFound(f"no procedure {name!r} {where}")
        return entry

    def procedure_graph(entry: Any) -> dict[str, Any]:
        nodes = [{"id": sid, "label": label, "status": "", "detail": entry.kinds.get(sid, "")}
                 for sid, label in entry.steps]
        edges = [[dep, sid] for sid, _ in entry.steps for dep in entry.needs.get(sid, [])]
        return {"nodes": nodes, "edges": edges}

    def procedure_page(request: Request) -> Response:
        entry = find_procedure(request.path_params["name"])
        graph = procedure_graph(entry)
        return page(request, "procedure.html", nav="procedures", entry=entry, runs=last_runs(entry.name, 10),
                    drawing=dag.draw(graph["nodes"], graph["edges"]))

    def api_procedures(request: Request) -> Response:
        items = [{**e.summary(), "url": f"/api/v1/procedures/{e.name}" if e.ok else None}
                 for e in catalogue.entries()]
        return JsonResponse({"folder": str(settings.procedures) if settings.procedures is not None else None,
                             "procedures": items})

    def api_procedure(request: Request) -> Response:
        entry = find_procedure(request.path_params["name"])
        runs = [{**r, "url": f"/api/v1/runs/{r['id']}", "page": f"/runs/{r['id']}"} for r in last_runs(entry.name, 10)]
        return JsonResponse({**entry.detail(), "url": f"/api/v1/procedures/{entry.name}",
                             "graph": procedure_graph(entry), "last_runs": runs})

    # ------------------------------------------------------------ schedules and alerts (docs/web.md)

    def schedules_data(request: Request) -> dict[str, Any]:
        if request.query_params:
            raise BadQuery(next(iter(request.query_params)), "unknown parameter; the schedules take none")
        now = datetime.now(UTC)
        return {"now": slot_name(now), "scheduler": settings.scheduler, "schedules": scheduler.listing(now)}

    def rules_shown() -> list[dict[str, Any]]:
        """The rules as the page and the API show them: a secret param's value (a literal in the
        file) as ***."""
        out = []
        for rule in rules:
            entry = catalogue.find(rule.procedure)
            secret = {p["name"] for p in entry.params if p["secret"]} if entry is not None else set()
            item = rule.summary()
            item["params"] = {k: ("***" if k in secret else v) for k, v in item["params"].items()}
            out.append(item)
        return out

    def schedules_page(request: Request) -> Response:
        return page(request, "schedules.html", nav="schedules", **schedules_data(request),
                    rules=rules_shown(), groups=store.alert_groups(20), triggers=settings.triggers)

    def api_schedules(request: Request) -> Response:
        return JsonResponse(schedules_data(request))

    def api_alert_rules(request: Request) -> Response:
        if request.query_params:
            raise BadQuery(next(iter(request.query_params)), "unknown parameter; the receiver's GET takes none")
        return JsonResponse({"triggers": settings.triggers, "rules": rules_shown(),
                             "groups": store.alert_groups(50)})

    async def api_alertmanager(request: Request) -> Response:
        who = access.identify(request)
        request.state.who = who
        if who.open or who.by_cookie:  # the API's writes always take a token
            raise WebError(401, "the Alertmanager receiver needs an operator's token (Alertmanager's webhook_config: "
                                "http_config: authorization: credentials: TOKEN)",
                           {"www-authenticate": 'Bearer realm="runproc"'})
        if not who.can("start"):
            raise WebError(403, f"{who.name} ({who.role}) may not start runs; an operator's token may")
        unknown = [k for k in request.query_params if k != "dry_run"]
        dry = request.query_params.get("dry_run", "false")
        if unknown or dry not in ("true", "false"):
            raise WebError(400, f"{unknown[0] if unknown else 'dry_run'}: the receiver takes dry_run=true|false only")
        if not rules:
            raise WebError(404, "this server maps no alerts: start it with --triggers FILE (docs/web.md, "
                                "\"Alerts start runs\")")
        body = await _json(request, ALERTS_MAX_BODY)
        try:
            status, answer_body = await anyio.to_thread.run_sync(lambda: receive(
                store, rules, body, find_file=lambda name: find_procedure(name).file, state_url=state_url(),
                received_by=str(who.name), dry_run=dry == "true"))
        except BadPayload as exc:
            raise WebError(400, str(exc)) from None
        except (Unprocessable, starts.StartFailed) as exc:
            code, said = (422 if isinstance(exc, Unprocessable) else 502), str(exc)
            await anyio.to_thread.run_sync(lambda: audit(request, "alert", f"refused ({code})", said[:500]))
            raise WebError(code, said) from None
        if answer_body["action"] == "started":  # the audit says which alert group started which run
            await anyio.to_thread.run_sync(lambda: audit(
                request, "alert", "started", f"{answer_body['procedure']} by rule {answer_body['rule']} for alert "
                f"group {answer_body['group']}", new_run=answer_body["run_id"]))
        return JsonResponse(answer_body, status_code=status)

    # ------------------------------------------------------------ starting a run

    def state_url() -> str:
        path = getattr(store, "path", None)
        return f"sqlite:///{Path(path).resolve()}" if path is not None else str(store.url)

    def start_page(request: Request) -> Response:
        entry = find_procedure(request.path_params["name"])
        return start_form(request, entry)

    def start_form(request: Request, entry: Any, status: int = 200, problems: list[str] | None = None,
                   values: dict[str, str] | None = None, dry_run: bool = False) -> Response:
        who = who_of(request)
        may = who.can("start")
        why = None if may else ("starting a run needs an operator's token, and none are configured on this server "
                                "(runproc serve token add NAME --role operator --tokens FILE)" if who.open
                                else f"{who.name} ({who.role}) may not start runs; an operator's token may")
        return page(request, "start.html", status=status, nav="procedures", entry=entry, may_start=may, why=why,
                    problems=problems or [], values=values or {}, dry_run=dry_run)

    def run_started(entry: Any, given: dict[str, Any], who: Who, dry_run: bool, *, from_text: bool) -> Any:
        """Check the params as the CLI does, then start the run; ProcedureError or StartFailed."""
        params = starts.check_params(entry.file, given, from_text=from_text)
        return starts.start(entry.file, params, state_url=state_url(), user=str(who.name), dry_run=dry_run,
                            store=store)

    async def start_run_form(request: Request) -> Response:
        who = access.identify(request)
        request.state.who = who
        form = await _form(request)  # CSRF first
        entry = find_procedure(request.path_params["name"])
        if not who.can("start"):
            raise WebError(401 if who.open else 403, "starting a run needs an operator's token"
                           + (", and none are configured on this server" if who.open else
                              f"; {who.name} is a {who.role}"))
        dry_run = form.get("mode") == "dry_run"
        values = starts.form_values(form)
        try:
            started = await anyio.to_thread.run_sync(
                lambda: run_started(entry, values, who, dry_run, from_text=True))
        except ProcedureError as exc:
            # the form again, with what the CLI would say; a secret's field is never filled back in
            shown = {k: v for k, v in values.items() if not _secret(entry, k)}
            problems = starts.problems_text(exc)
            await anyio.to_thread.run_sync(lambda: audit(request, "start", "refused (400)",
                                                         f"{entry.name}: " + "; ".join(problems)))
            return start_form(request, entry, 400, problems, shown, dry_run)
        except starts.StartFailed as exc:
            raise WebError(502, str(exc)) from None
        await anyio.to_thread.run_sync(lambda: audit(request, "start", "started", f"{entry.name}"
                                                     + (" (dry run)" if dry_run else ""), new_run=started.run_id))
        if started.run_id is None:
            return RedirectResponse(f"/runs?procedure={entry.name}", status_code=303)
        return RedirectResponse(f"/runs/{started.run_id}", status_code=303)

    async def api_start_run(request: Request) -> Response:
        who = access.identify(request)
        if who.open:  # the API's writes always need a token
            raise WebError(401, "starting a run needs a token, and none are configured "
                                "(runproc serve token add NAME --role operator --tokens FILE)",
                           {"www-authenticate": 'Bearer realm="runproc"'})
        if who.by_cookie:
            raise WebError(401, "the API's writes take Authorization: Bearer TOKEN",
                           {"www-authenticate": 'Bearer realm="runproc"'})
        request.state.who = who
        if not who.can("start"):
            raise WebError(403, f"{who.name} ({who.role}) may not start runs; an operator's token may")
        entry = find_procedure(request.path_params["name"])
        body = await _json(request)
        unknown = sorted(set(body) - {"params", "dry_run"})
        if unknown:
            raise WebError(400, f"{unknown[0]}: unknown field; a start takes params and dry_run")
        params, dry_run = body.get("params", {}), body.get("dry_run", False)
        params = {} if params is None else params
        if not isinstance(params, dict) or not isinstance(dry_run, bool):
            raise WebError(400, "params: an object of name: value; dry_run: true or false")
        try:
            started = await anyio.to_thread.run_sync(lambda: run_started(entry, params, who, dry_run, from_text=False))
        except ProcedureError as exc:
            raise WebError(400, "; ".join(starts.problems_text(exc))) from None
        except starts.StartFailed as exc:
            raise WebError(502, str(exc)) from None
        rid = started.run_id
        await anyio.to_thread.run_sync(lambda: audit(request, "start", "started", f"{entry.name}"
                                                     + (" (dry run)" if dry_run else ""), new_run=rid))
        return JsonResponse({"run_id": rid, "dry_run": dry_run, "pid": started.pid,
                             "url": f"/api/v1/runs/{rid}" if rid else None, "page": f"/runs/{rid}" if rid else None},
                            status_code=201 if rid else 202)

    def api_openapi(request: Request) -> Response:
        return JsonResponse(openapi.document())

    # ------------------------------------------------------------ actions on a run (docs/web.md "Actions")

    def action_of(request: Request) -> str:
        action = request.path_params["action"]
        if action not in actions.ACTIONS:
            raise NotFound(f"no action {action!r}: a run's actions are {', '.join(actions.ACTIONS)}")
        return action

    def may_act(who: Who, action: str) -> str | None:
        """Why this viewer may not do ``action`` (None: they may)."""
        if who.can(actions.ROLE_ACTION[action]):
            return None
        if who.open:
            return (f"{actions.TITLES[action].lower()} needs an operator's token, and none are configured on this "
                    "server (runproc serve token add NAME --role operator --tokens FILE)")
        return f"{who.name} ({who.role}) may not {actions.TITLES[action].lower()}; an operator's token may"

    def action_page(request: Request) -> Response:
        action = action_of(request)
        rid = resolve_run(store, request.path_params["run_id"])
        step = request.query_params.get("step") or None
        shown = actions.preview(store, rid, action, step)
        return page(request, "action.html", nav="runs", action=action, title=actions.TITLES[action], p=shown,
                    why_not=may_act(who_of(request), action), inflight_choices=actions.INFLIGHT)

    def do_action(request: Request, action: str, run_id: str, step: str | None, inflight: str | None,
                  params: dict[str, Any]) -> tuple[actions.Preview, actions.Done]:
        """The action done, after its preview says it can be; WebError otherwise (audited by answer)."""
        who = who_of(request)
        rid = resolve_run(store, run_id)
        shown = actions.preview(store, rid, action, step)
        if not shown.ok:
            raise WebError(400 if action == "retry" and not step else 409, str(shown.why))
        if shown.in_flight and action != "cancel" and inflight not in actions.INFLIGHT:
            raise WebError(400, f"{', '.join(shown.in_flight)} was in flight when the run stopped: choose whether "
                                "to run (or undo) it again or to leave it (inflight: again or skip)")
        missing = [n for n in shown.secrets if params.get(n) in (None, "")]
        if missing:
            raise WebError(400, f"param {missing[0]!r} is secret: the run recorded only a hash of it; give it again")
        unknown = sorted(set(params) - set(shown.secrets))
        if unknown:
            raise WebError(400, f"param {unknown[0]!r}: only params declared secret: true are given again "
                                "(the others are the run's)")
        try:
            if action == "cancel":
                done = actions.cancel(store, rid)
            else:
                done = actions.launch(store, actions.replay_argv(action, rid, step=shown.step, inflight=inflight),
                                      state_url=state_url(), user=str(who.name), params=params,
                                      cwd=actions.run_folder(store, rid))
        except actions.ActionRefused as exc:
            raise WebError(409, str(exc)) from None
        except starts.StartFailed as exc:
            raise WebError(502, str(exc)) from None
        audit(request, action, done.result, done.detail, run_id=rid, step=shown.step, new_run=done.new_run)
        return shown, done

    async def action_form(request: Request) -> Response:
        who = access.identify(request)
        request.state.who = who
        form = await _form(request)  # its CSRF token checked before anything else
        action = action_of(request)
        why = may_act(who, action)
        if why is not None:
            raise WebError(401 if who.open else 403, why)
        if form.get("confirm") != "yes":
            raise WebError(400, "the form was not confirmed: reload the action's page")
        params = {k[len("param."):]: v for k, v in form.items() if k.startswith("param.") and v != ""}
        _, done = await anyio.to_thread.run_sync(
            lambda: do_action(request, action, request.path_params["run_id"], form.get("step") or None,
                              form.get("inflight") or None, params))
        target = done.new_run or resolve_run(store, request.path_params["run_id"])
        return RedirectResponse(f"/runs/{target}#audit", status_code=303)

    def api_action(action: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            who = access.identify(request)
            request.state.who = who
            if who.open:  # the API's writes always need a token
                raise WebError(401, f"{action} needs a token, and none are configured "
                                    "(runproc serve token add NAME --role operator --tokens FILE)",
                               {"www-authenticate": 'Bearer realm="runproc"'})
            if who.by_cookie:
                raise WebError(401, "the API's writes take Authorization: Bearer TOKEN",
                               {"www-authenticate": 'Bearer realm="runproc"'})
            why = may_act(who, action)
            if why is not None:
                raise WebError(403, why)
            body = await _json(request)
            allowed = {"dry_run"} | ({"step"} if action == "retry" else set()) | (
                {"params", "inflight"} if action != "cancel" else set())
            unknown = sorted(set(body) - allowed)
            if unknown:
                raise WebError(400, f"{unknown[0]}: unknown field; {action} takes {', '.join(sorted(allowed))}")
            dry_run, params = body.get("dry_run", False), body.get("params") or {}
            step, inflight = body.get("step"), body.get("inflight")
            if not isinstance(dry_run, bool) or not isinstance(params, dict) or not all(
                    isinstance(v, str | int | float | bool) for v in params.values()):
                raise WebError(400, "dry_run: true or false; params: an object of secret param: value")
            if step is not None and not isinstance(step, str) or inflight not in (None, *actions.INFLIGHT):
                raise WebError(400, "step: a step id; inflight: again or skip")
            if action == "retry" and not step:
                raise WebError(400, "step: the step to retry from is needed")
            run_id = request.path_params["run_id"]
            if dry_run:  # what would be done, and nothing done
                rid = await anyio.to_thread.run_sync(resolve_run, store, run_id)
                shown = await anyio.to_thread.run_sync(actions.preview, store, rid, action, step)
                return JsonResponse({**shown.to_json(), "dry_run": True})
            shown, done = await anyio.to_thread.run_sync(
                lambda: do_action(request, action, run_id, step, inflight, {k: str(v) for k, v in params.items()}))
            return JsonResponse({"action": action, "run_id": shown.run_id, "dry_run": False, "result": done.result,
                                 "detail": done.detail, "new_run": done.new_run, "pid": done.pid,
                                 "url": f"/api/v1/runs/{done.new_run}" if done.new_run else None,
                                 "page": f"/runs/{done.new_run}" if done.new_run else f"/runs/{shown.run_id}"},
                                status_code=201 if done.new_run else 200)
        endpoint.__name__ = f"api_{action}"
        return endpoint

    def api_run_audit(request: Request) -> Response:
        rid = resolve_run(store, request.path_params["run_id"])
        return JsonResponse({"run_id": rid, "audit": store.audit_log(rid, 500)})

    def api_audit(request: Request) -> Response:
        unknown = [k for k in request.query_params if k != "limit"]
        if unknown:
            raise BadQuery(unknown[0], "unknown parameter; the audit takes limit")
        text = request.query_params.get("limit") or "100"
        if not text.isdigit() or not 1 <= int(text) <= 1000:
            raise BadQuery("limit", f"expected a whole number from 1 to 1000, got {text[:20]!r}")
        return JsonResponse({"audit": store.audit_log(None, int(text))})

    # ------------------------------------------------------------ a step's output

    def api_step_logs(request: Request) -> Response:
        after = request.query_params.get("after") or "0"
        unknown = [k for k in request.query_params if k != "after"]
        if unknown:
            raise BadQuery(unknown[0], "unknown parameter; a step's logs take after")
        if not after.isdigit() or len(after) > 12:
            raise BadQuery("after", f"expected a journal sequence number, got {after[:20]!r}")
        logs = step_logs(store, request.path_params["run_id"], request.path_params["step"], int(after))
        base = f"/api/v1/runs/{logs['run_id']}/steps/{logs['step']}/logs"
        for f in logs["files"]:
            f["url"] = f"{base}/{f['stream']}" + (f"?{urlencode({'host': f['host']})}" if f["host"] else "")
            f.pop("path", None)
        return JsonResponse(logs)

    def api_step_log_file(request: Request) -> Response:
        unknown = [k for k in request.query_params if k != "host"]
        if unknown:
            raise BadQuery(unknown[0], "unknown parameter; a log file takes host")
        stream, host = request.path_params["stream"], request.query_params.get("host") or None
        logs = step_logs(store, request.path_params["run_id"], request.path_params["step"], 0)
        for f in logs["files"]:
            if f["stream"] == stream and f["host"] == host:
                return FileResponse(f["path"], media_type="text/plain; charset=utf-8")
        for r in logs["result"]:  # no file: what the state keeps (capped), as text
            if r["stream"] == stream and r["host"] == host:
                return PlainTextResponse(r["text"])
        raise NotFound(f"step {logs['step']} of run {logs['run_id']} has no {stream}"
                       + (f" on {host}" if host else "") + " (yet: a running step's output is in its logs' output)")

    # ------------------------------------------------------------ signing in (tokens configured)

    def home(request: Request) -> Response:
        return RedirectResponse("/runs", status_code=307)

    def stylesheet(request: Request) -> Response:
        return Response(css, media_type="text/css", headers={"cache-control": "public, max-age=86400"})

    def javascript(request: Request) -> Response:
        return Response(script, media_type="text/javascript", headers={"cache-control": "public, max-age=86400"})

    def login_form(request: Request) -> Response:
        if not access.book().configured:
            return RedirectResponse("/runs", status_code=303)  # nothing to sign in to
        return page(request, "login.html", next=_safe_next(request.query_params.get("next")), message=None)

    async def login(request: Request) -> Response:
        form = await _form(request)
        book = access.book()
        if not book.configured:
            return RedirectResponse("/runs", status_code=303)
        token = book.match(form.get("token"))
        if token is None:
            return page(request, "login.html", status=401, next=_safe_next(form.get("next")),
                        message="That token is not valid here.")
        response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
        # the token itself in an HttpOnly cookie: no script can read it, and SameSite=Strict keeps
        # other sites' pages from sending it
        response.set_cookie(TOKEN_COOKIE, str(form.get("token")), max_age=SESSION_SECONDS, httponly=True,
                            samesite="strict", path="/", secure=request.url.scheme == "https")
        return response

    async def logout(request: Request) -> Response:
        await _form(request)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(TOKEN_COOKIE, path="/")
        return response

    routes = [
        Route("/", home, methods=["GET"]),
        Route("/static/runproc.css", stylesheet, methods=["GET"]),
        Route("/static/live.js", javascript, methods=["GET"]),
        Route("/runs", guarded("read", runs_page), methods=["GET"]),
        Route("/runs/{run_id}", guarded("read", run_page), methods=["GET"]),
        Route("/runs/{run_id}/approvals", approve_form, methods=["POST"]),
        Route("/runs/{run_id}/actions/{action}", guarded("read", action_page), methods=["GET"]),
        Route("/runs/{run_id}/actions/{action}", action_form, methods=["POST"]),
        Route("/procedures", guarded("read", procedures_page), methods=["GET"]),
        Route("/procedures/{name}", guarded("read", procedure_page), methods=["GET"]),
        Route("/procedures/{name}/start", guarded("read", start_page), methods=["GET"]),
        Route("/procedures/{name}/runs", start_run_form, methods=["POST"]),
        Route("/schedules", guarded("read", schedules_page), methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/v1/runs", guarded("read", api_runs), methods=["GET"]),
        Route("/api/v1/runs/events", guarded_stream("read", api_runs_events), methods=["GET"]),
        Route("/api/v1/runs/{run_id}", guarded("read", api_run), methods=["GET"]),
        Route("/api/v1/runs/{run_id}/steps", guarded("read", api_steps), methods=["GET"]),
        Route("/api/v1/runs/{run_id}/steps/{step}/logs", guarded("read", api_step_logs), methods=["GET"]),
        Route("/api/v1/runs/{run_id}/steps/{step}/logs/{stream}", guarded("read", api_step_log_file),
              methods=["GET"]),
        Route("/api/v1/runs/{run_id}/audit", guarded("read", api_run_audit), methods=["GET"]),
        *[Route(f"/api/v1/runs/{{run_id}}/{action}", api_action(action), methods=["POST"])
          for action in actions.ACTIONS],
        Route("/api/v1/audit", guarded("read", api_audit), methods=["GET"]),
        Route("/api/v1/runs/{run_id}/events", guarded_stream("read", api_run_events), methods=["GET"]),
        Route("/api/v1/runs/{run_id}/approvals", guarded("read", api_approvals), methods=["GET"]),
        Route("/api/v1/runs/{run_id}/approvals", api_approve, methods=["POST"]),
        Route("/api/v1/procedures", guarded("read", api_procedures), methods=["GET"]),
        Route("/api/v1/procedures/{name}", guarded("read", api_procedure), methods=["GET"]),
        Route("/api/v1/procedures/{name}/runs", api_start_run, methods=["POST"]),
        Route("/api/v1/schedules", guarded("read", api_schedules), methods=["GET"]),
        Route("/api/v1/alertmanager", guarded("read", api_alert_rules), methods=["GET"]),
        Route("/api/v1/alertmanager", api_alertmanager, methods=["POST"]),
        Route("/api/v1/openapi.json", guarded("read", api_openapi), methods=["GET"]),
    ]

    def answer(request: Request, status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
        attempted = _attempted(request) if request.method == "POST" and status >= 400 else None
        if attempted is not None:  # a write refused (a role, four_eyes, a forged form...): audited too
            action, run_id, procedure = attempted
            audit(request, action, f"refused ({status})", f"{procedure}: {message}" if procedure else message,
                  run_id=run_id)
        if _is_api(request):
            return JsonResponse(_error_body(status, message), status_code=status, headers=dict(headers or {}))
        if status == 401 and access.book().configured:  # a person with a browser: the sign-in form
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
            if request.cookies.get(TOKEN_COOKIE):
                response.delete_cookie(TOKEN_COOKIE, path="/")  # a token removed since it was given
            return response
        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        try:
            return page(request, "error.html", status=status, status_code=status, reason=reason, message=message)
        except Exception:  # noqa: BLE001 - the page itself failed: the message in plain text still helps
            return PlainTextResponse(f"{status} {reason}: {message}\n", status_code=status)

    def on_web_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, WebError)
        return answer(request, exc.status, exc.message, exc.headers)

    def on_bad_query(request: Request, exc: Exception) -> Response:
        # BadQuery, and any invalid input met while answering (a ProcedureError, say): a 400 saying it
        return answer(request, 400, " ".join(str(exc).split()))

    def on_not_found(request: Request, exc: Exception) -> Response:
        return answer(request, 404, str(exc))

    def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: f"nothing at {request.url.path} (the API is under /api/v1; its document: "
                        "/api/v1/openapi.json)",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return answer(request, exc.status_code, message, exc.headers)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        running = Running(scheduler) if settings.scheduler else None
        if running is not None:
            running.start()
        try:
            yield
        finally:
            if running is not None:
                running.close()
            hub.close()
            if own_store:
                store.close()

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        WebError: on_web_error, BadQuery: on_bad_query, NotFound: on_not_found, InvalidInputError: on_bad_query,
        HTTPException: on_http})
    app.add_middleware(Guard)
    app.state.store = store
    app.state.hub = hub  # runproc serve's stop ends its streams (server.run)
    app.state.settings = settings
    return app


_WRITES = re.compile(r"/(?:api/v1/)?(?:runs/(?P<run>[^/]+)/(?:actions/)?(?P<act>resume|retry|rollback|cancel|approvals)"
                     r"|procedures/(?P<proc>[^/]+)/runs)")


def _attempted(request: Request) -> tuple[str, str | None, str | None] | None:
    """The write a POST attempted, for the audit of a refusal: (action, run id, procedure)."""
    m = _WRITES.fullmatch(request.url.path)
    if m is None:
        return None
    if m.group("proc"):
        return "start", None, m.group("proc")[:128]
    act = m.group("act")
    return ("answer" if act == "approvals" else act), m.group("run")[:128], None


def _secret(entry: Any, name: str) -> bool:
    return any(p["name"] == name and p["secret"] for p in entry.params)


def _after(request: Request) -> int:
    """Where a stream starts: after the journal entry ``?after=SEQ``, or after the last one the
    browser saw before it reconnected (``Last-Event-ID``), whichever is later."""
    seen = 0
    for name, value in (("after", request.query_params.get("after")),
                        ("Last-Event-ID", request.headers.get("last-event-id"))):
        if value is None or value == "":
            continue
        if not value.isdigit() or len(value) > 12:
            raise BadQuery(name, f"expected a journal sequence number (a whole number), got {value[:40]!r}")
        seen = max(seen, int(value))
    unknown = [k for k in request.query_params if k != "after"]
    if unknown:
        raise BadQuery(unknown[0], "unknown parameter; a run's stream takes after")
    return seen


def _sse(name: str, data: dict[str, Any], seq: int | None) -> dict[str, Any]:
    """One server-sent event: its name, its id (a journal entry's seq, so a reconnecting browser
    resumes after it) and its data as one line of JSON."""
    event: dict[str, Any] = {"event": name, "data": json.dumps(data, default=str, ensure_ascii=False,
                                                               separators=(",", ":"))}
    if seq is not None:
        event["id"] = str(seq)
    return event


async def _body(request: Request, limit: int = MAX_BODY) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise WebError(413, f"the request body is larger than {limit} bytes")
    return body


async def _json(request: Request, limit: int = MAX_BODY) -> dict[str, Any]:
    """A JSON object of at most ``limit`` bytes (an API write's body)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise WebError(415, "expected JSON (Content-Type: application/json)")
    try:
        value = json.loads(await _body(request, limit) or b"null")
    except (ValueError, UnicodeDecodeError):
        raise WebError(400, "the body is not JSON") from None
    if not isinstance(value, dict):
        raise WebError(400, "expected a JSON object")
    return value


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form of at most MAX_BODY bytes, its CSRF token checked against the cookie
    (and its Origin, when the browser sends one, against this server's)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise WebError(415, "expected a form (application/x-www-form-urlencoded)")
    body = await _body(request)
    try:
        fields = {k: v[-1] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
    except UnicodeDecodeError:
        raise WebError(400, "the form is not UTF-8") from None
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise WebError(403, f"a form from another site ({origin}) is refused")
    cookie, given = request.cookies.get(CSRF_COOKIE) or "", fields.get("csrf") or ""
    if not cookie or not hmac.compare_digest(cookie.encode(), given.encode()):
        raise WebError(403, "the form's CSRF token does not match: reload the page and send it again")
    return fields


class Guard:
    """Around every request: security headers on every answer, a body larger than MAX_BODY
    refused before it is read, and the last resort for a bug: a 500 that says so, and one line
    in the server's log naming a crash file with the traceback (secrets masked)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for key, value in _HEADERS.items():
                    if key not in headers:
                        headers[key] = value
            await send(message)

        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        # Alertmanager sends a whole alert group in one body: that endpoint takes more
        limit = ALERTS_MAX_BODY if scope.get("path") == "/api/v1/alertmanager" else MAX_BODY
        if not length.isdigit() or int(length) > limit:
            status = 413 if length.isdigit() else 400
            message = (f"the request body is larger than {limit} bytes" if status == 413
                       else "Content-Length is not a number")
            await _plain(send_with_headers, scope, status, message)
            return
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:  # noqa: BLE001 - the last resort: no client ever sees a traceback
            ref = _crash(exc, scope)
            if not started:
                await _plain(send_with_headers, scope, 500,
                             f"internal error (reference {ref}); the server's log says more. Please report it.")


async def _plain(send: Send, scope: Scope, status: int, message: str) -> None:
    """An answer made without the app: JSON under /api/, text elsewhere."""
    if str(scope.get("path", "")).startswith("/api/"):
        body, kind = json.dumps(_error_body(status, message)).encode(), b"application/json"
    else:
        body, kind = f"{status} {HTTPStatus(status).phrase}: {message}\n".encode(), b"text/plain; charset=utf-8"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _crash(exc: BaseException, scope: Scope) -> str:
    """Write the traceback to a crash file (secrets masked) and say so in one line; a reference."""
    import os
    import tempfile
    import traceback

    from ..execution.store import state_home

    ref = secrets.token_hex(4)
    text = "".join(traceback.format_exception(exc))
    redaction = sys.modules.get("engine.format.redaction")
    if redaction is not None:
        text = redaction.redact_everywhere(text)
    where = "no crash file could be written"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for folder in (state_home() / "crashes", Path(tempfile.gettempdir())):
        path = folder / f"runproc-serve-crash-{stamp}-{os.getpid()}-{ref}.txt"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(f"runproc serve: {scope.get('method')} {scope.get('path')}\n{text}")
        except OSError:
            continue
        where = f"details: {path}"
        break
    print(f"runproc serve: internal error {ref} on {scope.get('method')} {scope.get('path')}: "
          f"{type(exc).__name__} ({where}); please report it", file=sys.stderr, flush=True)
    return ref
