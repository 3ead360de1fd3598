// pylwm2m web UI: a client of the documented HTTP API (docs/http-api.md), nothing more.
// Authenticated by the HttpOnly session cookie POST /api/session sets; every request that
// changes something sends X-Requested-With (the server's CSRF check for cookie sessions).
// Plain ES module, no framework, no build step: what is here is what the browser runs.

const CSRF = { "X-Requested-With": "pylwm2m-ui" };
const MAX_LOG = 500;
const MAX_POINTS = 300;

const state = {
  session: null,       // {name, role, auth}
  clients: new Map(),  // endpoint -> registration JSON (+ sleeping)
  events: [],          // newest last: {kind, data, at}
  source: null,        // EventSource
  listeners: new Set(),
  loading: null,       // events that arrive while loadClients runs (applied to its list)
};

// -- tiny DOM helpers ----------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}
const $ = (sel, root = document) => root.querySelector(sel);
const svgNS = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function fmtTime(value) {
  if (value === null || value === undefined) return "";
  const d = typeof value === "number" ? new Date(value) : new Date(value);
  return isNaN(d) ? String(value) : d.toLocaleString();
}
function fmtValue(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

// -- the API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.error || body.message)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, url, { body, text, headers = {} } = {}) {
  const init = { method, headers: { ...headers }, credentials: "same-origin" };
  if (method !== "GET") Object.assign(init.headers, CSRF);
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  } else if (text !== undefined) {
    init.headers["Content-Type"] = "text/plain";
    init.body = text;
  }
  const resp = await fetch(url, init);
  let data = null;
  const type = resp.headers.get("Content-Type") || "";
  if (type.includes("json")) data = await resp.json();
  else data = await resp.text();
  if (resp.status === 401 && url !== "/api/session") {
    showLogin("Your session ended: log in again.");
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return { status: resp.status, data };
}

const enc = encodeURIComponent;
const clientUrl = (ep, rest = "") => `/api/clients/${enc(ep)}${rest}`;
const pathUrl = (ep, path, suffix = "") => `${clientUrl(ep)}${path}${suffix}`;

// -- login / logout ------------------------------------------------------------------------

function showLogin(message = "") {
  closeEvents();
  state.session = null;
  $("#login").hidden = false;
  $("#view").replaceChildren();
  $("#nav").hidden = true;
  $("#logout").hidden = true;
  $("#who").textContent = "";
  $("#login-error").textContent = message;
  $("#token").focus();
}

async function login(event) {
  event.preventDefault();
  const token = $("#token").value.trim();
  try {
    const resp = await api("POST", "/api/session", { headers: { Authorization: `Bearer ${token}` } });
    $("#token").value = "";
    start(resp.data);
  } catch (err) {
    $("#login-error").textContent = err.status === 401 ? "Unknown token." : err.message;
  }
}

async function logout() {
  try { await api("DELETE", "/api/session"); } catch (err) { /* ended already */ }
  showLogin("Logged out.");
}

function start(session) {
  state.session = session;
  $("#login").hidden = true;
  $("#nav").hidden = false;
  $("#logout").hidden = !session.auth;
  $("#who").textContent = session.auth ? `${session.name} (${session.role})` : "authentication off";
  openEvents();
  route();
}

// -- the event stream --------------------------------------------------------------------

const KINDS = ["REGISTRATION", "UPDATED", "DEREGISTRATION", "SLEEPING", "AWAKE", "NOTIFICATION", "SEND"];

function openEvents() {
  closeEvents();
  const source = new EventSource("/api/event");
  state.source = source;
  const live = $("#live");
  source.onopen = () => { live.textContent = "live"; live.className = "badge ok"; };
  source.onerror = () => {
    live.textContent = "reconnecting";
    live.className = "badge warn";
    if (source.readyState !== EventSource.CLOSED) return;  // the browser retries by itself
    // refused (401 after a logout elsewhere or a revoked token) or the server went away
    api("GET", "/api/session").then(() => {
      if (state.source === source) setTimeout(() => { if (state.source === source) openEvents(); }, 3000);
    }).catch((err) => {
      if (err.status === 401) showLogin("Your session ended: log in again.");
      else if (state.source === source) setTimeout(() => { if (state.source === source) openEvents(); }, 3000);
    });
  };
  for (const kind of KINDS) {
    source.addEventListener(kind, (msg) => {
      let data;
      try { data = JSON.parse(msg.data); } catch { return; }
      onEvent(kind, data);
    });
  }
  // the server says events were missed (a slow page, or a reconnect beyond its replay
  // buffer): what the page shows may be stale, so the current view is loaded again
  source.addEventListener("GAP", () => route());
}

