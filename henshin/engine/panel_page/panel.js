// henshin panel: every control sends a control line (the same lines standard input takes)
// over the WebSocket API; every answer carries the run's STATE, which redraws the controls.
"use strict";

const token = new URLSearchParams(location.search).get("token") || "";
const query = "?token=" + encodeURIComponent(token);
const $ = (id) => document.getElementById(id);
const PREVIEW_MS = 200; // at most 5 pictures a second
const VIEW_MS = 1000;
const THUMB_MS = 2000;

let ws = null;
let nextId = 1;
const pending = new Map();
let state = null;
let controls = null; // {params: {filter: [{name, kind, default, range, choices}]}, filters: [...]}

// -- the connection ---------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/ws${query}`);
  ws.onopen = () => { setStatus("connected", true); loadControls(); loadPresets(); };
  ws.onclose = () => {
    setStatus("disconnected — retrying", false);
    for (const done of pending.values()) done({ ok: false, error: "the connection closed." });
    pending.clear();
    setTimeout(connect, 2000);
  };
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "stats") return showStats(msg);
    const done = pending.get(msg.id);
    pending.delete(msg.id);
    if (done) done(msg);
  };
}

function send(msg) {
  return new Promise((resolve) => {
    if (!ws || ws.readyState !== WebSocket.OPEN) return resolve({ ok: false, error: "not connected." });
    msg.id = nextId++;
    pending.set(msg.id, resolve);
    ws.send(JSON.stringify(msg));
  });
}

async function line(text) {
  const answer = await send({ line: text });
  showAnswer(answer, text);
  return answer;
}

function showAnswer(answer, what) {
  if (answer.ok) {
    if (answer.state) showState(answer.state);
    say(what ? `✓ ${what}` : "", false);
  } else {
    say(answer.error, true);
    send({ get: "state" }).then((a) => a.ok && showState(a.state)); // put the controls back
  }
}

function setStatus(text, ok) {
  $("status").textContent = text;
  $("status").classList.toggle("ok", ok);
}

function say(text, bad) {
  $("message").textContent = text;
  $("message").classList.toggle("bad", bad);
}

// -- state and controls ------------------------------------------------------------------------

async function loadControls() {
  const answer = await send({ get: "controls" });
  if (!answer.ok) return say(answer.error, true);
  controls = answer.controls;
  $("filter-names").replaceChildren(...controls.filters.map((name) => new Option(name, name)));
  buildParams(answer.state);
  state = answer.state;
  showState(answer.state);
}

function showState(next) {
  const names = (s) => Object.keys(s.params).join(",");
  const rebuild = !state || !controls || names(state) !== names(next)
    || Object.keys(next.params).some((name) => !controls.params[name]);
  state = next;
  if (rebuild && controls) return loadControls();
  $("enabled").checked = state.enabled;
  if (document.activeElement !== $("chain")) $("chain").value = state.chain;
  for (const [name, values] of Object.entries(state.params)) {
    for (const [key, value] of Object.entries(values)) setControl(name, key, value);
  }
  for (const li of $("faces").children) setFaceChain(li);
}

function buildParams(current) {
  const order = [...new Set([...current.chain.split("+"), ...Object.keys(current.params)])];
  const groups = [];
  for (const name of order) {
    const params = controls.params[name];
    if (!params) continue;
    const fieldset = document.createElement("fieldset");
    fieldset.append(Object.assign(document.createElement("legend"), { textContent: name }));
    for (const param of params) fieldset.append(paramRow(name, param));
    if (name === "composite") {
      const details = document.createElement("details");
      details.append(Object.assign(document.createElement("summary"), { textContent: "compositing" }), fieldset);
      groups.push(details);
    } else {
      groups.push(fieldset);
    }
  }
  $("params").replaceChildren(...groups);
}

