"use strict";
// The console talks to the public API only. Paths are relative to where the page is served, so
// that behind API Gateway `/<stage>/console` calls `/<stage>/tasks`.
const API_BASE = location.pathname.replace(/\/console\/?$/, "");
const KEY_ITEM = "tasks-api-key";
const STATUSES = ["SCHEDULED", "QUEUED", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"];
const TERMINAL = ["COMPLETED", "FAILED", "CANCELLED"];
const PAGE_SIZE = 25;
const LATENESS_SAMPLE = 500;
const REFRESH_MS = 5000;

// What can be done to one task. A new API action is one entry here.
const ACTIONS = [
  {
    id: "cancel",
    label: "Cancel",
    when: (task) => !TERMINAL.includes(task.status),
    run: (task) => api("DELETE", `/tasks/${encodeURIComponent(task.id)}`),
  },
];

const $ = (selector) => document.querySelector(selector);

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function say(text, isError = false) {
  const message = $("#message");
  message.textContent = text;
  message.className = isError ? "error" : "";
}

async function api(method, path, body, headers = {}) {
  const sent = { ...headers };
  const key = sessionStorage.getItem(KEY_ITEM);
  if (key) sent["x-api-key"] = key;
  if (body !== undefined) sent["content-type"] = "application/json";
  const response = await fetch(API_BASE + path, {
    method,
    headers: sent,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    // The API's errors are {"error": {"code", "message"}}; API Gateway's own are {"message"}.
    const reason = data?.error?.message ?? data?.message ?? text.slice(0, 200);
    throw new Error(`${method} ${path}: HTTP ${response.status}: ${reason}`);
  }
  return data;
}

// ---------------------------------------------------------------- list

const list = { status: "SCHEDULED", tokens: [null], next: null, selected: null };

async function loadList() {
  const token = list.tokens[list.tokens.length - 1];
  const query = new URLSearchParams({ status: list.status, limit: String(PAGE_SIZE) });
  if (token) query.set("nextToken", token);
  const page = await api("GET", `/tasks?${query}`);
  list.next = page.nextToken;
  const rows = page.tasks.map((task) =>
    el(
      "tr",
      {
        "data-id": task.id,
        class: task.id === list.selected ? "selected" : "",
        onclick: () => openTask(task.id).catch((error) => say(error.message, true)),
      },
      el("td", {}, task.id),
      el("td", {}, el("span", { class: `status ${task.status}` }, task.status)),
      el("td", {}, task.timestamp),
      el("td", {}, task.timeLeftSeconds > 0 ? `${task.timeLeftSeconds} s` : ""),
      el("td", {}, String(task.attempts)),
      el("td", {}, task.latenessMs === undefined ? "" : `${task.latenessMs} ms`),
    ),
  );
  $("#tasks tbody").replaceChildren(...rows);
  $("#next-page").disabled = !list.next;
  $("#first-page").disabled = list.tokens.length === 1;
  $("#page-info").textContent = `page ${list.tokens.length}, ${page.tasks.length} tasks, newest first`;
}

function showStatus(status) {
  list.status = status;
  list.tokens = [null];
  $("#status-filter").value = status;
  return loadList();
}

// ---------------------------------------------------------------- detail

function redactedWebhook(webhook) {
  if (!webhook) return "none: the task completes at its time";
  const shown = { ...webhook };
  try {
    const url = new URL(webhook.url);
    if (url.username || url.password) {
      url.username = "•••";
      url.password = "";
    }
    shown.url = url.toString();
  } catch {
    shown.url = webhook.url;
  }
  if (webhook.headers) {
    shown.headers = Object.fromEntries(Object.keys(webhook.headers).map((name) => [name, "•••"]));
  }
  return JSON.stringify(shown, null, 2);
}

// What the task's fields tell of its life, in time order; what is still to come is marked, and
// what a finished task will never reach is left out.
function history(task) {
  const finished = TERMINAL.includes(task.status);
  const events = [
    [task.createdAt, "created (SCHEDULED)"],
    [new Date(task.startExecutionAt * 1000).toISOString(), "handed to the workflow (the lead time before its time)"],
    [task.timestamp, "its time"],
  ];
  if (task.executedAt) {
    events.push([task.executedAt, `attempt ${task.attempts} sent, ${task.latenessMs} ms after its time`]);
  } else if (task.attempts > 0) {
    events.push([task.lastUpdatedAt, `${task.attempts} attempt(s) begun`]);
  }
  events.push([task.lastUpdatedAt, `last change: now ${task.status}`]);
  if (task.lastError) events.push([task.lastUpdatedAt, `error: ${task.lastError}`]);
  const now = new Date().toISOString();
  return events
    .filter(([at]) => !finished || at <= task.lastUpdatedAt)
    .map(([at, what]) => [at, at > now ? `${what} (to come)` : what])
    .sort((a, b) => a[0].localeCompare(b[0]));
}

function renderTask(task) {
  $("#detail").hidden = false;
  $("#detail-id").textContent = task.id;
  const status = $("#detail-status");
  status.textContent = task.status;
  status.className = `status ${task.status}`;
  const fields = {
    time: task.timestamp,
    "time left": TERMINAL.includes(task.status) ? undefined : `${task.timeLeftSeconds} s`,
    attempts: task.attempts,
    "executed at": task.executedAt,
    lateness: task.latenessMs === undefined ? undefined : `${task.latenessMs} ms`,
    "last error": task.lastError,
    created: task.createdAt,
    updated: task.lastUpdatedAt,
  };
  $("#detail-fields").replaceChildren(
    ...Object.entries(fields)
      .filter(([, value]) => value !== undefined)
      .flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, String(value))]),
  );
  $("#detail-history").replaceChildren(
    ...history(task).map(([at, what]) => el("li", {}, el("code", {}, at), " ", what)),
  );
  $("#detail-webhook").textContent = redactedWebhook(task.webhook);
  $("#detail-payload").textContent =
    task.payload === undefined ? "none" : JSON.stringify(task.payload, null, 2);
  $("#detail-actions").replaceChildren(
    ...ACTIONS.filter((action) => action.when(task)).map((action) =>
      el(
        "button",
        {
          id: `action-${action.id}`,
          type: "button",
          class: "action",
          onclick: (event) => runAction(action, task, event.target),
        },
        action.label,
      ),
    ),
  );
}