function closeEvents() {
  if (state.source) state.source.close();
  state.source = null;
}

function onEvent(kind, data) {
  applyEvent(state.clients, kind, data);
  // a client list being loaded (loadClients) may have been read before this event: it is
  // applied to that list too once it arrives, or the page would lose the client
  if (state.loading) state.loading.push([kind, data]);
  const entry = { kind, data, at: Date.now() };
  state.events.push(entry);
  if (state.events.length > MAX_LOG) state.events.shift();
  for (const listener of state.listeners) listener(entry);
}

function applyEvent(clients, kind, data) {
  const ep = data.ep;
  const known = clients.get(ep);
  if (kind === "REGISTRATION" || kind === "UPDATED") {
    clients.set(ep, { ...data, sleeping: data.queuemode ? false : undefined });
  } else if (kind === "DEREGISTRATION") {
    clients.delete(ep);
  } else if (kind === "SLEEPING" && known) {
    known.sleeping = true;
  } else if (kind === "AWAKE" && known) {
    known.sleeping = false;
  } else if ((kind === "NOTIFICATION" || kind === "SEND") && known) {
    if (known.queuemode) known.sleeping = false;
  }
}

function listen(fn) {
  state.listeners.add(fn);
  return () => state.listeners.delete(fn);
}

function describeEvent({ kind, data }) {
  if (data.points && data.points.length) {
    return data.points.map((p) => `${p.path} = ${fmtValue(p.value)}`).join(", ");
  }
  if (kind === "DEREGISTRATION") return data.reason || "";
  if (data.address) return `${data.address} lifetime ${data.lifetime} s`;
  if (data.until) return `until ${fmtTime(data.until * 1000)}`;
  if (data.since) return `since ${fmtTime(data.since * 1000)}`;
  if (data.error) return data.error;
  return "";
}

function eventLog(filter) {
  const box = h("div", { class: "log", id: "event-log" });
  const add = (e) => {
    if (filter && !filter(e)) return;
    box.prepend(h("div", {}, `${new Date(e.at).toLocaleTimeString()} ${e.kind} ${e.data.ep} ${describeEvent(e)}`));
    while (box.childElementCount > MAX_LOG) box.lastElementChild.remove();
  };
  for (const e of state.events) add(e);
  return { box, add };
}

// -- router ------------------------------------------------------------------------------

let cleanup = [];

function route() {
  if (!state.session) return;
  for (const fn of cleanup) fn();
  cleanup = [];
  const hash = decodeURIComponent(location.hash.replace(/^#/, "")) || "/";
  const view = $("#view");
  view.replaceChildren();
  if (hash.startsWith("/client/")) clientPage(view, hash.slice("/client/".length));
  else if (hash === "/profiles") profilesPage(view);
  else if (hash === "/events") eventsPage(view);
  else if (hash === "/bootstrap") bootstrapPage(view);
  else clientsPage(view);
}

// -- clients list ------------------------------------------------------------------------

function presence(c) {
  if (!c.queuemode) return h("span", { class: "badge ok" }, "registered");
  if (c.sleeping === true) return h("span", { class: "badge warn" }, "sleeping");
  if (c.sleeping === false) return h("span", { class: "badge ok" }, "awake");
  return h("span", { class: "badge" }, "queue mode");
}

function security(c) {
  if (c.identity) return `${c.identity.mode} (${c.identity.identity})`;
  return c.secure ? "secure" : "none (NoSec)";
}

async function clientsPage(view) {
  const body = h("tbody", { id: "clients-body" });
  const count = h("span", { class: "muted" });
  view.append(
    h("h1", {}, "Clients ", count),
    h("table", { id: "clients" },
      h("thead", {}, h("tr", {}, ["Endpoint", "State", "Last update", "Security", "LwM2M", "Binding", "Address", "Lifetime"].map((t) => h("th", {}, t)))),
      body),
  );
  const render = () => {
    const rows = [...state.clients.values()].sort((a, b) => a.endpoint.localeCompare(b.endpoint));
    count.textContent = `(${rows.length})`;
    body.replaceChildren(...rows.map((c) => h("tr", { dataset: { ep: c.endpoint } },
      h("td", {}, h("a", { href: `#/client/${enc(c.endpoint)}` }, c.endpoint)),
      h("td", { class: "presence" }, presence(c)),
      h("td", {}, fmtTime(c.lastUpdate)),
      h("td", {}, security(c)),
      h("td", {}, c.lwM2mVersion),
      h("td", {}, c.bindingMode, c.queuemode ? " (Q)" : ""),
      h("td", {}, c.address),
      h("td", {}, `${c.lifetime} s`),
    )));
    if (!rows.length) body.append(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No client is registered.")));
  };
  // one redraw per frame however many events arrive (a fleet re-registering at once)
  let pending = false;
  const later = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; render(); });
  };
  cleanup.push(listen((e) => {
    const valueOnly = e.kind === "NOTIFICATION" || e.kind === "SEND";
    if (!valueOnly || state.clients.get(e.data.ep)?.queuemode) later();
  }));
  await loadClients();
  render();
}

