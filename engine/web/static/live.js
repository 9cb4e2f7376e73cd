/* runproc serve: live updates (docs/web.md). A run's page follows its journal as server-sent
   events: step badges, graph nodes, output, the journal table; the runs list follows the runs.
   Served by runproc itself (no CDN, no framework). Text goes in as text, never as markup. */
(function () {
  "use strict";
  var run = document.getElementById("live-run");
  var list = document.getElementById("live-runs");
  if (!run && !list) { return; }
  if (!window.EventSource) {  // no event streams in this browser: a reload now and then instead
    if (run) { setTimeout(function () { location.reload(); }, 5000); }
    return;
  }
  var reloading = false;
  function reload() {  // the server renders what is not drawn here (an approval form, the end)
    if (!reloading) { reloading = true; setTimeout(function () { location.reload(); }, 150); }
  }
  function klass(status) { return "st-" + String(status || "unknown").replace(/[^A-Za-z0-9]/g, "_"); }
  function paint(el, status, text) {  // an element's status class (an SVG node too) and its text
    if (!el) { return; }
    Array.prototype.slice.call(el.classList).forEach(function (c) {
      if (c.indexOf("st-") === 0) { el.classList.remove(c); }
    });
    el.classList.add(klass(status));
    if (text !== undefined && text !== null) { el.textContent = text; }
  }
  function make(tag, text, cls) {
    var el = document.createElement(tag);
    if (text !== undefined && text !== null) { el.textContent = String(text); }
    if (cls) { el.className = cls; }
    return el;
  }
  function when(iso) { return iso ? String(iso).slice(0, 19).replace("T", " ") + "Z" : "-"; }
  function duration(s) {
    if (typeof s !== "number") { return "-"; }
    if (s < 60) { return s < 10 ? s.toFixed(1) + "s" : Math.round(s) + "s"; }
    var m = Math.floor(s / 60), r = Math.round(s % 60);
    return m + "m" + (r < 10 ? "0" : "") + r + "s";
  }

  if (run) {
    var stepStatus = function (id, status) {
      var section = document.getElementById("step-" + id);
      paint(section && section.querySelector("h3 .badge"), status, status);
      var nodes = document.querySelectorAll("svg.dag g.node");
      for (var i = 0; i < nodes.length; i++) {
        if (nodes[i].getAttribute("data-step") === id) {
          paint(nodes[i], status);
          var detail = nodes[i].querySelector("text.detail");
          if (detail) { detail.textContent = status; }
        }
      }
    };
    var output = function (id, entry) {
      var section = document.getElementById("step-" + id);
      var box = section && section.querySelector(".live-output");
      if (!box) { return; }
      box.textContent = "";
      ["stdout", "stderr"].forEach(function (stream) {
        if (typeof entry[stream] === "string" && entry[stream] !== "") {
          var details = make("details", null, "field");
          details.open = true;
          details.appendChild(make("summary", stream));
          details.appendChild(make("pre", entry[stream]));
          box.appendChild(details);
        }
      });
    };
    var journal = function (e) {
      var table = document.querySelector("#journal tbody");
      if (!table) { return; }
      var row = make("tr");
      row.appendChild(make("td", e.seq, "num"));
      [String(e.at || "").slice(11), e.event, e.step || "", e.host || ""].forEach(function (t) {
        row.appendChild(make("td", t));
      });
      table.appendChild(row);
    };
    var said = function (e) {  // output a running step printed: appended as text as it comes
      var section = document.getElementById("step-" + e.step), box = section && section.querySelector(".live-output");
      if (!box) { return; }
      var pre = box.querySelector("pre.running-output");
      if (!pre) { output(e.step, {stdout: " "}); pre = box.querySelector("pre"); pre.className = "running-output"; pre.textContent = ""; }
      pre.appendChild(document.createTextNode((e.host ? "[" + e.host + "] " : "") + String(e.data.text || "")));
    };
    var apply = function (e) {
      var d = e.data || {}, entry = d.entry || {};
      if (e.event === "output") { said(e); return; }
      journal(e);
      if (e.event === "step_started" || e.event === "host_started") { stepStatus(e.step, "running"); }
      if (e.event === "host_finished" && e.host) {
        var cell = document.getElementById("step-" + e.step + "-host-" + e.host);
        paint(cell && cell.querySelector(".badge"), entry.status, entry.status);
      }
      if (e.event === "step_finished") { stepStatus(e.step, entry.status || "failed"); output(e.step, entry); }
      if (e.event === "rollback_started") { stepStatus(e.step, "rolling_back"); }
      if (e.event === "rollback_finished") { stepStatus(e.step, d.ok ? "rolled_back" : "rollback_failed"); }
      if (e.event === "waiting" || e.event === "approval") { reload(); }
    };
    var source = new EventSource("/api/v1/runs/" + encodeURIComponent(run.getAttribute("data-run")) +
                                 "/events?after=" + encodeURIComponent(run.getAttribute("data-seq") || "0"));
    source.addEventListener("journal", function (m) { apply(JSON.parse(m.data)); });
    source.addEventListener("run", function (m) {
      var status = JSON.parse(m.data).status;
      if (status) { paint(document.querySelector("#run-title .badge"), status, status); }
    });
    source.addEventListener("end", function () { source.close(); reload(); });
  }

  if (list) {
    var first = list.getAttribute("data-first") === "1";
    var row = function (r) {
      var tr = make("tr");
      tr.id = "run-" + r.id;
      var link = make("a", r.id, "mono");
      link.href = "/runs/" + encodeURIComponent(r.id);
      var cells = [link, when(r.started_at), r.procedure || "?", make("span", null, "badge"),
                   duration(r.duration), (r.user || "?") + "@" + (r.host || "?"),
                   (r.kind || "run") + (r.dry_run ? " (dry run)" : "")];
      cells.forEach(function (c, i) {
        var td = make("td", typeof c === "string" ? c : null, i === 4 ? "num" : "");
        if (typeof c !== "string") { td.appendChild(c); }
        tr.appendChild(td);
      });
      return tr;
    };
    var update = function (r) {
      var tr = document.getElementById("run-" + r.id);
      if (!tr) {
        if (!first) { return; }  // a filtered or older page: the server chooses what it lists
        var body = document.querySelector("table.runs tbody");
        if (!body) { reload(); return; }  // the first run of an empty list
        tr = row(r);
        body.insertBefore(tr, body.firstChild);
      }
      var cell = tr.cells[3];
      cell.textContent = "";
      var badge = make("span", null, "badge");
      paint(badge, r.status, r.status);
      cell.appendChild(badge);
      if (r.exit_code !== null && r.exit_code !== undefined && r.exit_code !== 0) {
        cell.appendChild(document.createTextNode(" "));
        cell.appendChild(make("span", "exit " + r.exit_code, "exit"));
      }
      tr.cells[4].textContent = duration(r.duration);
    };
    var runs = new EventSource("/api/v1/runs/events");
    runs.addEventListener("run", function (m) { update(JSON.parse(m.data)); });
  }
}());
