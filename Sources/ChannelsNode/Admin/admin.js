// The admin page's script (/admin/admin.js): a file of its own, so the page's Content-Security-Policy allows no inline script.
"use strict";
const KEY = "channels-admin-key";
const $ = (id) => document.getElementById(id);
let key = sessionStorage.getItem(KEY);
let selected = null;
let events = null;          // the AbortController of the running event stream
let retry = null;

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    if (cell instanceof Node) { const td = document.createElement("td"); td.appendChild(cell); tr.appendChild(td); }
    else { tr.appendChild(el("td", cell[0], cell[1])); }
  }
  return tr;
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const s = Math.max(0, Math.round(Date.now() / 1000 - seconds));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m";
  if (s < 86400) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}

async function api(method, path, body) {
  const options = { method, headers: { "Authorization": "Bearer " + key } };
  if (body !== undefined) { options.headers["Content-Type"] = "application/json"; options.body = body; }
  const response = await fetch(path, options);
  let json = null;
  try { json = await response.json(); } catch (_) {}
  if (response.status === 401) signOut("the key was refused");
  return { status: response.status, json };
}

function setStatus(text, kind) {
  $("status").textContent = text;
  $("status").className = kind || "";
}

async function signIn(candidate) {
  key = candidate;
  const { status, json } = await api("GET", "/api/nodes");
  if (status !== 200) {
    $("signin-error").textContent = json && json.message ? json.message : "the node answered " + status;
    key = null;
    return;
  }
  sessionStorage.setItem(KEY, key);
  $("signin").hidden = true;
  $("dashboard").hidden = false;
  $("signout").hidden = false;
  $("signin-error").textContent = "";
  startEvents();
}

function signOut(why) {
  sessionStorage.removeItem(KEY);
  key = null;
  if (events) events.abort();
  clearTimeout(retry);
  $("dashboard").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = why || "";
  setStatus("signed out");
}

// Server-sent events over fetch(): EventSource cannot send the Authorization header.
async function startEvents() {
  if (events) events.abort();
  clearTimeout(retry);
  const controller = new AbortController();
  events = controller;
  const path = "/api/events" + (selected ? "?group=" + encodeURIComponent(selected) : "");
  try {
    const response = await fetch(path, { headers: { "Authorization": "Bearer " + key }, signal: controller.signal });
    if (response.status === 401) { signOut("the key was refused"); return; }
    if (!response.ok || !response.body) throw new Error("the node answered " + response.status);
    setStatus("live", "live");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (name === "snapshot" && data) render(JSON.parse(data));
      }
    }
    throw new Error("the stream ended");
  } catch (error) {
    if (controller.signal.aborted || !key) return;
    setStatus("reconnecting: " + error.message, "down");
    retry = setTimeout(startEvents, 2000);
  }
}

function render(snapshot) {
  $("node-name").textContent = "on " + snapshot.node;
  $("scope-note").textContent = snapshot.note || "";
  renderNodes(snapshot.nodes || []);
  const redis = snapshot.redis;
  $("redis").textContent = redis && !redis.error
    ? `Redis ${redis.redis_version || "?"} · ${redis.used_memory_human || "?"} used · ${redis.connected_clients || "?"} clients · ${redis.pubsub_channels || "0"} pub/sub channels · ${redis.instantaneous_ops_per_sec || "0"} ops/s`
    : (snapshot.scope === "node" ? "In-memory layer: no Redis." : "");
  renderGroups(snapshot.groups || []);
  if (snapshot.group && snapshot.group.name === selected) renderGroup(snapshot.group);
}

function renderNodes(nodes) {
  const body = $("nodes").tBodies[0];
  body.replaceChildren();
  if (nodes.error) { body.appendChild(row([[nodes.error.message, "bad"]])); return; }
  for (const node of nodes) {
    const redisState = node.reported === false ? ["no answer", "bad"]
      : node.layer === "memory" ? ["-", "muted"]
      : node.layer_reachable ? [node.redis_connection_losses ? `ok (${node.redis_connection_losses} losses)` : "ok", "ok"] : ["unreachable", "bad"];
    const status = node.status !== "alive" ? [node.status, "bad"] : node.draining ? ["draining", "bad"] : node.ready === false ? ["not ready", "bad"] : ["alive", "ok"];
    const tr = row([
      [node.id], status, [node.connections ?? "-", "num"], [node.groups ?? "-", "num"],
      [node.messages_in_per_second ?? "-", "num"], [node.messages_out_per_second ?? "-", "num"],
      [node.layer ?? "-"], redisState, [node.version ?? "-"], [ago(node.started_at)],
    ]);
    tr.dataset.node = node.id;
    body.appendChild(tr);
  }
}