function paramRow(name, param) {
  const row = document.createElement("div");
  row.className = "param";
  const id = `p-${name}-${param.name}`;
  const label = Object.assign(document.createElement("label"), { htmlFor: id, textContent: param.name, title: param.name });
  const output = document.createElement("output");
  const input = makeInput(param);
  input.id = id;
  input.dataset.filter = name;
  input.dataset.key = param.name;
  input.dataset.kind = param.kind;
  const key = `${name}.${param.name}`;
  if (input.type === "range") {
    input.addEventListener("input", () => { output.textContent = format(input.value, param.kind); });
  }
  input.addEventListener("change", () => {
    const value = input.type === "checkbox" ? String(input.checked) : input.value;
    if (/\s/.test(value) || value === "") return say(`${key}: a value cannot be empty or hold spaces here.`, true);
    line(`set ${key} ${value}`);
  });
  row.append(label, input, output);
  return row;
}

function makeInput(param) {
  const [low, high] = param.range || [0, (param.choices || []).length - 1];
  if (param.kind === "choice") {
    const select = document.createElement("select");
    select.append(...param.choices.map((v) => new Option(String(v), String(v))));
    return select;
  }
  if (param.kind === "int" && (param.choices || (param.range && high - low <= 40))) {
    // A whole number with few values (a style): a menu of its values, by name where it has names.
    const select = document.createElement("select");
    for (let v = low; v <= high; v++) {
      const name = param.choices ? param.choices[v - low] : undefined;
      select.append(new Option(name === undefined ? String(v) : `${name}`, String(v)));
    }
    return select;
  }
  if (param.kind === "bool") return Object.assign(document.createElement("input"), { type: "checkbox" });
  if ((param.kind === "float" || param.kind === "int") && param.range) {
    const step = param.kind === "int" ? 1 : (high - low) / 100;
    return Object.assign(document.createElement("input"), { type: "range", min: low, max: high, step });
  }
  if (param.kind === "text" && /^#[0-9a-fA-F]{6}$/.test(String(param.default))) {
    return Object.assign(document.createElement("input"), { type: "color" }); // a colour, like tint's
  }
  const type = param.kind === "text" ? "text" : "number";
  return Object.assign(document.createElement("input"), { type, step: "any", spellcheck: false });
}