async function runAction(action, task, button) {
  button.disabled = true;
  try {
    const updated = await action.run(task);
    say(`${action.label}: task ${task.id} is now ${updated.status}`);
    renderTask(updated);
    await loadList();
  } catch (error) {
    say(error.message, true);
    button.disabled = false;
  }
}

async function openTask(id) {
  list.selected = id;
  const task = await api("GET", `/tasks/${encodeURIComponent(id)}`);
  renderTask(task);
  for (const row of document.querySelectorAll("#tasks tbody tr")) {
    row.classList.toggle("selected", row.dataset.id === id);
  }
}

// ---------------------------------------------------------------- create

function jsonField(selector, name) {
  const text = $(selector).value.trim();
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${name} is not valid JSON: ${error.message}`);
  }
}

function newTaskBody() {
  const body = {};
  if (document.querySelector("input[name=when]:checked").value === "absolute") {
    const local = $("#absolute-time").value;
    if (!local) throw new Error("choose a date and time, or a relative time");
    body.timestamp = new Date(local).toISOString();
  } else {
    for (const unit of ["hours", "minutes", "seconds"]) {
      body[unit] = Number($(`#relative-${unit}`).value || 0);
    }
  }
  const url = $("#webhook-url").value.trim();
  if (url) {
    body.webhook = { url, method: $("#webhook-method").value };
    const headers = jsonField("#webhook-headers", "headers");
    if (headers !== undefined) body.webhook.headers = headers;
    const payloadBody = jsonField("#webhook-body", "body");
    if (payloadBody !== undefined) body.webhook.body = payloadBody;
  }
  const payload = jsonField("#payload", "payload");
  if (payload !== undefined) body.payload = payload;
  return body;
}

async function create(event) {
  event.preventDefault();
  const key = $("#idempotency-key").value.trim();
  const task = await api("POST", "/tasks", newTaskBody(), key ? { "Idempotency-Key": key } : {});
  say(`Created task ${task.id} (${task.status}, ${task.timestamp})`);
  $("#message").dataset.id = task.id;
  list.selected = task.id;
  await showStatus(task.status);
  renderTask(task);
}

// ---------------------------------------------------------------- lateness

function percentile(sorted, p) {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)];
}

function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= raw);
}