function renderGroups(groups) {
  const body = $("groups").tBodies[0];
  body.replaceChildren();
  if (groups.error) { body.appendChild(row([[groups.error.message, "bad"]])); return; }
  $("groups-empty").hidden = groups.length > 0;
  for (const group of groups) {
    const tr = row([[group.name], [group.members, "num"], [group.messages_per_second ?? 0, "num"], [(group.nodes || []).join(", "), "muted"]]);
    tr.className = "group-row" + (group.name === selected ? " selected" : "");
    tr.dataset.group = group.name;
    tr.addEventListener("click", () => select(group.name));
    body.appendChild(tr);
  }
}

function select(name) {
  selected = name;
  $("group-name").textContent = name;
  $("group-detail").hidden = false;
  $("send-result").textContent = "";
  for (const tr of document.querySelectorAll("tr.group-row")) tr.classList.toggle("selected", tr.dataset.group === name);
  startEvents();
}

function renderGroup(group) {
  $("group-rate").textContent = `· ${group.messages_per_second ?? 0} msg/s`;
  const members = $("members").tBodies[0];
  members.replaceChildren();
  if (group.members.error) members.appendChild(row([[group.members.error.message, "bad"]]));
  else for (const member of group.members) {
    const button = el("button", "disconnect", "danger");
    button.addEventListener("click", () => disconnect("/api/channels/" + encodeURIComponent(member.channel) + "/disconnect", {}, button));
    const tr = row([[member.channel], [member.node], [member.user ?? "-", "muted"], [ago(member.joined_at) + " ago", "muted"], button]);
    tr.dataset.channel = member.channel;
    members.appendChild(tr);
  }
  const presence = $("presence");
  presence.replaceChildren();
  if (!group.presence.error) {
    for (const member of group.presence) presence.appendChild(el("li", `${member.user ?? "anonymous"} on ${member.node ?? "?"}`));
    if (group.presence.length === 0) presence.appendChild(el("li", "nobody joined with presence", "muted"));
  }
  const history = $("history");
  history.replaceChildren();
  const kept = group.history;
  if (kept.error) history.appendChild(el("li", kept.error.message, "bad"));
  else if (!kept.keeps_history) history.appendChild(el("li", "this group keeps no history (see --history)", "muted"));
  else if (kept.messages.length === 0) history.appendChild(el("li", "nothing sent yet", "muted"));
  else for (const entry of kept.messages.slice().reverse()) {
    const li = el("li");
    li.appendChild(el("span", "#" + entry.offset, "offset"));
    li.appendChild(document.createTextNode(JSON.stringify(entry.message)));
    li.className = "history-message";
    history.appendChild(li);
  }
}

async function disconnect(path, body, button) {
  if (button) button.disabled = true;
  const { status, json } = await api("POST", path, JSON.stringify(body));
  const text = status === 202 ? `closed ${json.disconnected} connection(s) on ${json.nodes_answered} of ${json.nodes_expected} node(s)` : (json && json.message) || "failed: " + status;
  if (button) { button.textContent = status === 202 ? "closed" : "failed"; button.title = text; }
  return text;
}

$("signin-form").addEventListener("submit", (event) => { event.preventDefault(); signIn($("key").value.trim()); });
$("signout").addEventListener("click", () => signOut());
$("send-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!selected) return;
  const { status, json } = await api("POST", "/api/groups/" + encodeURIComponent(selected) + "/send", $("send-body").value);
  $("send-result").textContent = status === 202
    ? "sent" + (json.offset !== undefined ? ` (offset ${json.offset})` : "")
    : (json && json.message) || "failed: " + status;
  $("send-result").className = status === 202 ? "ok" : "bad";
});
$("user-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = { code: Number($("user-code").value), reason: $("user-reason").value };
  $("user-result").textContent = await disconnect("/api/users/" + encodeURIComponent($("user").value.trim()) + "/disconnect", body);
});

if (key) signIn(key);
