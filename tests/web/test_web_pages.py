"""The pages of runproc serve, rendered on the server from a state of real runs: the runs list
(filters, paging), a run (who, params, the graph as SVG coloured by status, each step with its
timings, action, result fields and undo, rollbacks, approvals), the procedure catalogue."""

from __future__ import annotations

import re
from html import unescape

from tests.helpers.web import CANARY_PARAM, History, TestClient


def _run_ids(html: str) -> list[str]:
    return re.findall(r'<a class="mono" href="/runs/([0-9a-f]{12})">', html)


def _svg(html: str) -> str:
    found = re.search(r"<svg class=\"dag\".*?</svg>", html, re.S)
    assert found, "no graph drawn"
    return found.group(0)


def test_the_runs_page_lists_every_run_newest_first(client: TestClient, history: History) -> None:
    r = client.get("/runs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    ids = _run_ids(r.text)
    assert sorted(ids) == sorted(history.every())
    assert ids[-1] == history.ids["alpha"][0]  # moved to 2021: the oldest
    assert ids[0] == history.ids["alpha"][-1]  # the last run made
    assert "page 1" in r.text and 'rel="next"' not in r.text and 'rel="prev"' not in r.text
    # each row: status as a badge, exit code when not 0, who@where, kind
    assert '<span class="badge st-failed">failed</span> <span class="exit">exit 1</span>' in r.text
    assert "alice@" in r.text and "(dry run)" in r.text
    assert '<a href="/procedures/demo">demo</a>' in r.text  # in the catalogue: linked


def test_the_runs_page_filters_by_procedure_status_user_and_date(client: TestClient, history: History) -> None:
    def ids(**params: str) -> list[str]:
        r = client.get("/runs", params=params)
        assert r.status_code == 200, r.text
        return _run_ids(r.text)

    assert ids(procedure="demo") == history.ids["demo"]
    assert sorted(ids(status="failed")) == sorted(history.ids["demo"] + history.ids["canary"])
    assert ids(status="planned") == history.ids["planned"]
    assert ids(user="alice") == [history.ids["alpha"][1]]
    recent = ids(since="7d")
    assert history.ids["alpha"][0] not in recent and len(recent) == len(history.every()) - 1
    assert history.ids["alpha"][0] in ids(since="2021-01-01")
    assert ids(since="2021-06-01T00:00:01Z") == recent  # the 2021 run started a second before
    assert ids(procedure="alpha", status="ok", since="7d") == [history.ids["alpha"][2], history.ids["alpha"][1]]
    assert ids(procedure="nothing-like-it") == []
    # empty fields (an HTML form sends them all) are no filter; the form keeps what was asked
    assert len(ids(procedure="", status="", user="", since="")) == len(history.every())
    r = client.get("/runs", params={"status": "failed", "user": "root"})
    assert '<option value="failed" selected>' in r.text and 'name="user" value="root"' in r.text
    assert "No runs match" in client.get("/runs", params={"user": "nobody"}).text


def test_the_runs_page_pages_with_links_that_keep_the_filters(client: TestClient, history: History) -> None:
    every = _run_ids(client.get("/runs").text)
    first = client.get("/runs", params={"limit": "3"})
    assert _run_ids(first.text) == every[:3]
    link = re.search(r'<a rel="next" href="([^"]+)"', first.text)
    assert link and unescape(link.group(1)) == "/runs?limit=3&page=2"
    second = client.get(unescape(link.group(1)))
    assert _run_ids(second.text) == every[3:6] and 'rel="prev" href="/runs?limit=3"' in second.text
    last = client.get("/runs", params={"limit": "3", "page": "3"})
    assert _run_ids(last.text) == every[6:] and 'rel="next"' not in last.text
    beyond = client.get("/runs", params={"limit": "3", "page": "9"})
    assert beyond.status_code == 200 and "No runs recorded on page 9" in beyond.text
    filtered = client.get("/runs", params={"procedure": "alpha", "limit": "1"})
    link = re.search(r'<a rel="next" href="([^"]+)"', filtered.text)
    assert link and unescape(link.group(1)) == "/runs?procedure=alpha&limit=1&page=2"


def test_a_run_page_shows_who_what_the_graph_each_step_rollbacks_and_approvals(client: TestClient,
                                                                               history: History) -> None:
    run_id = history.ids["demo"][0]
    r = client.get(f"/runs/{run_id}")
    assert r.status_code == 200
    html = r.text
    # the header: who started it, when, status
    assert f'<span class="mono">{run_id}</span> <span class="badge st-failed">failed</span>' in html
    assert re.search(r"<dt>Started by</dt><dd>\w[^<]* on [^<]+ \(pid \d+\)</dd>", html)
    assert "<dt>Status</dt><dd>failed (exit 1)</dd>" in html
    assert re.search(r"<dt>Started</dt><dd title=\"\d{4}-\d\d-\d\dT[\d:.]+Z\">", html)
    assert '<th>version</th><td class="mono">1.4.2</td>' in html
    assert "step rollout failed" in html and '<a href="#step-rollout">rollout</a>' in html
    # the graph: a node per step, coloured by its status, an edge per need, the names as labels
    svg = _svg(html)
    nodes = {sid: status for status, sid in re.findall(r'<g class="node st-(\w+)" data-step="(\w+)">', svg)}
    assert nodes == {"prepare": "rolled_back", "migrate": "ok", "check": "ok", "approve": "ok", "rollout": "failed"}
    assert len(re.findall(r'<path class="edge"', svg)) == 5
    assert "Prepare the release" in svg
    rows = {sid: float(y) for y, sid in re.findall(r'<rect x="\d+" y="(\d+)"[^>]*/>\s*<text[^>]*>([^<]+)</text>', svg)}
    assert rows["Prepare the release"] < rows["migrate"] == rows["check"] < rows["approve"] < rows["rollout"]
    # each step: status, timings, attempts, the rendered action, its result fields, its undo
    prepare = html[html.index('id="step-prepare"'):html.index('id="step-migrate"')]
    assert "<dt>Attempts</dt><dd>1</dd>" in prepare and "<dt>Ended</dt>" in prepare
    assert '<pre class="action">echo preparing 1.4.2</pre>' in prepare
    assert "<summary>stdout</summary>" in prepare and "preparing 1.4.2" in prepare
    assert "<h4>Rollback" in prepare and '<pre class="action">echo undoing prepare</pre>' in prepare
    rollout = html[html.index('id="step-rollout"'):]
    assert "command exited with 3" in rollout and "image pull failed" in rollout
    # rollbacks and approvals
    assert '<dt>Rolled back</dt><dd><a href="#step-prepare">prepare</a></dd>' in html
    assert "<dt>Kept (no rollback defined)</dt><dd>migrate</dd>" in html
    approvals = html[html.index("<h2>Approvals</h2>"):]
    assert '<td><a href="#step-approve">approve</a></td><td>approved</td>' in approvals and "--yes" in approvals
    assert "<summary>Journal (" in html and "step_started" in html


def test_a_fanned_out_step_shows_each_host(client: TestClient, history: History) -> None:
    html = client.get(f"/runs/{history.ids['fanout'][0]}").text
    for host in ("web-1", "web-2"):
        row = html[html.index(f'id="step-each-host-{host}"'):].split("</tr>")[0]
        assert '<span class="badge st-ok">ok</span>' in row and f'<td class="mono">echo on {host}</td>' in row
        assert f"<summary>host {host}: result fields</summary>" in html
    assert "on web-2\n" in html or "on web-2" in html
    steps = client.get(f"/api/v1/runs/{history.ids['fanout'][0]}/steps").json()["steps"]
    hosts = {h["host"]: h for h in steps[0]["hosts"]}
    assert set(hosts) == {"web-1", "web-2"} and hosts["web-2"]["fields"]["stdout"] == "on web-2\n"
    assert hosts["web-1"]["status"] == "ok" and hosts["web-1"]["ended_at"] >= hosts["web-1"]["started_at"]


def test_a_run_prefix_redirects_to_the_run_and_the_api_answers_for_it(client: TestClient, history: History) -> None:
    run_id = history.ids["demo"][0]
    r = client.get(f"/runs/{run_id[:6]}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/runs/{run_id}"


def test_a_dry_run_and_a_run_without_its_file_still_render(client: TestClient, history: History) -> None:
    planned = client.get(f"/runs/{history.ids['planned'][0]}")
    assert planned.status_code == 200
    assert "not recorded (only a real run records its params)" in planned.text and "(dry run)" in planned.text
    assert 'class="node st-' in _svg(planned.text)


def test_markup_in_a_description_or_an_output_is_text(client: TestClient, history: History) -> None:
    run = client.get(f"/runs/{history.ids['markup'][0]}").text
    assert "<script>" not in run
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in run
    catalogue = client.get("/procedures").text
    assert "<b>bold</b>" not in catalogue and "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;i&gt;friends&lt;/i&gt;" in catalogue


def test_the_catalogue_lists_each_file_its_params_and_last_run_and_an_invalid_one(client: TestClient,
                                                                                  history: History) -> None:
    r = client.get("/procedures")
    assert r.status_code == 200
    html = r.text
    for name in ("alpha", "canary", "demo", "markup"):
        assert f'<a href="/procedures/{name}">{name}</a>' in html
    assert "A demo with a graph, a rollback, an approval and a failure" in html and "owner: platform" in html
    assert '<span class="param mono">version:str</span>' in html
    demo_row = html[html.index('<a href="/procedures/demo">'):]
    assert f'<a href="/runs/{history.ids["demo"][0]}"><span class="badge st-failed">failed</span></a>' in demo_row
    broken = html[html.index("<td>broken</td>"):]
    assert "invalid:" in broken.split("</tr>")[0] and "broken.yml" in broken.split("</tr>")[0]


def test_a_procedure_page_shows_its_params_graph_and_last_runs(client: TestClient, history: History) -> None:
    r = client.get("/procedures/demo")
    assert r.status_code == 200
    html = r.text
    assert "A demo with a graph" in html and "<dt>Lock</dt>" in html
    assert '<td class="mono">version</td>' in html and "the version to deploy" in html
    svg = _svg(html)
    assert len(re.findall(r'<g class="node', svg)) == 5 and len(re.findall(r'class="edge"', svg)) == 5
    assert '<text x="' in svg and ">confirm</text>" in svg  # a node's second line: its executor
    assert _run_ids(html) == history.ids["demo"]
    assert 'href="/runs?procedure=demo"' in html
    canary = client.get("/procedures/canary").text
    assert '<td class="mono">token <span class="secret">secret</span></td>' in canary
    assert CANARY_PARAM not in canary and '<td class="mono">***</td>' in canary


def test_pages_link_their_stylesheet_and_script_served_by_runproc_itself(client: TestClient) -> None:
    html = client.get("/runs").text
    assert re.search(r'<link rel="stylesheet" href="/static/runproc\.css\?v=[^"]+">', html)
    # one script, runproc's own: no CDN, no inline code
    assert re.findall(r"<script[^>]*>", html) == [re.search(r'<script src="/static/live\.js\?v=[^"]+" defer>',
                                                           html).group(0)]
    assert "http://" not in html and "https://" not in html
    js = client.get("/static/live.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in js.text and len(js.text.splitlines()) < 150 and "innerHTML" not in js.text
    css = client.get("/static/runproc.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ".st-failed" in css.text and "svg.dag" in css.text
    assert client.get("/", follow_redirects=False).headers["location"] == "/runs"
