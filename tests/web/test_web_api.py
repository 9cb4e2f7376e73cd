"""The JSON API under /api/v1: the pages' data, the same filters and paging, 4xx with a clear
message for bad input (never a traceback), and an OpenAPI document naming every route."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from starlette.routing import Route

from engine.web.data import STATUSES
from tests.helpers.web import History, TestClient


def _error(client: TestClient, url: str, code: int, *words: str, params: dict[str, str] | None = None) -> str:
    r = client.get(url, params=params)
    assert r.status_code == code, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and body["error"]["status"] == code
    message = str(body["error"]["message"])
    assert "Traceback" not in r.text and "\n" not in message
    for word in words:
        assert word in message, message
    return message


def test_runs_lists_filters_and_pages_like_the_page(client: TestClient, history: History) -> None:
    body = client.get("/api/v1/runs").json()
    assert body["page"] == 1 and body["limit"] == 50 and body["next"] is None and body["prev"] is None
    runs = body["runs"]
    assert len(runs) == len(history.every()) and runs[0]["id"] == history.ids["alpha"][-1]
    first = runs[0]
    assert {"id", "procedure", "status", "started_at", "exit_code", "dry_run", "duration", "user", "host", "kind",
            "url", "page"} <= set(first)
    assert first["url"] == f"/api/v1/runs/{first['id']}" and first["page"] == f"/runs/{first['id']}"

    def ids(**params: str) -> list[str]:
        r = client.get("/api/v1/runs", params=params)
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()["runs"]]

    assert ids(procedure="demo") == history.ids["demo"]
    assert ids(status="planned") == history.ids["planned"]
    assert ids(user="alice") == [history.ids["alpha"][1]]
    assert history.ids["alpha"][0] not in ids(since="30d")
    page = client.get("/api/v1/runs", params={"procedure": "alpha", "limit": "2"}).json()
    assert page["filters"] == {"procedure": "alpha"} and page["next"] == "/api/v1/runs?procedure=alpha&limit=2&page=2"
    following = client.get(page["next"]).json()
    assert following["prev"] == "/api/v1/runs?procedure=alpha&limit=2" and following["next"] is None
    assert [r["id"] for r in page["runs"] + following["runs"]] == ids(procedure="alpha")


@pytest.mark.parametrize(("params", "words"), [
    ({"status": "exploded"}, ("status", "exploded", "interrupted")),
    ({"since": "last tuesday"}, ("since", "last tuesday", "7d")),
    ({"page": "0"}, ("page", "from 1")),
    ({"page": "two"}, ("page", "'two'")),
    ({"limit": "501"}, ("limit", "to 500")),
    ({"limit": "-1"}, ("limit",)),
    ({"stauts": "failed"}, ("stauts", "unknown parameter", "status")),
    ({"procedure": "x" * 201}, ("procedure", "200")),
], ids=["status", "since", "page-0", "page-word", "limit-big", "limit-negative", "typo", "too-long"])
def test_a_bad_filter_is_a_400_naming_it(client: TestClient, params: dict[str, str], words: tuple[str, ...]) -> None:
    _error(client, "/api/v1/runs", 400, *words, params=params)
    page = client.get("/runs", params=params)  # the page says the same, as a page
    assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
    assert words[0] in page.text and "Traceback" not in page.text


def test_one_run_its_steps_and_404_for_an_unknown_one(client: TestClient, history: History) -> None:
    run_id = history.ids["demo"][0]
    run = client.get(f"/api/v1/runs/{run_id}").json()
    assert run["run_id"] == run_id and run["status"] == "failed" and run["exit_code"] == 1
    assert run["user"] and run["host"] and run["pid"] and run["kind"] == "run"
    assert run["params"] == {"version": "1.4.2"} and run["rolled_back"] == ["prepare"]
    assert [a["step"] for a in run["approvals"]] == ["approve"] and run["approvals"][0]["approved"] is True
    assert {n["id"]: n["status"] for n in run["graph"]["nodes"]} == {
        "prepare": "rolled_back", "migrate": "ok", "check": "ok", "approve": "ok", "rollout": "failed"}
    assert sorted(map(tuple, run["graph"]["edges"])) == [("approve", "rollout"), ("check", "approve"),
                                                         ("migrate", "approve"), ("prepare", "check"),
                                                         ("prepare", "migrate")]
    assert "journal" not in run and "timeline" not in run
    by_prefix = client.get(f"/api/v1/runs/{run_id[:5]}").json()
    assert by_prefix["run_id"] == run_id

    steps = client.get(f"/api/v1/runs/{run_id}/steps").json()
    assert steps["run_id"] == run_id and [s["id"] for s in steps["steps"]] == [s["id"] for s in run["steps"]]
    prepare = next(s for s in steps["steps"] if s["id"] == "prepare")
    assert prepare["status"] == "rolled_back" and prepare["attempts"] == 1 and prepare["ended_at"] > prepare["started_at"]
    assert prepare["action"] == "echo preparing 1.4.2" and prepare["fields"]["stdout"] == "preparing 1.4.2\n"
    assert prepare["rollback"]["status"] == "ok" and prepare["rollback"]["action"] == "echo undoing prepare"

    _error(client, "/api/v1/runs/0123456789ab", 404, "no run '0123456789ab'")
    _error(client, "/api/v1/runs/0123456789ab/steps", 404, "no run")
    _error(client, "/api/v1/runs/%3Cscript%3E", 404, "no run")
    page = client.get("/runs/0123456789ab")
    assert page.status_code == 404 and "no run &#39;0123456789ab&#39;" in page.text


def test_procedures_and_one_procedure(client: TestClient, history: History) -> None:
    body = client.get("/api/v1/procedures").json()
    assert body["folder"] == str(history.procedures)
    by_name = {p["name"]: p for p in body["procedures"]}
    assert set(by_name) == {"alpha", "broken", "canary", "demo", "fanout", "markup"}
    assert by_name["broken"]["ok"] is False and "broken.yml" in by_name["broken"]["problem"]
    assert by_name["broken"]["url"] is None and by_name["demo"]["url"] == "/api/v1/procedures/demo"
    demo = client.get("/api/v1/procedures/demo").json()
    assert demo["description"].startswith("A demo") and demo["owner"] == "platform" and demo["lock"] == "demo"
    assert demo["params"] == [{"name": "version", "type": "str", "required": False, "default": "1.4.2",
                               "choices": None, "pattern": None, "min": None, "max": None,
                               "help": "the version to deploy", "secret": False}]
    assert [(s["id"], s["executor"], s["needs"]) for s in demo["steps"]] == [
        ("prepare", "shell", []), ("migrate", "shell", ["prepare"]), ("check", "shell", ["prepare"]),
        ("approve", "confirm", ["migrate", "check"]), ("rollout", "shell", ["approve"])]
    assert [r["id"] for r in demo["last_runs"]] == history.ids["demo"]
    assert len(demo["graph"]["nodes"]) == 5 and len(demo["graph"]["edges"]) == 5
    _error(client, "/api/v1/procedures/nope", 404, "no procedure 'nope'")
    _error(client, "/api/v1/procedures/broken", 404, "no procedure 'broken'")  # invalid: nothing to show


def test_unknown_paths_and_methods_are_answered_in_json_under_the_api(client: TestClient) -> None:
    _error(client, "/api/v1/nothing", 404, "/api/v1/nothing", "openapi.json")
    r = client.post("/api/v1/runs", json={})
    assert r.status_code == 405 and r.json()["error"]["message"] == "POST is not allowed on /api/v1/runs"
    page = client.get("/no/such/page")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")


def test_the_openapi_document_names_every_api_route_and_validates_answers(client: TestClient,
                                                                         history: History) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    routes = {(r.path, m.lower()) for r in client.app.routes  # type: ignore[attr-defined]
              if isinstance(r, Route) and r.path.startswith("/api/") for m in r.methods or () if m != "HEAD"}
    assert {(path, method) for path, ops in doc["paths"].items() for method in ops} == routes
    assert doc["paths"]["/api/v1/runs"]["get"]["parameters"][1]["schema"]["enum"] == list(STATUSES)
    # the answers match their schemas (references resolved against the document itself)
    schemas = doc["components"]["schemas"]

    def check(instance: Any, name: str) -> None:
        jsonschema.validate(instance, {"$ref": f"#/components/schemas/{name}", "components": doc["components"]})

    run_id = history.ids["demo"][0]
    check(client.get("/api/v1/runs").json(), "RunPage")
    check(client.get(f"/api/v1/runs/{run_id}").json(), "Run")
    check(client.get(f"/api/v1/runs/{run_id}/steps").json(), "RunSteps")
    check(client.get("/api/v1/procedures").json(), "Catalogue")
    check(client.get("/api/v1/procedures/demo").json(), "Procedure")
    check(client.get("/api/v1/runs/0123456789ab").json(), "Error")
    check(client.get(f"/api/v1/runs/{run_id}/approvals").json(), "Approvals")
    assert set(schemas) >= {"RunPage", "Run", "RunSteps", "Catalogue", "Procedure", "Error"}
