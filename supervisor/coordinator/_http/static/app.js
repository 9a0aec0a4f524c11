// ziggie dashboard: the live supervision tree, from the REST API and its event stream.
// Plain JavaScript, no build step, no network beyond this origin. The operator token
// comes from the URL fragment (never sent to the server in a URL) or a form, and goes
// only into Authorization headers.
"use strict";

const TOKEN_KEY = "ziggie-token";
const LIVE_STATES = new Set(["running", "starting"]);
const ENDED = { exited: null, terminated: "terminated", timed_out: "timed_out" };
const DEFAULT_INTENSITY = { max_restarts: 3, max_seconds: 5 };

const state = {
  token: null,
  agents: new Map(),       // id -> agent record
  nodes: new Map(),        // id -> <li>
  selected: null,
  lastEventId: null,
  dirty: new Set(),        // ids whose row needs a repaint
  structureDirty: false,
  added: [],               // new agents to place in the tree
  cascadeDirty: false,
  queue: [],               // events waiting for the next frame
  live: false,
  cascade: [],             // [{id, ts, event, killed}]
  stats: { events: 0, lastApplyMs: 0, maxFrameMs: 0, renderedAt: null, eventLag: [], frames: [] },
};
window.__ziggie = state;   // for the browser tests and curious operators

// -- token ---------------------------------------------------------------------------

function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", location.pathname + location.search);  // out of the URL
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function askForToken(message) {
  document.getElementById("app").hidden = true;
  const form = document.getElementById("login");
  form.hidden = false;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("token-input").focus();
}

document.getElementById("login").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = document.getElementById("token-input").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  state.token = token;
  document.getElementById("login").hidden = true;
  start();
});

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    askForToken("That token was refused.");
    throw new Error("unauthorized");
  }
  return response;
}

// -- model ---------------------------------------------------------------------------

function agentFrom(detail) {
  return {
    id: detail.agent_id, level: detail.level, parent: detail.parent_id || null,
    name: detail.name || detail.agent_id, state: detail.state, pid: detail.pid,
    restarts: detail.restarts || 0, incarnation: detail.incarnation || 0,
    startedAt: detail.started_at, timeout: detail.timeout_seconds,
    cpu: detail.cpu_seconds, rss: detail.rss_bytes, reason: detail.reason,
    exitCode: detail.exit_code, signal: detail.signal, outcome: detail.outcome,
    intensity: detail.intensity || DEFAULT_INTENSITY,
    restartTimes: [], exits: [], history: [], children: [],
  };
}

function ensureAgent(ev) {
  let agent = state.agents.get(ev.agent_id);
  if (!agent) {
    const parent = state.agents.has(ev.parent_id) ? ev.parent_id : null;
    agent = agentFrom({ agent_id: ev.agent_id, level: ev.level, parent_id: parent,
                        name: ev.name, state: "starting" });
    state.agents.set(agent.id, agent);
    state.added.push(agent.id);  // placed in the tree at the next frame, alone
  }
  return agent;
}

function seconds(ts) { return ts ? Date.parse(ts) / 1000 : Date.now() / 1000; }

function applyEvent(ev, historyOnly) {
  if (!ev.agent_id || ev.kind === "supervisor") return;
  if (ev.kind !== "worker" && !["gave_up", "agent_recovered"].includes(ev.event)) return;
  if (historyOnly && !state.agents.has(ev.agent_id)) return;
  const agent = historyOnly ? state.agents.get(ev.agent_id) : ensureAgent(ev);
  agent.history.push(ev);
  if (agent.history.length > 200) agent.history.shift();
  const at = seconds(ev.ts);
  if (ev.event in ENDED) {
    agent.exits.unshift({ incarnation: ev.incarnation, outcome: ev.outcome, reason: ev.reason, at });
    agent.exits.length = Math.min(agent.exits.length, 10);
  }
  if (ev.event === "restarted") agent.restartTimes.push(at);
  if (historyOnly) return;
  switch (ev.event) {
    case "spawned": agent.pid = ev.pid; agent.incarnation = ev.incarnation; break;
    case "started": agent.state = "running"; agent.startedAt = at; agent.reason = null; break;
    case "exited": agent.state = ev.outcome === "normal" ? "completed" : "failed";
      agent.outcome = ev.outcome; agent.reason = ev.reason; break;
    case "terminated": case "timed_out":
      agent.state = ENDED[ev.event]; agent.outcome = ev.outcome; agent.reason = ev.reason;
      noteCascade(agent, ev, at); break;
    case "restarted": agent.restarts = ev.restarts ?? agent.restarts + 1; break;
    case "process_exited": case "process_stopped":
      agent.exitCode = ev.exit_code; agent.signal = ev.signal; break;
    case "killed": markKilled(agent, ev.pids || []); break;
    case "gave_up": agent.state = "given_up"; agent.reason = ev.reason; break;
  }
  state.dirty.add(agent.id);
}

