"""The OpenAPI document of ``/api/v1``, written by hand: a short dict that says exactly what
the endpoints return (a test checks that it names every API route the app has, and no other)."""

from __future__ import annotations

from typing import Any

from ..version import __version__
from .data import DEFAULT_LIMIT, MAX_LIMIT, STATUSES

_ERROR = {"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _error(description: str) -> dict[str, Any]:
    return {**_ERROR, "description": description}


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _stream(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/event-stream": {"schema": {"type": "string"}}}}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


_RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"},
           "description": "a run id (12 hex digits) or its first characters"}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "a procedure's name (its procedure: key)"}
_AUTH = {"401": _error("a token is configured and none (or a bad one) was given"),
         "403": _error("the token's role may not do this")}
_NULLABLE_STRING = {"type": ["string", "null"]}
_STEP = {"name": "step", "in": "path", "required": True, "schema": {"type": "string"}, "description": "a step id"}
_ACTIONS = {
    "resume": "Resume the run (runproc resume RUN): the steps not recorded ok run, with the recorded params",
    "retry": "Retry from a step (runproc resume RUN --from STEP): it and every step that needs it run again",
    "rollback": "Roll back what the run completed (runproc rollback RUN --yes)",
    "cancel": "Cancel a running run of this server's machine: SIGINT to its process, as Ctrl-C (it stops and "
              "rolls back)",
}