async function loadClients() {
  // Events that arrive while the pages load are kept and applied to the loaded list, in order:
  // a device that registers between the server's answer and its arrival here would otherwise
  // be missing from the list until its next Update (the stream already delivered it).
  const arrived = [];
  state.loading = arrived;
  const clients = new Map();
  try {
    let url = "/api/clients?limit=1000";
    for (let page = 0; url && page < 100; page++) {
      const resp = await fetch(url, { credentials: "same-origin" });
      if (resp.status === 401) { showLogin("Your session ended: log in again."); return; }
      for (const c of await resp.json()) clients.set(c.endpoint, c);
      const cursor = resp.headers.get("X-Next-Cursor");
      url = cursor ? `/api/clients?limit=1000&cursor=${enc(cursor)}` : null;
    }
  } finally {
    if (state.loading === arrived) state.loading = null;
  }
  for (const [kind, data] of arrived) applyEvent(clients, kind, data);
  state.clients = clients;
}

// -- client page ---------------------------------------------------------------------------

function clientPage(view, ep) {
  const result = h("div", { id: "result" }, "Results of the operations appear here.");
  const info = h("div", { class: "card", id: "client-info" });
  const tree = h("div", { id: "tree" }, h("p", { class: "muted" }, "Loading the object models…"));
  const profile = h("div", { class: "card", id: "profile-status" });
  const chart = telemetryChart(ep);
  const log = eventLog((e) => e.data.ep === ep);
  const observed = new Set();

  const show = (what, resp) => {
    result.textContent = `${what}\n${typeof resp === "string" ? resp : JSON.stringify(resp, null, 2)}`;
  };
  const fail = (what, err) => {
    result.textContent = `${what}: ${err.status || ""} ${err.message}`;
  };

  const compositeInput = h("input", { id: "composite-paths", size: 40, value: "/3/0/9,/3303/0/5700" });
  const composite = h("form", { class: "inline", id: "composite-form", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const resp = await api("GET", `${clientUrl(ep, "/composite")}?paths=${enc(compositeInput.value)}`);
      show(`Read-Composite ${compositeInput.value}`, resp.data);
      for (const [path, node] of Object.entries(resp.data.content || {})) setValues(path, node);
    } catch (err) { fail("Read-Composite", err); }
  } }, compositeInput, h("button", { type: "submit" }, "Read composite"));

  view.append(
    h("h1", {}, h("a", { href: "#/" }, "Clients"), " / ", ep),
    h("div", { class: "grid" }, info, profile),
    h("div", { class: "client-layout" },
      h("div", {}, h("h2", {}, "Objects"), tree),
      h("aside", {},
        h("h2", {}, "Composite read"), composite,
        h("h2", {}, "Last result"), result,
        h("h2", {}, "Telemetry"), chart.el,
        h("h2", {}, "Events"), log.box)),
  );

  const renderInfo = () => {
    const c = state.clients.get(ep);
    if (!c) { info.replaceChildren(h("p", { class: "error" }, `${ep} is not registered.`)); return; }
    info.replaceChildren(h("dl", {},
      h("dt", {}, "State"), h("dd", { id: "client-state" }, presence(c)),
      h("dt", {}, "Registered"), h("dd", {}, fmtTime(c.registrationDate)),
      h("dt", {}, "Last update"), h("dd", {}, fmtTime(c.lastUpdate)),
      h("dt", {}, "Security"), h("dd", {}, security(c)),
      h("dt", {}, "Address"), h("dd", {}, `${c.address} (${c.transport || "udp"})`),
      h("dt", {}, "LwM2M"), h("dd", {}, `${c.lwM2mVersion}, binding ${c.bindingMode}${c.queuemode ? ", queue mode" : ""}`),
      h("dt", {}, "Lifetime"), h("dd", {}, `${c.lifetime} s, expires ${fmtTime(c.expiresAt)}`),
    ));
  };

  // value cells by path: "/3/0/9" -> td
  const cells = new Map();
  function setValue(path, value) {
    const td = cells.get(path);
    if (!td || td.querySelector("form")) return;  // not while the user edits it
    td.dataset.raw = fmtValue(value);
    td.textContent = td.dataset.type === "TIME" && typeof value === "number"
      ? `${value} (${new Date(value * 1000).toISOString().slice(0, 19).replace("T", " ")} UTC)`
      : fmtValue(value);
    td.classList.remove("flash");
    void td.offsetWidth;  // restart the animation
    td.classList.add("flash");
  }
  function setValues(path, node) {
    if (!node) return;
    if (node.kind === "singleResource" || node.kind === "resourceInstance") setValue(path, node.value);
    else if (node.kind === "multiResource") setValue(path, node.values);
    else if (node.kind === "instance") for (const r of node.resources) setValues(`${path}/${r.id}`, r);
    else if (node.kind === "obj") for (const i of node.instances) setValues(`${path}/${i.id}`, i);
  }

  async function op(kind, path, res) {
    const what = `${kind} ${path}`;
    try {
      let resp;
      if (kind === "Read") {
        resp = await api("GET", pathUrl(ep, path));
        if (resp.data.content) setValues(path, resp.data.content);
      } else if (kind === "Write") {
        editValue(path, res);
        return;
      } else if (kind === "Execute") {
        const args = window.prompt(`Execute ${path}: arguments (empty for none)`, "");
        if (args === null) return;
        resp = await api("POST", pathUrl(ep, path), { text: args });
      } else if (kind === "Observe") {
        if (observed.has(path)) {
          resp = await api("DELETE", pathUrl(ep, path, "/observe"));
          observed.delete(path);
        } else {
          resp = await api("POST", pathUrl(ep, path, "/observe"));
          if (resp.data.success !== false) observed.add(path);
          if (resp.data.content) setValues(path, resp.data.content);
        }
        markObserved();
      } else if (kind === "Discover") {
        resp = await api("GET", pathUrl(ep, path, "/discover"));
      } else if (kind === "Attributes") {
        const text = window.prompt(`Write-Attributes ${path}, e.g. pmin=10&pmax=60 (empty value removes)`, "pmin=1&pmax=60");
        if (text === null) return;
        resp = await api("PUT", `${pathUrl(ep, path, "/attributes")}?${text}`);
      }
      show(what, resp.data);
    } catch (err) { fail(what, err); }
  }

  // Write: the value cell becomes a small form; the text is sent as a JSON string, which the
  // server parses for the resource's type (docs/http-api.md, "What you write is checked").
  function editValue(path, res) {
    const td = cells.get(path);
    if (!td || td.querySelector("form")) return;
    const before = td.textContent;
    const input = h("input", { class: "write-input", value: td.dataset.raw ?? before, size: 16, title: res ? res.type : "" });
    const form = h("form", { class: "inline write-form", onsubmit: async (ev) => {
      ev.preventDefault();
      const what = `Write ${path}`;
      try {
        const resp = await api("PUT", pathUrl(ep, path), { body: input.value });
        show(what, resp.data);
        td.textContent = resp.data.success === false ? before : input.value;
        if (resp.data.success !== false) td.dataset.raw = input.value;
      } catch (err) { fail(what, err); td.textContent = before; }
    } }, input, h("button", { type: "submit" }, "Set"),
      h("button", { type: "button", onclick: () => { td.textContent = before; } }, "×"));
    td.replaceChildren(form);
    input.focus();
    input.select();
  }

  function markObserved() {
    for (const btn of tree.querySelectorAll("button[data-op=Observe]")) {
      btn.classList.toggle("on", observed.has(btn.dataset.path));
      btn.textContent = observed.has(btn.dataset.path) ? "Cancel obs" : "Observe";
    }
  }

  function opButtons(path, res) {
    const ops = res ? res.operations : "RW";
    const buttons = [];
    const b = (kind, label = kind) => buttons.push(h("button", {
      type: "button", dataset: { op: kind, path }, title: `${kind} ${path}`, onclick: () => op(kind, path, res),
    }, label));
    if (ops.includes("R")) { b("Read"); b("Observe"); }
    if (ops.includes("W")) b("Write");
    if (ops === "E") b("Execute");
    b("Discover", "Disc");
    if (ops.includes("R")) b("Attributes", "Attr");
    return h("span", { class: "ops" }, buttons);
  }

  let renderedInstances = null;
  async function renderTree() {
    const c = state.clients.get(ep);
    renderedInstances = JSON.stringify((c && c.availableInstances) || {});
    let models;
    try {
      models = (await api("GET", `/api/models?ep=${enc(ep)}`)).data;
    } catch (err) {
      tree.replaceChildren(h("p", { class: "error" }, `Cannot load the models: ${err.message}`));
      return;
    }
    const byId = new Map(models.objects.map((o) => [o.id, o]));
    const instances = (c && c.availableInstances) || {};
    const ids = [...new Set([...Object.keys(instances).map(Number), ...models.objects.map((o) => o.id)])].sort((a, b) => a - b);
    tree.replaceChildren();
    cells.clear();
    for (const id of ids) {
      const model = byId.get(id);
      const name = model ? `${model.name} (v${model.version})` : "unknown object";
      const details = h("details", { class: "object", dataset: { object: id } },
        h("summary", {}, `/${id} ${name}`, " ", h("span", { class: "muted" }, `${(instances[id] || []).length} instance(s)`)));
      for (const inst of instances[id] || []) {
        const ipath = `/${id}/${inst}`;
        const rows = (model ? model.resources : []).map((r) => {
          const path = `${ipath}/${r.id}`;
          const td = h("td", { class: "value", dataset: { path, type: r.type } });
          cells.set(path, td);
          return h("tr", { dataset: { path } },
            h("td", {}, r.id), h("td", {}, r.name, r.mandatory ? "" : h("span", { class: "muted" }, " (opt)")),
            h("td", {}, r.type, r.multiple ? "[]" : ""), h("td", {}, r.units), h("td", {}, r.operations),
            td, h("td", {}, opButtons(path, r)));
        });
        details.append(
          h("h2", {}, `Instance ${ipath} `, opButtons(ipath, null)),
          h("table", {}, h("thead", {}, h("tr", {}, ["Id", "Name", "Type", "Units", "Ops", "Value", ""].map((t) => h("th", {}, t)))),
            h("tbody", {}, rows)),
        );
      }
      tree.append(details);
    }
    try {  // the latest values the server has (telemetry), without asking the device
      const latest = (await api("GET", clientUrl(ep, "/telemetry"))).data;
      for (const p of latest.points || []) setValue(p.path, p.value);
    } catch (err) { /* no telemetry yet */ }
    try {
      const obs = (await api("GET", clientUrl(ep, "/observations"))).data;
      for (const o of obs.observations || []) if (o.paths.length === 1) observed.add(o.paths[0]);
      markObserved();
    } catch (err) { /* none */ }
  }

  async function renderProfile() {
    try {
      const st = (await api("GET", clientUrl(ep, "/profile-status"))).data;
      profile.replaceChildren(h("h2", {}, "Profile"), h("dl", {},
        h("dt", {}, "Profile"), h("dd", {}, st.profile || "none", st.chosenBy ? ` (${st.chosenBy})` : ""),
        h("dt", {}, "State"), h("dd", {}, st.state || ""),
        h("dt", {}, "Observations"), h("dd", {}, fmtValue(st.observations)),
        h("dt", {}, "Problems"), h("dd", {}, fmtValue(st.problems)),
      ));
    } catch (err) {
      profile.replaceChildren(h("h2", {}, "Profile"), h("p", { class: "muted" }, err.status === 404 ? "No profile engine." : err.message));
    }
  }

  cleanup.push(listen((e) => {
    if (e.data.ep !== ep) return;
    log.add(e);
    if (e.kind === "NOTIFICATION" || e.kind === "SEND") {
      for (const p of e.data.points || []) { setValue(p.path, p.value); chart.add(p); }
    } else {
      renderInfo();
      // rebuild the tree only when the object instances changed (an Update with new links)
      const instances = JSON.stringify(state.clients.get(ep)?.availableInstances || {});
      if ((e.kind === "REGISTRATION" || e.kind === "UPDATED") && instances !== renderedInstances) {
        renderTree();
      }
    }
  }));

  (async () => {
    if (!state.clients.has(ep)) await loadClients();
    renderInfo();
    await renderTree();
    renderProfile();
    chart.load();
  })();
}