function applyUsage(usage) {
  for (const [id, u] of Object.entries(usage.agents || {})) {
    const agent = state.agents.get(id);
    if (!agent) continue;
    agent.cpu = u.cpu_seconds; agent.rss = u.rss_bytes;
    state.dirty.add(id);
  }
}

function noteCascade(agent, ev, at) {
  const last = state.cascade[state.cascade.length - 1];
  if (!last || at - last.at > 2) state.cascade = [];  // a new cascade
  state.cascade.push({ id: agent.id, level: agent.level, event: ev.event, at, killed: [] });
  if (state.cascade.length > 100) state.cascade.shift();
  state.cascadeDirty = true;
}

function markKilled(agent, pids) {
  const entry = state.cascade.find((c) => c.id === agent.id);
  if (entry) { entry.killed = pids; state.cascadeDirty = true; }
}

function recentRestarts(agent, now) {
  const window = agent.intensity.max_seconds;
  return agent.restartTimes.filter((t) => now - t <= window).length;
}

// -- rendering -----------------------------------------------------------------------

function fmtBytes(n) {
  if (n == null) return "-";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function fmtSeconds(s) {
  if (s == null || !isFinite(s)) return "-";
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${Math.floor(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} m`;
}

function buildNode(agent) {
  const li = document.createElement("li");
  li.setAttribute("role", "treeitem");
  li.dataset.id = agent.id;
  li.tabIndex = -1;
  li.innerHTML =
    '<div class="row"><span class="twisty" aria-hidden="true"></span>' +
    '<span class="name"></span><span class="meta">' +
    '<span class="state"></span><span class="level"></span><span class="pid"></span>' +
    '<span class="uptime"></span><span class="gauge"><meter min="0"></meter><span class="gtext"></span></span>' +
    '<span class="inc"></span><span class="deadline"></span><span class="usage"></span>' +
    "</span></div>";
  li.querySelector(".name").textContent = agent.name === agent.id ? agent.id : `${agent.id} (${agent.name})`;
  li._refs = {};  // the row's parts, looked up once: a repaint touches only text
  for (const part of ["state", "level", "pid", "uptime", "gtext", "inc", "deadline", "usage"]) {
    li._refs[part] = li.querySelector("." + part);
  }
  li._refs.meter = li.querySelector("meter");
  li.querySelector(".row").addEventListener("click", () => select(agent.id, true));
  li.querySelector(".twisty").addEventListener("click", (e) => { e.stopPropagation(); toggle(li); });
  state.nodes.set(agent.id, li);
  return li;
}

function setText(el, text) { if (el.textContent !== text) el.textContent = text; }

function paint(agent, now) {
  const li = state.nodes.get(agent.id);
  if (!li) return;
  const refs = li._refs;
  const q = (sel) => refs[sel.replace(".", "")];
  const st = q(".state");
  st.textContent = agent.state.replace("_", " ");
  st.dataset.state = agent.state;
  q(".level").textContent = agent.level;
  q(".pid").textContent = agent.pid ? `pid ${agent.pid}` : "";
  const live = LIVE_STATES.has(agent.state);
  q(".uptime").textContent = live && agent.startedAt ? `up ${fmtSeconds(now - agent.startedAt)}` : "";
  const meter = q("meter");
  const recent = recentRestarts(agent, now);
  meter.max = agent.intensity.max_restarts;
  meter.value = Math.min(recent, agent.intensity.max_restarts);
  meter.title = `restarts in the last ${agent.intensity.max_seconds} s`;
  q(".gtext").textContent = `restarts ${recent}/${agent.intensity.max_restarts} (total ${agent.restarts})`;
  q(".inc").textContent = `inc ${agent.incarnation}`;
  const left = live && agent.timeout && agent.startedAt ? agent.startedAt + agent.timeout - now : null;
  q(".deadline").textContent = left != null ? `deadline ${fmtSeconds(Math.max(left, 0))}` : "";
  q(".usage").textContent = live && agent.rss != null ? `cpu ${agent.cpu.toFixed(2)} s, rss ${fmtBytes(agent.rss)}` : "";
  li.hidden = !document.getElementById("show-ended").checked && !live && !hasLiveChild(agent);
}

function hasLiveChild(agent) {
  return agent.children.some((id) => {
    const child = state.agents.get(id);
    return child && (LIVE_STATES.has(child.state) || hasLiveChild(child));
  });
}

function rebuild() {
  for (const agent of state.agents.values()) agent.children = [];
  const roots = [];
  for (const agent of state.agents.values()) {
    const parent = agent.parent && state.agents.get(agent.parent);
    if (parent) parent.children.push(agent.id); else roots.push(agent.id);
  }
  const attach = (container, ids) => {
    for (const id of ids) {
      const agent = state.agents.get(id);
      const li = state.nodes.get(id) || buildNode(agent);
      container.appendChild(li);
      let group = li.querySelector(":scope > ul");
      if (agent.children.length) {
        if (!group) {
          group = document.createElement("ul");
          group.setAttribute("role", "group");
          li.appendChild(group);
          li.setAttribute("aria-expanded", "true");
        }
        attach(group, agent.children);
        li.querySelector(".twisty").textContent = li.getAttribute("aria-expanded") === "false" ? "▸" : "▾";
      }
      state.dirty.add(id);
    }
  };
  attach(document.getElementById("tree"), roots);
  document.getElementById("empty").hidden = state.agents.size > 0;
  const first = document.querySelector("#tree li[role=treeitem]");
  if (first && !document.querySelector('#tree li[tabindex="0"]')) first.tabIndex = 0;
  state.structureDirty = false;
}

function place(id) {
  // One new agent: under its parent's group (made if needed), or at the top level.
  const agent = state.agents.get(id);
  if (!agent || state.nodes.has(id)) return;
  const li = buildNode(agent);
  const parent = agent.parent && state.agents.get(agent.parent);
  const parentLi = parent && state.nodes.get(parent.id);
  if (parentLi) {
    parent.children.push(id);
    let group = parentLi.querySelector(":scope > ul");
    if (!group) {
      group = document.createElement("ul");
      group.setAttribute("role", "group");
      parentLi.appendChild(group);
      parentLi.setAttribute("aria-expanded", "true");
      parentLi.querySelector(".twisty").textContent = "▾";
    }
    group.appendChild(li);
  } else {
    document.getElementById("tree").appendChild(li);
  }
  document.getElementById("empty").hidden = true;
  state.dirty.add(id);
}

function toggle(li) {
  if (!li.querySelector(":scope > ul")) return;
  const open = li.getAttribute("aria-expanded") !== "false";
  li.setAttribute("aria-expanded", String(!open));
  li.querySelector(":scope > ul").hidden = open;
  li.querySelector(".twisty").textContent = open ? "▸" : "▾";
}

function frame() {
  const t0 = performance.now();
  const now = Date.now() / 1000;
  const batch = state.queue.splice(0, state.queue.length);
  for (const item of batch) {
    if (item.usage) applyUsage(item.usage);
    else {
      applyEvent(item.ev, false);
      state.stats.events++;
      if (item.ev.ts) {  // how far behind the event (server clock = this machine's) the page is
        state.stats.eventLag.push(Date.now() - Date.parse(item.ev.ts));
        if (state.stats.eventLag.length > 10000) state.stats.eventLag.shift();
      }
    }
  }
  if (state.structureDirty) rebuild();
  else for (const id of state.added.splice(0)) place(id);
  state.added.length = 0;
  if (state.cascadeDirty) { renderCascade(); state.cascadeDirty = false; }
  for (const id of state.dirty) { const a = state.agents.get(id); if (a) paint(a, now); }
  state.dirty.clear();
  if (state.selected && batch.some((b) => b.ev && b.ev.agent_id === state.selected)) renderDetail();
  renderCounts();
  const took = performance.now() - t0;
  if (batch.length) state.stats.frames.push(took);
  state.stats.lastApplyMs = took;
  state.stats.maxFrameMs = Math.max(state.stats.maxFrameMs, took);
  requestAnimationFrame(frame);
}

setInterval(() => {  // uptimes, deadlines and gauges move with time: repaint live rows
  for (const agent of state.agents.values()) if (LIVE_STATES.has(agent.state) || agent.restartTimes.length) state.dirty.add(agent.id);
}, 1000);

function renderCounts() {
  let running = 0;
  for (const a of state.agents.values()) if (LIVE_STATES.has(a.state)) running++;
  document.getElementById("counts").textContent = `${state.agents.size} agents, ${running} running`;
}

function renderCascade() {
  const section = document.getElementById("cascade");
  const list = document.getElementById("cascade-list");
  section.hidden = state.cascade.length === 0;
  list.textContent = "";
  for (const c of state.cascade) {
    const li = document.createElement("li");
    li.dataset.id = c.id;
    li.textContent = `${c.id} (${c.level}) ${c.event.replace("_", " ")}`;
    if (c.killed.length) {
      const k = document.createElement("span");
      k.className = "killed";
      k.textContent = ` needed SIGKILL (pids ${c.killed.join(", ")})`;
      li.appendChild(k);
    }
    list.appendChild(li);
  }
}

// -- detail and actions --------------------------------------------------------------

function select(id, focus) {
  state.selected = id;
  for (const li of document.querySelectorAll('#tree li[aria-selected="true"]')) li.setAttribute("aria-selected", "false");
  const li = state.nodes.get(id);
  if (li) {
    li.setAttribute("aria-selected", "true");
    for (const other of document.querySelectorAll('#tree li[tabindex="0"]')) other.tabIndex = -1;
    li.tabIndex = 0;
    if (focus) li.focus();
  }
  document.getElementById("detail").hidden = false;
  document.getElementById("deploy-form").hidden = true;
  renderDetail();
  loadDetail(id);
}

function renderDetail() {
  const agent = state.agents.get(state.selected);
  if (!agent) return;
  document.getElementById("d-title").textContent = `${agent.id} · ${agent.level} · ${agent.state.replace("_", " ")}`;
  const facts = {
    parent: agent.parent || "-", pid: agent.pid || "-", incarnation: agent.incarnation,
    restarts: agent.restarts, outcome: agent.outcome || "-", reason: agent.reason || "-",
    "exit code": agent.exitCode ?? "-", signal: agent.signal ?? "-",
  };
  const dl = document.getElementById("d-facts");
  dl.textContent = "";
  for (const [k, v] of Object.entries(facts)) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = String(v);
    dl.append(dt, dd);
  }
  if (agent.traceId) dl.append(...traceFact(agent));
  const exits = document.getElementById("d-exits");
  exits.textContent = "";
  for (const e of agent.exits) {
    const li = document.createElement("li");
    li.textContent = `incarnation ${e.incarnation}: ${e.outcome}${e.reason ? " (" + e.reason + ")" : ""}`;
    exits.appendChild(li);
  }
  document.getElementById("a-deploy").disabled = agent.level === "L3" || !LIVE_STATES.has(agent.state);
  document.getElementById("a-terminate").disabled = !LIVE_STATES.has(agent.state);
  renderLog(agent);
}

// Its trace id, a link when the coordinator has a trace_url template (http(s) only).
function traceFact(agent) {
  const dt = document.createElement("dt"); dt.textContent = "trace";
  const dd = document.createElement("dd"); dd.id = "d-trace";
  if (agent.traceUrl && /^https?:\/\//.test(agent.traceUrl)) {
    const a = document.createElement("a");
    a.href = agent.traceUrl; a.target = "_blank"; a.rel = "noopener noreferrer";
    a.textContent = agent.traceId;
    dd.appendChild(a);
  } else {
    dd.textContent = agent.traceId;
  }
  return [dt, dd];
}

function renderLog(agent) {
  const lines = (agent.logLines || []).map((l) => ({ at: l.at, text: l.text }));
  for (const ev of agent.history) {
    lines.push({ at: seconds(ev.ts), text: `── ${ev.event} (incarnation ${ev.incarnation ?? "-"})${ev.reason ? ": " + ev.reason : ""}` });
  }
  lines.sort((a, b) => a.at - b.at);
  document.getElementById("d-log").textContent = lines.map((l) => l.text).join("\n");
}

async function loadDetail(id) {
  try {
    const [status, log] = await Promise.all([
      api("GET", `/v1/agents/${encodeURIComponent(id)}`), api("GET", `/v1/agents/${encodeURIComponent(id)}/logs?tail=200`),
    ]);
    const agent = state.agents.get(id);
    if (!agent) return;
    if (status.ok) {
      const body = await status.json();
      const d = body.agent || {};
      agent.spec = d.spec;
      agent.traceId = d.trace_id; agent.traceUrl = d.trace_url;
      if (d.intensity) agent.intensity = d.intensity;
      document.getElementById("d-spec").textContent = JSON.stringify(d.spec || {}, null, 2);
    }
    if (log.ok) {
      agent.logLines = (await log.text()).split("\n").filter(Boolean).map((text) => {
        let at = 0;
        try { at = JSON.parse(text).ts || 0; } catch (_) { /* plain output */ }
        return { at, text };
      });
    }
    if (state.selected === id) renderDetail();
  } catch (_) { /* shown by api() */ }
}

document.getElementById("a-terminate").addEventListener("click", async () => {
  const agent = state.agents.get(state.selected);
  if (!agent) return;
  const n = countDescendants(agent);
  if (n > 0 && !confirm(`Terminate ${agent.id} and its ${n} descendant(s)? Children stop first.`)) return;
  await api("DELETE", `/v1/agents/${encodeURIComponent(agent.id)}`);
});

document.getElementById("a-restart").addEventListener("click", async () => {
  if (state.selected) await api("POST", `/v1/agents/${encodeURIComponent(state.selected)}/restart`);
});

document.getElementById("a-deploy").addEventListener("click", () => {
  const form = document.getElementById("deploy-form");
  form.hidden = false;
  form.querySelector("input[name=id]").focus();
});
document.getElementById("deploy-cancel").addEventListener("click", () => { document.getElementById("deploy-form").hidden = true; });

document.getElementById("deploy-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const parent = state.agents.get(state.selected);
  const form = e.target;
  const data = Object.fromEntries(new FormData(form).entries());
  const next = { L1: "L2", L2: "L3" }[parent.level];
  const spec = {
    id: data.id, name: data.name, role: data.role, task: data.task, level: next,
    context: { working_directory: (parent.spec && parent.spec.context && parent.spec.context.working_directory) || "/tmp" },
  };
  if (data.timeout_seconds) spec.timeout_seconds = Number(data.timeout_seconds);
  else if (parent.timeout && parent.startedAt) {  // a child may not outlive its parent
    spec.timeout_seconds = Math.max(1, Math.floor(parent.startedAt + parent.timeout - Date.now() / 1000));
  }
  const response = await api("POST", "/v1/agents", { agent_spec: spec, parent_agent: parent.id });
  const body = await response.json();
  const error = document.getElementById("deploy-error");
  if (response.status === 201) { error.textContent = ""; form.hidden = true; form.reset(); return; }
  error.textContent = body.detail || body.error || body.title || `HTTP ${response.status}`;
});

function countDescendants(agent) {
  return agent.children.reduce((n, id) => n + 1 + countDescendants(state.agents.get(id)), 0);
}

document.getElementById("show-ended").addEventListener("change", () => {
  for (const id of state.agents.keys()) state.dirty.add(id);
});

// Keyboard: the WAI-ARIA tree pattern (arrows move, right/left open/close, Enter selects).
document.getElementById("tree").addEventListener("keydown", (e) => {
  const li = e.target.closest("li[role=treeitem]");
  if (!li) return;
  const visible = [...document.querySelectorAll("#tree li[role=treeitem]")].filter((n) => n.offsetParent !== null);
  const i = visible.indexOf(li);
  const move = (to) => { if (to) { select(to.dataset.id, true); e.preventDefault(); } };
  switch (e.key) {
    case "ArrowDown": move(visible[i + 1]); break;
    case "ArrowUp": move(visible[i - 1]); break;
    case "ArrowRight":
      if (li.getAttribute("aria-expanded") === "false") { toggle(li); e.preventDefault(); }
      else move(li.querySelector(":scope > ul > li")); break;
    case "ArrowLeft":
      if (li.getAttribute("aria-expanded") === "true") { toggle(li); e.preventDefault(); }
      else move(li.parentElement.closest("li[role=treeitem]")); break;
    case "Enter": case " ": select(li.dataset.id, true); e.preventDefault(); break;
    case "Home": move(visible[0]); break;
    case "End": move(visible[visible.length - 1]); break;
  }
});

// -- the event stream: fetch (EventSource cannot send headers), resumed by id ----------

async function stream() {
  let delay = 250;
  let first = true;
  for (;;) {
    const headers = { Authorization: `Bearer ${state.token}` };
    if (state.lastEventId != null) headers["Last-Event-ID"] = String(state.lastEventId);
    let backlog = first;  // the first connection asks for recent history before live events
    const earlier = [];
    try {
      const response = await fetch(first ? "/v1/events?tail=5000" : "/v1/events", { headers });
      if (response.status === 401) { askForToken("That token was refused."); return; }
      setConn(true);
      delay = 250;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const received = performance.now();
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frameText = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          if (frameText === ": live") {
            if (first) {  // history told, the list taken: from here on, every event is news
              first = false;
              await loadAgents();
              for (const ev of earlier) applyEvent(ev, true);
              for (const id of state.agents.keys()) state.dirty.add(id);
            }
            backlog = false;
            continue;
          }
          let id = null, data = null, kind = null;
          for (const line of frameText.split("\n")) {
            if (line.startsWith("id: ")) id = Number(line.slice(4));
            else if (line.startsWith("data: ")) data = line.slice(6);
            else if (line.startsWith("event: ")) kind = line.slice(7);
          }
          if (data == null) continue;
          if (id != null) state.lastEventId = id;
          const ev = JSON.parse(data);
          if (kind === "usage") state.queue.push({ usage: ev });
          else if (backlog) earlier.push(ev);
          else state.queue.push({ ev, received });
        }
      }
    } catch (_) { /* network: retry below */ }
    setConn(false);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 5000);
  }
}

function setConn(live) {
  const el = document.getElementById("conn");
  el.textContent = live ? "live" : "reconnecting…";
  el.classList.toggle("live", live);
}

async function loadAgents() {
  const response = await api("GET", "/v1/agents");
  const body = await response.json();
  const history = new Map([...state.agents].map(([id, a]) => [id, a]));
  for (const detail of body.agents || []) {
    const agent = agentFrom(detail);
    const old = history.get(agent.id);
    if (old) { agent.history = old.history; agent.exits = old.exits; agent.restartTimes = old.restartTimes; }
    state.agents.set(agent.id, agent);
  }
  state.structureDirty = true;
  rebuild();
  const now = Date.now() / 1000;
  for (const agent of state.agents.values()) paint(agent, now);
  renderCounts();
  state.stats.renderedAt = performance.now();
}

async function start() {
  document.getElementById("app").hidden = false;
  requestAnimationFrame(frame);
  stream();
}

state.token = takeTokenFromFragment();
if (state.token) start(); else askForToken();