def _action(action: str, text: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"dry_run": {"type": "boolean", "default": False,
                                          "description": "true: what would be done, and nothing done"}}
    if action == "retry":
        fields["step"] = {"type": "string", "description": "the step to retry from"}
    if action != "cancel":
        fields["params"] = {"type": "object", "description": "the run's secret params, given again (it "
                                                             "recorded only their hash)"}
        fields["inflight"] = {"type": "string", "enum": ["again", "skip"], "description": "a step in flight "
                              "when the run stopped: run (undo) it again, or leave it"}
    return {
        "summary": f"{text}. A token with the operator role (with no tokens configured: 401); started as a "
                   "runproc process of its own, recorded as the token's holder; audited, done or refused",
        "operationId": f"{action}Run",
        "parameters": [_RUN_ID],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["step"] if action == "retry" else [], "properties": fields}}}},
        "responses": {"200": {"description": "dry_run: what would be done (ActionPreview); else done without a "
                                             "new run (a cancel, or nothing left to undo: ActionDone)",
                              "content": {"application/json": {"schema": {"oneOf": [
                                  {"$ref": "#/components/schemas/ActionPreview"},
                                  {"$ref": "#/components/schemas/ActionDone"}]}}}},
                      "201": _ok("started: the new run", "ActionDone"),
                      "400": _error("a bad body, a missing secret param or in-flight choice"),
                      "401": _error("no token (a token is always needed for an action)"),
                      "403": _error("the token's role may not do this"), "404": _error("no such run"),
                      "409": _error("not possible on this run now (the message says why)"),
                      "415": _error("the body is not JSON"),
                      "502": _error("runproc could not be started")},
    }


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "runproc serve", "version": __version__,
                 "description": "Recorded runs and the procedure catalogue of a runproc state (docs/web.md). "
                                "Times are ISO 8601 in UTC. With tokens configured, send "
                                "`Authorization: Bearer TOKEN`."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {}],
        "paths": {
            "/api/v1/runs": {"get": {
                "summary": "Recorded runs, newest first, filtered and paged",
                "operationId": "listRuns",
                "parameters": [
                    _query("procedure", "only runs of this procedure", {"type": "string"}),
                    _query("status", "only runs with this status", {"type": "string", "enum": list(STATUSES)}),
                    _query("user", "only runs started by this OS user", {"type": "string"}),
                    _query("since", "only runs started at or after: an ISO date or time (UTC unless it names "
                                    "its zone) or a time ago (7d, 12h, 30m)", {"type": "string"}),
                    _query("page", "page number, 1 is the newest", {"type": "integer", "minimum": 1, "default": 1}),
                    _query("limit", "runs a page", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                                    "default": DEFAULT_LIMIT}),
                ],
                "responses": {"200": _ok("one page of runs", "RunPage"),
                              "400": _error("an unknown parameter or a value that cannot be read"), **_AUTH},
            }},
            "/api/v1/runs/{run_id}": {"get": {
                "summary": "One run: its report (redacted), who started it, params, approvals, replays, graph",
                "operationId": "getRun",
                "parameters": [_RUN_ID],
                "responses": {"200": _ok("the run", "Run"), "404": _error("no such run"), **_AUTH},
            }},
            "/api/v1/runs/{run_id}/steps": {"get": {
                "summary": "A run's steps: status, timings, attempts, hosts, rendered action, result fields, undo",
                "operationId": "getRunSteps",
                "parameters": [_RUN_ID],
                "responses": {"200": _ok("the steps", "RunSteps"), "404": _error("no such run"), **_AUTH},
            }},
            "/api/v1/runs/{run_id}/steps/{step}/logs": {"get": {
                "summary": "What a step printed: while it runs, the output journaled so far (within about a "
                           "second); once it ended, its result's streams as the state keeps them and its whole "
                           "log files when they are on this server's machine",
                "operationId": "getStepLogs",
                "parameters": [_RUN_ID, _STEP, _query("after", "only output journaled after this entry (poll "
                                                               "with the last seq seen)",
                                                      {"type": "integer", "minimum": 0, "default": 0})],
                "responses": {"200": _ok("the step's output", "StepLogs"), "400": _error("a bad after"),
                              "404": _error("no such run, or no such step in it"), **_AUTH},
            }},
            "/api/v1/runs/{run_id}/steps/{step}/logs/{stream}": {"get": {
                "summary": "One stream of a finished step as text: its whole log file when the state's logs "
                           "folder has it (redacted), else what the state keeps (capped by RUNPROC_OUTPUT_CAP)",
                "operationId": "getStepLogFile",
                "parameters": [_RUN_ID, _STEP,
                               {"name": "stream", "in": "path", "required": True, "description": "stdout or stderr",
                                "schema": {"type": "string", "enum": ["stdout", "stderr", "text"]}},
                               _query("host", "a fanned-out step's host", {"type": "string"})],
                "responses": {"200": {"description": "the text",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}},
                              "404": _error("no such run, step or stream"), **_AUTH},
            }},
            "/api/v1/runs/{run_id}/audit": {"get": {
                "summary": "What was done (or refused) to a run through runproc serve, newest first",
                "operationId": "getRunAudit",
                "parameters": [_RUN_ID],
                "responses": {"200": _ok("the run's audit", "RunAudit"), "404": _error("no such run"), **_AUTH},
            }},
            "/api/v1/audit": {"get": {
                "summary": "The audit of runproc serve: every action done or refused (start, approve, reject, "
                           "resume, retry, rollback, cancel), newest first",
                "operationId": "getAudit",
                "parameters": [_query("limit", "entries", {"type": "integer", "minimum": 1, "maximum": 1000,
                                                           "default": 100})],
                "responses": {"200": _ok("the audit", "Audit"), "400": _error("a bad limit"), **_AUTH},
            }},
            **{f"/api/v1/runs/{{run_id}}/{action}": {"post": _action(action, text)}
               for action, text in _ACTIONS.items()},
            "/api/v1/runs/{run_id}/events": {"get": {
                "summary": "A run's journal as it is committed, as server-sent events (text/event-stream)",
                "description": "Events: `run` {status, exit_code, ended_at} first and at each change; `journal` "
                               "{seq, at, event, step, host, data} for each entry (step_started, step_finished, "
                               "host_started, host_finished, rollback_started, rollback_finished, waiting, "
                               "approval, and output {stream, text}: a running step's output, within about a "
                               "second), its id the entry's seq; `end` {status, seq} once the run has ended and "
                               "every entry was sent (the stream then closes). Redacted as the journal is.",
                "operationId": "followRun",
                "parameters": [_RUN_ID, _query("after", "start after this journal entry (a browser that "
                                                        "reconnects sends Last-Event-ID instead)",
                                               {"type": "integer", "minimum": 0, "default": 0})],
                "responses": {"200": _stream("the run's events"), "400": _error("a bad after"),
                              "404": _error("no such run"), **_AUTH},
            }},
            "/api/v1/runs/{run_id}/approvals": {
                "get": {
                    "summary": "A run's answered confirm steps and those waiting for an answer",
                    "operationId": "getRunApprovals",
                    "parameters": [_RUN_ID],
                    "responses": {"200": _ok("answers and questions", "Approvals"), "404": _error("no such run"),
                                  **_AUTH},
                },
                "post": {
                    "summary": "Answer a confirm step the run waits on (a token with the approver role; with no "
                               "tokens configured: 401). Recorded with who, when and how (api), and the comment",
                    "operationId": "answerConfirm",
                    "parameters": [_RUN_ID],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["step", "approved"], "properties": {
                            "step": {"type": "string"}, "approved": {"type": "boolean"},
                            "comment": {"type": ["string", "null"], "maxLength": 1000}}}}}},
                    "responses": {"201": _ok("the answer as recorded", "Answer"),
                                  "400": _error("a body that is not {step, approved, comment}"),
                                  "401": _error("no token (a token is always needed to answer through the API)"),
                                  "403": _error("the token's role may not answer, or the step's four_eyes or "
                                                "approvers refuse this user"),
                                  "404": _error("no such run"),
                                  "409": _error("the run does not wait on that step (ended, not asking, or answered "
                                                "already)"),
                                  "415": _error("the body is not JSON")},
                },
            },
            "/api/v1/runs/events": {"get": {
                "summary": "The runs list, live: a `run` event (a RunSummary) for each run that starts or "
                           "changes status; first the runs still going and those started in the last minute",
                "operationId": "followRuns",
                "responses": {"200": _stream("the runs' events"), "400": _error("an unknown parameter"), **_AUTH},
            }},
            "/api/v1/procedures": {"get": {
                "summary": "The procedure catalogue (runproc serve --procedures DIR)",
                "operationId": "listProcedures",
                "responses": {"200": _ok("the catalogue", "Catalogue"), **_AUTH},
            }},
            "/api/v1/procedures/{name}": {"get": {
                "summary": "One procedure: description, params, steps and their needs, last runs",
                "operationId": "getProcedure",
                "parameters": [_NAME],
                "responses": {"200": _ok("the procedure", "Procedure"), "404": _error("no such procedure"), **_AUTH},
            }},
            "/api/v1/procedures/{name}/runs": {"post": {
                "summary": "Start a run or a dry run of a catalogued procedure, as the token's holder (a token with "
                           "the operator role; with no tokens configured: 401). The params are checked as the "
                           "command line checks them, then `runproc FILE --state ...` starts in the background",
                "operationId": "startRun",
                "parameters": [_NAME],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "properties": {
                        "params": {"type": "object", "description": "name: value, typed as in a params file"},
                        "dry_run": {"type": "boolean", "default": False}}}}}},
                "responses": {"201": _ok("started: its id and page", "Started"),
                              "202": _ok("started, not recorded yet after 30 s (run_id null)", "Started"),
                              "400": _error("bad params (the command line's messages) or body"),
                              "401": _error("no token (a token is always needed to start a run)"),
                              "403": _error("the token's role may not start runs"),
                              "404": _error("no such procedure"), "415": _error("the body is not JSON"),
                              "502": _error("runproc ended without recording a run (its last line)")},
            }},
            "/api/v1/schedules": {"get": {
                "summary": "The schedules (runproc schedule add, and the schedule: of the catalogue's procedures), "
                           "each with its next three fire times (UTC) and its last slots: fired (with the run), "
                           "skipped, queued, missed or failed",
                "operationId": "listSchedules",
                "responses": {"200": _ok("the schedules", "Schedules"), "400": _error("an unknown parameter"),
                              **_AUTH},
            }},
            "/api/v1/alertmanager": {
                "get": {
                    "summary": "The Alertmanager rules (runproc serve --triggers FILE) and the alert groups seen",
                    "operationId": "listAlertRules",
                    "responses": {"200": _ok("the rules and groups", "AlertRules"),
                                  "400": _error("an unknown parameter"), **_AUTH},
                },
                "post": {
                    "summary": "Alertmanager's webhook receiver (version 4). The first rule matching the group's "
                               "common labels starts its procedure, once while the group fires; a repeat of a "
                               "firing group starts nothing; a resolved group may start again when it fires anew. "
                               "A token with the operator role (with no tokens configured: 401)",
                    "operationId": "receiveAlerts",
                    "parameters": [_query("dry_run", "true: say what would be started; start and record nothing",
                                          {"type": "string", "enum": ["true", "false"], "default": "false"})],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["version", "status", "groupKey", "alerts"], "properties": {
                            "version": {"type": "string", "const": "4"},
                            "status": {"type": "string", "enum": ["firing", "resolved"]},
                            "groupKey": {"type": "string"}, "receiver": {"type": "string"},
                            "groupLabels": {"type": "object"}, "commonLabels": {"type": "object"},
                            "commonAnnotations": {"type": "object"}, "externalURL": {"type": "string"},
                            "alerts": {"type": "array", "minItems": 1, "items": {"type": "object",
                                                                             "required": ["labels"]}}}}}}},
                    "responses": {"200": _ok("nothing started: ignored (no rule matches), deduplicated (the group "
                                             "has its run), resolved, or would_start (dry_run)", "AlertAnswer"),
                                  "201": _ok("a run started for this group", "AlertAnswer"),
                                  "400": _error("not Alertmanager's webhook JSON (version 4)"),
                                  "401": _error("no token (a token is always needed)"),
                                  "403": _error("the token's role may not start runs"),
                                  "404": _error("no --triggers file, or the rule's procedure left the catalogue"),
                                  "413": _error("a body over 1 MiB (set max_alerts in Alertmanager)"),
                                  "415": _error("the body is not JSON"),
                                  "422": _error("the rule's params for this group are refused (a template or a "
                                                "value: the command line's message)"),
                                  "502": _error("runproc ended without recording a run")},
                },
            },
            "/api/v1/openapi.json": {"get": {
                "summary": "This document", "operationId": "openapi",
                "responses": {"200": {"description": "the OpenAPI document",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}, **_AUTH},
            }},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "a token made by runproc serve token add"}},
            "schemas": _schemas(),
        },
    }