// -- telemetry chart (SVG, no library) -----------------------------------------------------

function telemetryChart(ep) {
  const select = h("select", { id: "chart-key" });
  const svg = s("svg", { class: "chart", viewBox: "0 0 600 200", preserveAspectRatio: "none" });
  const note = h("span", { class: "muted" });
  const el = h("div", {}, h("label", {}, "Key ", select), " ", note, svg);
  let points = [];  // [{ts, value}] oldest first
  const keys = new Map();  // key -> path

  const draw = () => {
    svg.replaceChildren();
    const nums = points.filter((p) => typeof p.value === "number");
    note.textContent = nums.length ? `${nums.length} points, last ${nums[nums.length - 1].value}` : "no numeric values yet";
    if (nums.length < 1) return;
    const t0 = nums[0].ts, t1 = nums[nums.length - 1].ts || t0 + 1;
    let lo = Math.min(...nums.map((p) => p.value)), hi = Math.max(...nums.map((p) => p.value));
    if (lo === hi) { lo -= 1; hi += 1; }
    const x = (t) => 30 + ((t - t0) / Math.max(t1 - t0, 1)) * 560;
    const y = (v) => 190 - ((v - lo) / (hi - lo)) * 175;
    svg.append(s("polyline", { points: nums.map((p) => `${x(p.ts).toFixed(1)},${y(p.value).toFixed(1)}`).join(" ") }));
    for (const v of [hi, lo]) {
      const t = s("text", { x: 2, y: y(v) + 4 });
      t.textContent = String(+v.toPrecision(4));
      svg.append(t);
    }
    for (const [ts, anchor, xpos] of [[t0, "start", 30], [t1, "end", 590]]) {
      const t = s("text", { x: xpos, y: 199, "text-anchor": anchor });
      t.textContent = new Date(ts).toLocaleTimeString();
      svg.append(t);
    }
  };

  const load = async () => {
    try {
      const latest = (await api("GET", clientUrl(ep, "/telemetry"))).data;
      for (const p of latest.points || []) if (typeof p.value === "number") keys.set(p.key || p.path, p.path);
    } catch (err) { /* none */ }
    const current = select.value;
    select.replaceChildren(...[...keys.keys()].sort().map((k) => h("option", { value: k }, k)));
    if (current && keys.has(current)) select.value = current;
    await loadKey();
  };
  const loadKey = async () => {
    const key = select.value;
    if (!key) { points = []; draw(); return; }
    try {
      const hist = (await api("GET", `${clientUrl(ep, "/telemetry")}?key=${enc(key)}&limit=${MAX_POINTS}`)).data;
      points = (hist.points || []).map((p) => ({ ts: p.ts, value: p.value })).reverse();
    } catch (err) { points = []; }
    draw();
  };
  select.addEventListener("change", loadKey);

  const add = (p) => {
    const key = p.key || p.path;
    if (typeof p.value !== "number") return;
    if (!keys.has(key)) {
      keys.set(key, p.path);
      select.append(h("option", { value: key }, key));
      if (!select.value || keys.size === 1) { select.value = key; }
    }
    if (select.value !== key) return;
    points.push({ ts: p.ts, value: p.value });
    if (points.length > MAX_POINTS) points.shift();
    draw();
  };
  return { el, load, add };
}