function setControl(name, key, value) {
  const input = $(`p-${name}-${key}`);
  if (!input || document.activeElement === input && input.type !== "range" && input.tagName !== "SELECT") return;
  if (input.type === "checkbox") input.checked = Boolean(value);
  else if (input.type !== "color" || /^#[0-9a-fA-F]{6}$/.test(String(value))) input.value = String(value);
  const output = input.parentElement.querySelector("output");
  if (output) output.textContent = input.type === "range" ? format(value, input.dataset.kind) : "";
}

function format(value, kind) {
  const number = Number(value);
  return kind === "int" ? String(Math.round(number)) : number.toFixed(2);
}

// -- faces in view -------------------------------------------------------------------------------

async function pollView() {
  if (ws && ws.readyState === WebSocket.OPEN && !document.hidden) {
    const answer = await send({ get: "view" });
    if (answer.ok) showView(answer.view);
  }
  setTimeout(pollView, VIEW_MS);
}

function showView(view) {
  $("fig-governor").textContent = String(view.governor);
  const list = $("faces");
  const tracks = view.faces.map((f) => String(f.track));
  for (const li of [...list.children]) if (!tracks.includes(li.dataset.track)) li.remove();
  for (const track of tracks) {
    let li = $(`face-${track}`);
    if (!li) {
      li = faceRow(track);
      const after = [...list.children].find((other) => Number(other.dataset.track) > Number(track));
      list.insertBefore(li, after || null);
    }
    const img = li.querySelector("img");
    if (Date.now() - (Number(img.dataset.at) || 0) > THUMB_MS) {
      img.dataset.at = String(Date.now());
      img.src = `faces/${track}.jpg${query}&t=${Date.now()}`;
    }
  }
  $("faces-empty").hidden = tracks.length > 0;
}

function faceRow(track) {
  const li = document.createElement("li");
  li.id = `face-${track}`;
  li.dataset.track = track;
  const img = Object.assign(document.createElement("img"), { alt: `face ${track}` });
  const label = Object.assign(document.createElement("span"), { className: "track", textContent: `#${track}` });
  const select = document.createElement("select");
  select.id = `face-chain-${track}`;
  select.setAttribute("aria-label", `chain for face ${track}`);
  select.addEventListener("change", () => line(`face ${track} ${select.value}`));
  li.append(img, label, select);
  setFaceChain(li);
  return li;
}

function setFaceChain(li) {
  if (!state || !controls) return;
  const select = li.querySelector("select");
  const current = state.faces[li.dataset.track] || "default";
  const options = ["default", ...controls.filters];
  if (!options.includes(current)) options.push(current);
  const labels = (v) => (v === "default" ? `default (${state.chain})` : v);
  if (select.options.length !== options.length || select.options[0].text !== labels("default")
      || [...select.options].some((o, i) => o.value !== options[i])) {
    select.replaceChildren(...options.map((v) => new Option(labels(v), v)));
  }
  if (document.activeElement !== select) select.value = current;
}

// -- figures and preview -----------------------------------------------------------------------

function showStats(msg) {
  const show = (v) => (v === null || v === undefined ? "–" : String(v));
  $("fig-fps").textContent = show(msg.fps);
  $("fig-p50").textContent = show(msg.latency_ms.p50);
  $("fig-p99").textContent = show(msg.latency_ms.p99);
  $("fig-faces").textContent = show(msg.faces);
}

function nextPreview(delay) {
  setTimeout(() => {
    const img = $("preview");
    if (!$("preview-on").checked || document.hidden) return nextPreview(PREVIEW_MS);
    img.dataset.asked = String(performance.now());
    img.src = `preview.jpg${query}&t=${Date.now()}`;
  }, delay);
}

function previewDone(ok) {
  const waited = performance.now() - Number($("preview").dataset.asked || 0);
  nextPreview(ok ? Math.max(0, PREVIEW_MS - waited) : 1000);
}

// -- presets ---------------------------------------------------------------------------------------

async function loadPresets(selected) {
  const answer = await send({ get: "presets" });
  if (answer.ok) showPresets(answer.presets, selected);
}

function showPresets(names, selected) {
  $("preset-list").replaceChildren(...names.map((n) => new Option(n, n)));
  if (selected) $("preset-list").value = selected;
}

async function savePreset() {
  const name = $("preset-name").value.trim();
  if (!name) return say("give the preset a name first.", true);
  let answer = await send({ save_preset: name });
  if (!answer.ok && /exists already/.test(answer.error) && confirm(`Replace the preset ${name}?`)) {
    answer = await send({ save_preset: name, overwrite: true });
  }
  if (answer.ok) { showPresets(answer.presets, name); say(`✓ saved preset ${name}`, false); }
  else say(answer.error, true);
}

async function loadPreset() {
  const name = $("preset-list").value;
  if (!name) return say("no preset saved yet.", true);
  showAnswer(await send({ load_preset: name }), `loaded preset ${name}`);
}

// -- keys: the preview window's, outside text fields -------------------------------------------------

const KEYS = { n: "step style 1", p: "step style -1", " ": "toggle", "+": "step strength 0.1",
               "=": "step strength 0.1", "-": "step strength -0.1", f: "next-filter" };

document.addEventListener("keydown", (e) => {
  const typing = e.target.closest && e.target.closest("input, select, textarea, button");
  if (typing || e.ctrlKey || e.metaKey || e.altKey || !(e.key in KEYS)) return;
  e.preventDefault();
  line(KEYS[e.key]);
});

// -- wiring ------------------------------------------------------------------------------------------

$("enabled").addEventListener("change", () => line($("enabled").checked ? "on" : "off"));
$("chain-apply").addEventListener("click", () => line(`filter ${$("chain").value.trim()}`));
$("chain").addEventListener("keydown", (e) => { if (e.key === "Enter") $("chain-apply").click(); });
$("preset-save").addEventListener("click", savePreset);
$("preset-load").addEventListener("click", loadPreset);
$("preview").addEventListener("load", () => previewDone(true));
$("preview").addEventListener("error", () => previewDone(false));
connect();
nextPreview(0);
pollView();