def _schemas() -> dict[str, Any]:
    run_summary = {
        "type": "object",
        "required": ["id", "procedure", "status", "started_at", "url"],
        "properties": {
            "id": {"type": "string"}, "procedure": _NULLABLE_STRING,
            "status": {"type": "string", "enum": list(STATUSES)},
            "started_at": _NULLABLE_STRING, "exit_code": {"type": ["integer", "null"]},
            "dry_run": {"type": "boolean"}, "duration": {"type": ["number", "null"]},
            "user": _NULLABLE_STRING, "host": _NULLABLE_STRING,
            "kind": {"type": "string", "enum": ["run", "resume", "rollback"]},
            "url": {"type": "string", "description": "this run in the API"},
            "page": {"type": "string", "description": "this run's page"},
        },
    }
    step = {
        "type": "object",
        "required": ["id", "status", "phase"],
        "properties": {
            "id": {"type": "string"}, "status": {"type": "string"},
            "phase": {"type": "string", "description": "step, finally, on_failure"},
            "started_at": _NULLABLE_STRING, "ended_at": _NULLABLE_STRING,
            "duration": {"type": ["number", "null"]}, "attempts": {"type": ["integer", "null"]},
            "action": {"type": ["string", "null"], "description": "the rendered action, redacted"},
            "error": _NULLABLE_STRING, "notes": {"type": "array", "items": {"type": "string"}},
            "hosts": {"type": "array", "items": {"type": "object"}, "description": "a fanned-out step's hosts"},
            "rollback": {"type": ["object", "null"], "description": "its undo, as a step"},
            "fields": {"type": "object", "description": "its result fields (rc, stdout, stderr, rows, json...)"},
            "output": {"type": "array", "items": {"type": "object"},
                       "description": "a step without a result yet (running, or interrupted): what it printed so "
                                      "far, as journaled ({seq, at, host, stream, text})"},
        },
    }
    audit_entry = {"type": "object", "required": ["id", "at", "action", "result"], "properties": {
        "id": {"type": ["integer", "null"]}, "at": {"type": "string"}, "user": _NULLABLE_STRING,
        "role": _NULLABLE_STRING, "action": {"type": "string", "description": "start, approve, reject, answer, "
                                                                               "resume, retry, rollback, cancel"},
        "run_id": _NULLABLE_STRING, "step": _NULLABLE_STRING,
        "result": {"type": "string", "description": "started, recorded, signalled, nothing to do, refused (STATUS)"},
        "detail": _NULLABLE_STRING, "via": _NULLABLE_STRING, "host": _NULLABLE_STRING,
        "new_run": {"type": ["string", "null"], "description": "the run it started"}}}
    graph = {"type": "object", "properties": {
        "nodes": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "string"}, "label": {"type": "string"}, "status": {"type": "string"}}}},
        "edges": {"type": "array", "items": {"type": "array", "items": {"type": "string"}, "minItems": 2,
                                             "maxItems": 2}, "description": "[needed step, step that needs it]"},
        "source": _NULLABLE_STRING, "note": _NULLABLE_STRING, "dependencies_known": {"type": "boolean"}}}
    waiting = {"type": "object", "required": ["step", "message", "request"], "properties": {
        "step": {"type": "string"}, "message": _NULLABLE_STRING, "request": {"type": "integer"},
        "approvers": {"type": "array", "items": {"type": "string"}}, "four_eyes": {"type": "boolean"},
        "started_by": _NULLABLE_STRING, "since": _NULLABLE_STRING,
        "until": {"type": ["string", "null"], "description": "when the step times out, if it does"}}}
    param = {"type": "object", "properties": {
        "name": {"type": "string"}, "type": {"type": "string"}, "required": {"type": "boolean"},
        "default": {"description": "*** for a secret"}, "choices": {"type": ["array", "null"]},
        "pattern": _NULLABLE_STRING, "min": {"type": ["number", "null"]}, "max": {"type": ["number", "null"]},
        "help": {"type": "string"}, "secret": {"type": "boolean"}}}
    procedure_summary = {"type": "object", "required": ["name", "file", "ok"], "properties": {
        "name": {"type": "string"}, "file": {"type": "string"}, "ok": {"type": "boolean"},
        "problem": {"type": ["string", "null"], "description": "the first problem of an invalid file"},
        "description": {"type": "string"}, "owner": {"type": "string"},
        "params": {"type": "array", "items": {"$ref": "#/components/schemas/Param"}},
        "url": _NULLABLE_STRING}}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["status", "message"],
            "properties": {"status": {"type": "integer"}, "message": {"type": "string"}}}}},
        "RunSummary": run_summary,
        "RunPage": {"type": "object", "required": ["runs", "page", "limit", "next", "prev"], "properties": {
            "runs": {"type": "array", "items": {"$ref": "#/components/schemas/RunSummary"}},
            "page": {"type": "integer"}, "limit": {"type": "integer"},
            "filters": {"type": "object", "additionalProperties": {"type": "string"}},
            "next": {"type": ["string", "null"], "description": "the next (older) page, when there is one"},
            "prev": {"type": ["string", "null"], "description": "the previous (newer) page"}}},
        "Step": step,
        "Graph": graph,
        "Run": {"type": "object", "required": ["run_id", "procedure", "status", "steps"],
                "description": "the run's report as recorded (redacted) and what the state knows beside it",
                "properties": {
                    "run_id": {"type": "string"}, "procedure": {"type": "string"}, "status": {"type": "string"},
                    "exit_code": {"type": ["integer", "null"]}, "dry_run": {"type": "boolean"},
                    "started_at": _NULLABLE_STRING, "ended_at": _NULLABLE_STRING,
                    "duration": {"type": ["number", "null"]}, "user": _NULLABLE_STRING, "host": _NULLABLE_STRING,
                    "pid": {"type": ["integer", "null"]}, "kind": {"type": "string"}, "of_run": _NULLABLE_STRING,
                    "params": {"type": ["object", "null"], "description": "a secret param only as ***"},
                    "error": _NULLABLE_STRING, "root_cause": _NULLABLE_STRING,
                    "rolled_back": {"type": "array", "items": {"type": "string"}},
                    "not_undone": {"type": "array", "items": {"type": "string"}},
                    "kept": {"type": "array", "items": {"type": "string"}},
                    "approvals": {"type": "array", "items": {"type": "object"}},
                    "replays": {"type": "array", "items": {"type": "object"}},
                    "steps": {"type": "array", "items": {"$ref": "#/components/schemas/Step"}},
                    "graph": {"$ref": "#/components/schemas/Graph"},
                    "waiting": {"type": "array", "items": {"$ref": "#/components/schemas/Waiting"}},
                    "live_seq": {"type": ["integer", "null"], "description": "a run still going: the journal "
                                 "entry this answer shows everything up to (follow /events?after= from it)"}}},
        "Answer": {"type": "object", "required": ["run_id", "step", "approved", "by", "how", "at"], "properties": {
            "run_id": {"type": "string"}, "step": {"type": "string"}, "approved": {"type": "boolean"},
            "by": {"type": "string"}, "role": _NULLABLE_STRING, "how": {"type": "string"},
            "comment": _NULLABLE_STRING, "at": {"type": "string"}, "host": _NULLABLE_STRING}},
        "Waiting": waiting,
        "Started": {"type": "object", "required": ["run_id", "dry_run", "pid"], "properties": {
            "run_id": _NULLABLE_STRING, "dry_run": {"type": "boolean"}, "pid": {"type": "integer"},
            "url": _NULLABLE_STRING, "page": _NULLABLE_STRING}},
        "Approvals": {"type": "object", "required": ["run_id", "approvals", "waiting"], "properties": {
            "run_id": {"type": "string"},
            "approvals": {"type": "array", "items": {"type": "object", "properties": {
                "step": _NULLABLE_STRING, "approved": {"type": ["boolean", "null"]}, "by": _NULLABLE_STRING,
                "role": _NULLABLE_STRING, "how": _NULLABLE_STRING, "at": _NULLABLE_STRING,
                "comment": _NULLABLE_STRING}}},
            "waiting": {"type": "array", "items": {"$ref": "#/components/schemas/Waiting"}}}},
        "RunSteps": {"type": "object", "required": ["run_id", "steps"], "properties": {
            "run_id": {"type": "string"}, "status": {"type": "string"},
            "steps": {"type": "array", "items": {"$ref": "#/components/schemas/Step"}}}},
        "Param": param,
        "StepLogs": {"type": "object", "required": ["run_id", "step", "running", "output", "result", "files"],
                     "properties": {
                         "run_id": {"type": "string"}, "step": {"type": "string"}, "status": {"type": "string"},
                         "running": {"type": "boolean"},
                         "output": {"type": "array", "description": "journaled while the step ran (capped at "
                                    "RUNPROC_OUTPUT_CAP a stream)", "items": {"type": "object", "properties": {
                                        "seq": {"type": "integer"}, "at": _NULLABLE_STRING, "host": _NULLABLE_STRING,
                                        "stream": _NULLABLE_STRING, "text": {"type": "string"}}}},
                         "result": {"type": "array", "items": {"type": "object", "properties": {
                             "host": _NULLABLE_STRING, "stream": {"type": "string"}, "text": {"type": "string"}}}},
                         "files": {"type": "array", "items": {"type": "object", "properties": {
                             "host": _NULLABLE_STRING, "stream": {"type": "string"}, "bytes": {"type": "integer"},
                             "url": {"type": "string"}}}}}},
        "AuditEntry": audit_entry,
        "RunAudit": {"type": "object", "required": ["run_id", "audit"], "properties": {
            "run_id": {"type": "string"}, "audit": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}}}},
        "Audit": {"type": "object", "required": ["audit"], "properties": {
            "audit": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}}}},
        "ActionPreview": {"type": "object", "required": ["action", "run_id", "possible", "dry_run"], "properties": {
            "action": {"type": "string"}, "run_id": {"type": "string"}, "procedure": _NULLABLE_STRING,
            "status": _NULLABLE_STRING, "possible": {"type": "boolean"}, "why": _NULLABLE_STRING,
            "step": _NULLABLE_STRING, "steps": {"type": "array", "items": {"type": "string"}},
            "again": {"type": "array", "items": {"type": "string"}, "description": "run (again), or undone"},
            "kept": {"type": "array", "items": {"type": "string"}, "description": "not run again, or kept"},
            "in_flight": {"type": "array", "items": {"type": "string"}},
            "secret_params": {"type": "array", "items": {"type": "string"}},
            "process": {"type": ["object", "null"]}, "dry_run": {"type": "boolean"}}},
        "ActionDone": {"type": "object", "required": ["action", "run_id", "result"], "properties": {
            "action": {"type": "string"}, "run_id": {"type": "string"}, "dry_run": {"type": "boolean"},
            "result": {"type": "string", "description": "started, signalled, nothing to do"},
            "detail": _NULLABLE_STRING, "new_run": _NULLABLE_STRING, "pid": {"type": ["integer", "null"]},
            "url": _NULLABLE_STRING, "page": _NULLABLE_STRING}},
        "ProcedureSummary": procedure_summary,
        "Schedules": {"type": "object", "required": ["now", "scheduler", "schedules"], "properties": {
            "now": {"type": "string"}, "scheduler": {"type": "boolean", "description": "this server fires them"},
            "schedules": {"type": "array", "items": {"type": "object", "required": [
                "name", "procedure", "cron", "timezone", "next", "overlap", "catch_up", "source"], "properties": {
                "name": {"type": "string"}, "procedure": {"type": "string"}, "file": {"type": "string"},
                "source": {"type": "string", "enum": ["state", "file"]}, "cron": {"type": "string"},
                "timezone": {"type": "string"}, "params": {"type": "object", "description": "a secret as ***"},
                "overlap": {"type": "string", "enum": ["skip", "queue", "cancel_previous"]},
                "catch_up": {"type": "string", "enum": ["skip", "latest", "all"]},
                "next": {"type": "array", "items": {"type": "string"}, "description": "the next fire times, UTC"},
                "problem": _NULLABLE_STRING, "created_at": _NULLABLE_STRING, "created_by": _NULLABLE_STRING,
                "user": {"type": "string", "description": "who its runs are recorded as started by"},
                "last": {"type": "array", "items": {"type": "object", "properties": {
                    "slot": {"type": "string"}, "outcome": {"type": "string"}, "at": {"type": "string"},
                    "run_id": _NULLABLE_STRING, "pid": {"type": ["integer", "null"]}, "host": _NULLABLE_STRING,
                    "detail": _NULLABLE_STRING}}}}}}}},
        "AlertRules": {"type": "object", "required": ["rules", "groups"], "properties": {
            "triggers": _NULLABLE_STRING,
            "rules": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "procedure": {"type": "string"}, "match": {"type": "object"},
                "match_re": {"type": "object"}, "params": {"type": "object"}, "dry_run": {"type": "boolean"},
                "user": {"type": "string"}}}},
            "groups": {"type": "array", "items": {"type": "object", "properties": {
                "group_key": {"type": "string", "description": "the SHA-256 of Alertmanager's groupKey"},
                "rule": _NULLABLE_STRING, "status": {"type": "string"}, "run_id": _NULLABLE_STRING,
                "started_at": _NULLABLE_STRING, "updated_at": {"type": "string"}, "received_by": _NULLABLE_STRING,
                "detail": _NULLABLE_STRING}}}}},
        "AlertAnswer": {"type": "object", "required": ["status", "group", "action"], "properties": {
            "status": {"type": "string"}, "group": {"type": "string"},
            "action": {"type": "string", "enum": ["started", "deduplicated", "resolved", "ignored", "would_start"]},
            "reason": {"type": "string"}, "rule": {"type": "string"}, "procedure": {"type": "string"},
            "params": {"type": "object", "description": "as rendered; a secret as ***"},
            "dry_run": {"type": "boolean"}, "run_id": _NULLABLE_STRING, "pid": {"type": "integer"},
            "url": _NULLABLE_STRING, "page": _NULLABLE_STRING}},
        "Catalogue": {"type": "object", "required": ["folder", "procedures"], "properties": {
            "folder": _NULLABLE_STRING,
            "procedures": {"type": "array", "items": {"$ref": "#/components/schemas/ProcedureSummary"}}}},
        "Procedure": {"type": "object", "required": ["name", "file", "steps", "last_runs"], "properties": {
            **procedure_summary["properties"],
            "steps": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "name": {"type": "string"}, "executor": _NULLABLE_STRING,
                "needs": {"type": "array", "items": {"type": "string"}}}}},
            "phases": {"type": "object"}, "lock": _NULLABLE_STRING, "window": _NULLABLE_STRING,
            "sha256": {"type": "string"}, "graph": {"$ref": "#/components/schemas/Graph"},
            "last_runs": {"type": "array", "items": {"$ref": "#/components/schemas/RunSummary"}}}},
    }