// -- profiles, events ----------------------------------------------------------------------

async function profilesPage(view) {
  const body = h("div", {}, "Loading…");
  view.append(h("h1", {}, "Profiles"), body);
  try {
    const data = (await api("GET", "/api/profiles")).data;
    const rows = (data.profiles || []).map((p) => h("tr", {},
      h("td", {}, p.name), h("td", {}, p.description || ""), h("td", {}, (p.endpoints || []).join(", ")),
      h("td", {}, Object.entries(p.objects || {}).map(([o, v]) => `/${o} v${v}`).join(", ")),
      h("td", {}, Object.keys(p.resources || {}).length), h("td", {}, p.onConnect || ""),
      h("td", {}, (p.devices || []).map((d) => h("a", { href: `#/client/${enc(d)}` }, d, " "))),
    ));
    const errors = (data.errors || []).map((e) => h("li", { class: "error" }, fmtValue(e)));
    body.replaceChildren(
      h("table", { id: "profiles" }, h("thead", {}, h("tr", {}, ["Name", "Description", "Endpoints", "Objects", "Resources", "On connect", "Devices"].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No profile.")))),
      errors.length ? h("ul", {}, errors) : "",
    );
  } catch (err) {
    body.replaceChildren(h("p", { class: err.status === 404 ? "muted" : "error" }, err.status === 404 ? "This server runs no profile engine." : err.message));
  }
}

// -- bootstrap (read through the LwM2M server: GET /api/bootstrap/…) ----------------------

function table(id, headers, rows, empty) {
  return h("table", { id }, h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, empty))));
}