function svg(tag, attributes, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function histogram(values, marks) {
  const width = 400, height = 200, left = 34, right = 10, top = 10, bottom = 34;
  const max = values[values.length - 1];
  const step = Math.max(1, niceStep(Math.max(max, 1) / 20));
  const bins = new Array(Math.floor(max / step) + 1).fill(0);
  for (const value of values) bins[Math.floor(Math.max(0, value) / step)] += 1;
  const tallest = Math.max(...bins);
  const plotWidth = width - left - right, plotHeight = height - top - bottom;
  const x = (ms) => left + (ms / (bins.length * step)) * plotWidth;
  const y = (count) => top + plotHeight - (count / tallest) * plotHeight;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "font-size": "11" });
  chart.append(svg("title", {}, "lateness histogram"));
  bins.forEach((count, i) => {
    if (!count) return;
    const bar = svg("rect", {
      x: x(i * step) + 1, y: y(count), width: Math.max(1, x(step) - x(0) - 2),
      height: top + plotHeight - y(count), fill: "#2357c6",
    });
    bar.append(svg("title", {}, `${i * step}–${(i + 1) * step} ms: ${count}`));
    chart.append(bar);
  });
  chart.append(svg("line", { x1: left, x2: width - right, y1: top + plotHeight, y2: top + plotHeight, stroke: "#5b6576" }));
  const ticks = Math.min(bins.length, 8);
  for (let i = 0; i <= ticks; i++) {
    const ms = Math.round((i * bins.length * step) / ticks);
    chart.append(svg("text", { x: x(ms), y: height - 18, "text-anchor": "middle" }, String(ms)));
  }
  chart.append(svg("text", { x: left + plotWidth / 2, y: height - 3, "text-anchor": "middle" }, "lateness (ms)"));
  chart.append(svg("text", { x: 4, y: top + 10 }, String(tallest)));
  chart.append(svg("text", { x: 4, y: top + plotHeight }, "0"));
  // Marks at the same value share one line and one label.
  const lines = new Map();
  for (const [label, ms, color] of marks) {
    if (!lines.has(ms)) lines.set(ms, { labels: [], color });
    lines.get(ms).labels.push(label);
  }
  [...lines].forEach(([ms, { labels, color }], i) => {
    const at = x(Math.floor(ms / step) * step + step / 2);
    chart.append(svg("line", { x1: at, x2: at, y1: top, y2: top + plotHeight, stroke: color, "stroke-dasharray": "4 3" }));
    chart.append(svg("text", {
      x: at + 3, y: top + 12 + 12 * i, fill: color,
      stroke: "#fff", "stroke-width": 3, "paint-order": "stroke",
    }, labels.join(" ")));
  });
  return chart;
}

async function loadLateness() {
  const values = [];
  let token = null;
  do {
    const query = new URLSearchParams({ status: "COMPLETED", limit: "100" });
    if (token) query.set("nextToken", token);
    const page = await api("GET", `/tasks?${query}`);
    for (const task of page.tasks) {
      if (typeof task.latenessMs === "number") values.push(task.latenessMs);
    }
    token = page.nextToken;
  } while (token && values.length < LATENESS_SAMPLE);
  const chart = $("#lateness-chart");
  if (!values.length) {
    $("#lateness-stats").textContent = "no completed tasks yet";
    chart.replaceChildren();
    return;
  }
  values.sort((a, b) => a - b);
  const stats = [
    ["p50", percentile(values, 0.5), "#1b7f3b"],
    ["p95", percentile(values, 0.95), "#b06f00"],
    ["p99", percentile(values, 0.99), "#b3261e"],
    ["max", values[values.length - 1], "#5b6576"],
  ];
  $("#lateness-stats").textContent =
    `${values.length} tasks: ` + stats.map(([name, ms]) => `${name} ${ms} ms`).join(", ");
  chart.replaceChildren(histogram(values, stats));
}

// ---------------------------------------------------------------- wiring

function reportErrors(promise) {
  return promise.catch((error) => say(error.message, true));
}

async function refresh() {
  await loadList();
  if (list.selected && !$("#detail").hidden && !TERMINAL.includes($("#detail-status").textContent)) {
    await openTask(list.selected);
  }
}

function start() {
  const key = $("#api-key");
  key.value = sessionStorage.getItem(KEY_ITEM) ?? "";
  key.addEventListener("change", () => {
    sessionStorage.setItem(KEY_ITEM, key.value.trim());
    reportErrors(Promise.all([loadList(), loadLateness()]).then(() => say("")));
  });
  $("#status-filter").replaceChildren(...STATUSES.map((status) => el("option", {}, status)));
  $("#status-filter").addEventListener("change", (event) => reportErrors(showStatus(event.target.value)));
  $("#refresh").addEventListener("click", () => reportErrors(refresh()));
  $("#next-page").addEventListener("click", () => {
    list.tokens.push(list.next);
    reportErrors(loadList());
  });
  $("#first-page").addEventListener("click", () => {
    list.tokens = [null];
    reportErrors(loadList());
  });
  $("#create-form").addEventListener("submit", (event) => reportErrors(create(event)));
  $("#lateness-refresh").addEventListener("click", () => reportErrors(loadLateness()));
  reportErrors(Promise.all([showStatus(list.status), loadLateness()]));
  // Only the first page follows new tasks; a later page stays put while it is read.
  setInterval(() => {
    if (list.tokens.length === 1 && !document.hidden) reportErrors(refresh());
  }, REFRESH_MS);
}

start();
