// The Lars console's page: lists modules and nodes (/api/nodes), changes
// nodes (/api/nodes/add|del|drain|undrain) and draws a node's last hour
// (/api/history). Data is only ever put into the page as text
// (textContent), never as HTML. Every POST carries X-Lars-Console: 1, the
// header lars-dns requires beside the session cookie (CSRF defence).
"use strict";

const REFRESH_MS = 5000;
let chartOf = null; // {modid, cmdid, node} the chart shows, or null

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") {
      e.className = v;
    } else if (k.startsWith("data-")) {
      e.setAttribute(k, v);
    } else {
      e[k] = v;
    }
  }
  for (const c of children) {
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function api(path, form) {
  const opts = { credentials: "same-origin", headers: {} };
  if (form) {
    opts.method = "POST";
    opts.headers["X-Lars-Console"] = "1";
    opts.headers["Content-Type"] = "application/x-www-form-urlencoded";
    opts.body = new URLSearchParams(form).toString();
  }
  const res = await fetch(path, opts);
  if (res.status === 401) {
    window.location.assign("/login");
    throw new Error("not logged in");
  }
  let body = null;
  try {
    body = await res.json();
  } catch (e) {
    body = { error: "answer is not JSON (" + res.status + ")" };
  }
  if (!res.ok) {
    throw new Error(body && body.error ? body.error : "HTTP " + res.status);
  }
  return body;
}

function say(text, ok) {
  const m = document.getElementById("message");
  m.textContent = text;
  m.className = ok ? "ok" : "error";
}

function age(ts, now) {
  if (!ts) {
    return "";
  }
  const s = Math.max(0, now - ts);
  return s < 120 ? s + " s ago" : Math.round(s / 60) + " min ago";
}

async function change(action, modid, cmdid, node) {
  if (action === "del" && !window.confirm("Remove " + node + " from " + modid + "/" + cmdid + "?")) {
    return;
  }
  try {
    const r = await api("/api/nodes/" + action, { modid, cmdid, node });
    say(action + " " + modid + "/" + cmdid + " " + node + ": done (RouteVersion " + r.version + ")", true);
  } catch (e) {
    say(action + " " + node + ": " + e.message, false);
  }
  load();
}

function nodeRow(m, n, now) {
  const st = n.stats;
  let state = "ok";
  let stateText = "serving";
  if (n.draining) {
    state = "draining";
    stateText = "draining";
  } else if (st && st.overload) {
    state = "overloaded";
    stateText = "overloaded";
  }
  const tags = el("td", {});
  for (const t of n.tags) {
    tags.append(el("span", { class: "tag" }, t));
  }
  const actions = el("td", {});
  const drain = n.draining ? "undrain" : "drain";
  actions.append(
    el("button", { type: "button", onclick: () => change(drain, m.modid, m.cmdid, n.node) }, drain),
    el("button", { type: "button", class: "danger", onclick: () => change("del", m.modid, m.cmdid, n.node) }, "remove"),
    el("button", { type: "button", onclick: () => showChart(m.modid, m.cmdid, n.node) }, "chart"),
  );
  return el(
    "tr",
    { "data-node": n.node, "data-module": m.modid + "/" + m.cmdid },
    el("td", {}, n.node),
    el("td", { class: "num" }, n.weight_set ? n.weight : n.weight + " (default)"),
    el("td", {}, n.zone || ""),
    tags,
    el("td", { class: "state-" + state }, stateText),
    el("td", { class: "num" }, st ? st.succ : ""),
    el("td", { class: "num" }, st ? st.err : ""),
    el("td", { class: "num" }, st ? st.callers : ""),
    el("td", { class: "muted" }, st ? age(st.ts, now) : "no report"),
    actions,
  );
}

function render(data) {
  document.getElementById("version").textContent =
    "RouteVersion " + data.version + (data.truncated ? " (list truncated)" : "");
  const box = document.getElementById("modules");
  const parts = [];
  if (data.modules.length === 0) {
    parts.push(el("p", { class: "muted" }, "No routes yet: add a node above."));
  }
  for (const m of data.modules) {
    const head = el(
      "tr",
      {},
      ...["node", "weight", "zone", "tags", "state", "succ", "err", "callers", "last report", ""].map((h) =>
        el("th", {}, h),
      ),
    );
    const table = el(
      "table",
      { "data-module": m.modid + "/" + m.cmdid },
      el("caption", {}, "module " + m.modid + "/" + m.cmdid + " (" + m.nodes.length + " nodes)"),
      el("thead", {}, head),
    );
    const body = el("tbody", {});
    for (const n of m.nodes) {
      body.append(nodeRow(m, n, data.now));
    }
    table.append(body);
    parts.push(table);
  }
  box.replaceChildren(...parts);
}

async function load() {
  try {
    render(await api("/api/nodes"));
  } catch (e) {
    if (e.message !== "not logged in") {
      say("cannot load the nodes: " + e.message, false);
    }
  }
  if (chartOf) {
    drawChart();
  }
}

function showChart(modid, cmdid, node) {
  chartOf = { modid, cmdid, node };
  document.getElementById("chart-section").hidden = false;
  document.getElementById("chart-title").textContent =
    "Last hour of " + node + " in module " + modid + "/" + cmdid;
  drawChart();
}

async function drawChart() {
  const c = chartOf;
  let h;
  try {
    h = await api(
      "/api/history?modid=" + c.modid + "&cmdid=" + c.cmdid + "&node=" + encodeURIComponent(c.node),
    );
  } catch (e) {
    say("cannot load the history: " + e.message, false);
    return;
  }
  const points = h.nodes.length ? h.nodes[0].points : [];
  const first = h.now_minute - h.minutes + 1;
  const succ = new Array(h.minutes).fill(0);
  const err = new Array(h.minutes).fill(0);
  let totalSucc = 0;
  let totalErr = 0;
  for (const [minute, s, e] of points) {
    const i = minute - first;
    if (i >= 0 && i < h.minutes) {
      succ[i] = s;
      err[i] = e;
      totalSucc += s;
      totalErr += e;
    }
  }
  document.getElementById("chart-totals").textContent =
    "(last hour: " + totalSucc + " successes, " + totalErr + " errors)";
  const canvas = document.getElementById("chart");
  const g = canvas.getContext("2d");
  const W = canvas.width;
  const H = canvas.height;
  const left = 50;
  const bottom = 24;
  const top = 10;
  const plotW = W - left - 10;
  const plotH = H - bottom - top;
  const max = Math.max(1, ...succ.map((s, i) => s + err[i]));
  g.clearRect(0, 0, W, H);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#6b7280";
  g.strokeStyle = "#d9dde5";
  for (let k = 0; k <= 4; k++) {
    const y = top + plotH - (plotH * k) / 4;
    g.beginPath();
    g.moveTo(left, y);
    g.lineTo(left + plotW, y);
    g.stroke();
    g.fillText(String(Math.round((max * k) / 4)), 4, y + 4);
  }
  const bw = plotW / h.minutes;
  for (let i = 0; i < h.minutes; i++) {
    const x = left + i * bw;
    const hs = (plotH * succ[i]) / max;
    const he = (plotH * err[i]) / max;
    g.fillStyle = "#1f9d55";
    g.fillRect(x + 1, top + plotH - hs, Math.max(1, bw - 2), hs);
    g.fillStyle = "#d64545";
    g.fillRect(x + 1, top + plotH - hs - he, Math.max(1, bw - 2), he);
  }
  g.fillStyle = "#6b7280";
  for (let i = 0; i < h.minutes; i += 10) {
    g.fillText("-" + (h.minutes - i) + " min", left + i * bw, H - 6);
  }
  g.fillText("now", left + plotW - 22, H - 6);
}

document.getElementById("add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  try {
    const r = await api("/api/nodes/add", form);
    say("added " + form.get("modid") + "/" + form.get("cmdid") + " " + r.node + " (RouteVersion " + r.version + ")", true);
    ev.target.reset();
  } catch (e) {
    say("cannot add the node: " + e.message, false);
  }
  load();
});

document.getElementById("logout").addEventListener("click", async () => {
  await fetch("/logout", { method: "POST", credentials: "same-origin", headers: { "X-Lars-Console": "1" } });
  window.location.assign("/login");
});

load();
setInterval(load, REFRESH_MS);