async function bootstrapPage(view) {
  const body = h("div", {}, "Loading…");
  view.append(h("h1", {}, "Bootstrap"), body);
  try {
    const [devices, active, sessions] = await Promise.all([
      api("GET", "/api/bootstrap/devices"),
      api("GET", "/api/bootstrap/sessions/active"),
      api("GET", "/api/bootstrap/sessions?limit=50"),
    ]);
    const cell = (v) => h("td", {}, v === undefined || v === null ? "" : fmtValue(v));
    const deviceRows = (devices.data || []).map((d) =>
      h("tr", {}, cell(d.endpoint), cell(d.profile), cell(d.provisionState), cell(d.reason)));
    const activeRows = (active.data || []).map((a) =>
      h("tr", {}, cell(a.endpoint), cell(a.id), cell(a.initiatedBy), cell(a.step)));
    const sessionRows = (sessions.data || []).map((x) =>
      h("tr", { class: x.success ? "" : "error" }, cell(fmtTime(x.ended * 1000)),
        cell(x.endpoint), cell(x.kind), cell(x.profile), cell(x.outcome)));
    body.replaceChildren(
      h("h2", {}, "Provisioning"),
      table("bs-devices", ["Endpoint", "Profile", "State", "Reason"], deviceRows,
        "No provisioning record."),
      h("h2", {}, "Running sessions"),
      table("bs-active", ["Endpoint", "Session", "Initiated by", "Step"], activeRows, "None."),
      h("h2", {}, "Finished sessions"),
      table("bs-sessions", ["Ended", "Endpoint", "Kind", "Profile", "Outcome"], sessionRows,
        "None yet."),
    );
  } catch (err) {
    body.replaceChildren(h("p", { class: err.status === 404 ? "muted" : "error" },
      err.status === 404 ? "No bootstrap server is configured (bootstrap_api.url)." : err.message));
  }
}

function eventsPage(view) {
  const log = eventLog(null);
  view.append(h("h1", {}, "Events"), h("p", { class: "muted" }, "Since this page was opened (newest first)."), log.box);
  cleanup.push(listen(log.add));
}

// -- start ---------------------------------------------------------------------------------

window.addEventListener("hashchange", route);
$("#login-form").addEventListener("submit", login);
$("#logout").addEventListener("click", logout);

(async () => {
  try {
    const resp = await api("GET", "/api/session");
    start(resp.data);
  } catch (err) {
    showLogin(err.status === 401 ? "" : err.message);
  }
})();
