// The Shipyard console: every view is built in the browser from the native API's JSON.
// The DOM is built with text nodes only (h() below): names, tags and log lines are user input and
// are never parsed as HTML. State changes only through explicit, confirmed calls (Stop).
// On a server with auth, the console asks for an access key id and secret, keeps them in this
// tab's sessionStorage only (never a cookie, never localStorage) and sends them as the bearer
// token of every /api call ("<access key id>:<secret>"; the root's secret alone also works).

const main = document.getElementById("main");
const account = document.getElementById("account");
const TOKEN = "shipyard-token";
let me = null; // who the console is signed in as (/api/v1/whoami)
let timers = [];
let generation = 0; // bumped on each navigation: late answers for an old view are dropped

// -- small helpers ------------------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const enc = encodeURIComponent;

function put(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}
const status = (value) => h("span", { class: `status ${value}` }, value);
// A job waiting to be placed says why (a quota, the capacity, and whose work is in the way).
const pending = (j) => j.secondary_status === "Pending" && Boolean(j.status_message);
const waitingStatus = (j) =>
  pending(j) ? h("span", {}, status(j.status), " ", h("span", { class: "muted" }, j.status_message)) : status(j.status);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
const money = (usd) => {
  const value = Number(usd || 0);
  if (value === 0 || Math.abs(value) >= 1) return `$${value.toFixed(2)}`;
  return `$${value.toPrecision(3)}`;
};
const duration = (start, end) => {
  if (!start) return "";
  const seconds = Math.max(0, ((end ? new Date(end) : new Date()) - new Date(start)) / 1000);
  if (seconds < 90) return `${seconds.toFixed(1)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
};

function every(ms, fn) {
  const mine = generation; // a view left before it finished loading must not poll on
  const id = setInterval(() => {
    if (mine !== generation) clearInterval(id);
    else if (!document.hidden) Promise.resolve(fn()).catch(() => {}); // the next look may do better
  }, ms);
  timers.push(id);
}

class Unauthorized extends Error {} // 401: no credentials, or not this server's
class Forbidden extends Error {} // 403: signed in, but not allowed this call (the message says)

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const token = sessionStorage.getItem(TOKEN);
  if (token) headers.Authorization = `Bearer ${token}`;
  const answer = await fetch(path, { ...options, headers, credentials: "omit" });
  if (answer.status === 401) throw new Unauthorized();
  const body = answer.headers.get("content-type")?.includes("json") ? await answer.json() : await answer.text();
  if (answer.status === 403) throw new Forbidden(body?.message || "Not allowed");
  if (!answer.ok) throw new Error(body?.message || body?.detail || `${answer.status} ${answer.statusText}`);
  return body;
}

// A call whose refusal is shown in place (a card, a panel) instead of failing the whole view.
async function allowed(call) {
  try {
    return await call;
  } catch (error) {
    if (error instanceof Forbidden) return { forbidden: error.message };
    throw error;
  }
}
const refusal = (answer) => h("p", { class: "muted forbidden" }, answer.forbidden);

// The owner of a job or an endpoint: a user's name, or the lab's (made by the root).
const ownerCell = (item) => (item.owner ? item.owner : h("span", { class: "muted" }, "lab"));

// A select of the owners a list has seen; "" is everyone's.
function ownerSelect(owners, current, onchange) {
  const names = [...new Set([...(owners || []), ...(current ? [current] : [])])].sort();
  if (!names.length) return null;
  return h(
    "select",
    { "aria-label": "owner", id: "owner", onchange: (e) => onchange(e.target.value) },
    ["", ...names].map((o) => h("option", { value: o, selected: o === current }, o || "every owner")),
  );
}

function table(columns, rows, options = {}) {
  const head = h(
    "tr",
    {},
    columns.map((c) =>
      h(
        "th",
        {
          class: [c.num ? "num" : "", c.sort ? "sortable" : ""].join(" ").trim() || undefined,
          onclick: c.sort ? () => options.onSort(c.sort) : undefined,
          title: c.sort ? "Sort" : undefined,
        },
        c.label,
        options.sorted === c.sort && c.sort ? (options.order === "asc" ? " ▲" : " ▼") : "",
      ),
    ),
  );
  const body = rows.map((row) =>
    h(
      "tr",
      { class: options.rowClass ? options.rowClass(row) : undefined },
      columns.map((c) => h("td", { class: c.num ? "num" : undefined }, c.cell(row))),
    ),
  );
  return h("table", { id: options.id }, h("thead", {}, head), h("tbody", {}, body));
}

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04"];

// A chart of x against each series. Its box says how many points it drew (data-points: the x
// positions with a value), which the browser tests read: a canvas alone proves nothing.
function chart(container, { title, x, series, time = true, points = false, bars = false, days = false, height = 220, yFormat }) {
  if (!window.uPlot) {
    container.append(h("p", { class: "muted" }, "Charts need the console's assets: run scripts/build-ui."));
    return;
  }
  const drawn = x.filter((v, i) => Number.isFinite(v) && series.some((s) => Number.isFinite(s.values[i]))).length;
  const box = h("div", { class: "chart", "data-chart": title, "data-points": String(drawn) });
  container.append(box);
  const width = Math.max(320, Math.min(1240, (main.clientWidth || 800) - 60));
  // One point (or one instant) gets a few minutes (or units) either side, not years.
  const pad = time ? (days ? 43200 : 120) : 1;
  const range = (u, min, max) => (min === max ? [min - pad, max + pad] : [min, max]);
  const dayAxis = {
    space: 40,
    incrs: [86400, 2 * 86400, 7 * 86400, 14 * 86400],
    values: (u, values) => values.map((v) => new Date(v * 1000).toISOString().slice(5, 10)),
  };
  const opts = {
    title,
    width,
    height,
    scales: { x: { time, range } },
    axes: [
      days ? dayAxis : time ? {} : { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] }, // whole steps
      yFormat ? { values: (u, values) => values.map(yFormat), size: 90 } : {},
    ],
    series: [
      { label: time ? "time" : "x" },
      ...series.map((s, i) => ({
        label: s.label,
        stroke: PALETTE[i % PALETTE.length],
        fill: bars ? `${PALETTE[i % PALETTE.length]}55` : undefined,
        width: (s.points ?? points) ? 0 : 1.5,
        points: { show: (s.points ?? points) || x.length < 30, size: (s.points ?? points) ? 7 : 4 },
        paths: bars && uPlot.paths?.bars ? uPlot.paths.bars({ size: [0.6, 60] }) : undefined,
      })),
    ],
  };
  new uPlot(opts, [x, ...series.map((s) => s.values)], box);
}

// -- authentication -----------------------------------------------------------------------------
function renderLogin(retry, refused = false) {
  me = null;
  renderAccount();
  put(main,
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "This server requires credentials: give your access key id and secret access key (shipyard keys create <you>)."),
    refused ? h("p", { class: "error", id: "refused" }, "Those credentials are not this server's: try again.") : null,
    h(
      "form",
      {
        id: "sign-in",
        onsubmit: (event) => {
          event.preventDefault();
          const key = event.target.elements.key.value.trim();
          const secret = event.target.elements.secret.value;
          sessionStorage.setItem(TOKEN, key ? `${key}:${secret}` : secret);
          retry();
        },
      },
      h("input", { name: "key", autocomplete: "username", placeholder: "access key id", "aria-label": "access key id" }),
      " ",
      h("input", { name: "secret", type: "password", autocomplete: "current-password", placeholder: "secret access key", "aria-label": "secret access key" }),
      " ",
      h("button", { type: "submit" }, "Sign in"),
    ),
  );
}

function signOut() {
  sessionStorage.removeItem(TOKEN);
  renderLogin(route);
}

// Who is signed in, in the header, with a way out (only where the server requires credentials).
function renderAccount() {
  if (!me || !me.auth) return put(account);
  put(
    account,
    h("span", { id: "who", title: me.arn }, me.user || "root", me.administrator ? " (administrator)" : ""),
    " ",
    h("button", { id: "sign-out", onclick: signOut }, "Sign out"),
  );
}

// -- views --------------------------------------------------------------------------------------
const KINDS = { training: "Training jobs", processing: "Processing jobs", transform: "Transform jobs" };
const NATIVE = { training: "training-jobs", processing: "processing-jobs", transform: "transform-jobs" };

async function homeView(view) {
  await renderHome(view);
  every(3000, () => renderHome(view));
}

async function renderHome(view) {
  const none = { items: [], owners: [] };
  const listed = async (path) => {
    const found = await allowed(api(path));
    return found.forbidden ? none : found;
  };
  const [training, processing, transform, tuning, failed, costs, budgets, recent, endpoints] = await Promise.all([
    listed("/api/v1/jobs/training?status=InProgress&limit=10"),
    listed("/api/v1/jobs/processing?status=InProgress&limit=10"),
    listed("/api/v1/jobs/transform?status=InProgress&limit=10"),
    listed("/api/v1/tuning-jobs?status=InProgress&limit=10"),
    listed("/api/v1/jobs/training?status=Failed&limit=5"),
    allowed(api("/api/v1/costs?group_by=kind")),
    allowed(api("/api/v1/budgets")),
    listed("/api/v1/jobs/training?limit=8"),
    listed("/api/v1/endpoints?limit=10"),
  ]);
  const running = [
    ...training.items.map((j) => ({ ...j, kind: "training" })),
    ...processing.items.map((j) => ({ ...j, kind: "processing" })),
    ...transform.items.map((j) => ({ ...j, kind: "transform" })),
  ];
  put(view,
    h("h1", {}, "Shipyard"),
    h(
      "div",
      { class: "grid" },
      h(
        "div",
        { class: "card", id: "running" },
        h("h2", {}, `Running (${running.length + tuning.items.length})`),
        running.length || tuning.items.length
          ? table(
              [
                { label: "job", cell: (j) => h("a", { href: j.href }, j.name) },
                { label: "kind", cell: (j) => j.label },
                { label: "owner", cell: ownerCell },
                { label: "for", cell: (j) => duration(j.created) },
              ],
              [
                ...running.map((j) => ({ ...j, href: `#/jobs/${j.kind}/${enc(j.name)}`, label: j.kind })),
                ...tuning.items.map((j) => ({ ...j, href: `#/tuning/${enc(j.name)}`, label: "tuning" })),
              ],
            )
          : h("p", { class: "muted" }, "Nothing is running."),
        h("h2", {}, "Endpoints"),
        endpoints.items.length
          ? table(
              [
                { label: "endpoint", cell: (e) => h("a", { href: `#/endpoints/${enc(e.name)}` }, e.name) },
                { label: "status", cell: (e) => status(e.status) },
              ],
              endpoints.items,
            )
          : h("p", { class: "muted" }, "No endpoints."),
      ),
      h(
        "div",
        { class: "card", id: "failures" },
        h("h2", {}, "Latest training jobs"),
        recent.items.length
          ? table(
              [
                { label: "job", cell: (j) => h("a", { href: `#/jobs/training/${enc(j.name)}` }, j.name) },
                { label: "status", cell: (j) => status(j.status) },
                { label: "owner", cell: ownerCell },
                { label: "created", cell: (j) => when(j.created) },
              ],
              recent.items,
            )
          : h("p", { class: "muted" }, "No training jobs yet: try shipyard demo."),
        h("h2", {}, "Recent failures"),
        failed.items.length
          ? table(
              [
                { label: "training job", cell: (j) => h("a", { href: `#/jobs/training/${enc(j.name)}` }, j.name) },
                { label: "why", cell: (j) => (j.failure_reason || "").split("\n")[0].slice(0, 120) },
              ],
              failed.items,
            )
          : h("p", { class: "muted" }, "No failed training jobs."),
      ),
      h(
        "div",
        { class: "card", id: "spend" },
        h("h2", {}, "Spend this month"),
        costs.forbidden
          ? refusal(costs)
          : [
              h("p", {}, h("b", {}, money(costs.total.cost_usd)), " ", h("span", { class: "muted" }, `(on SageMaker ${money(costs.total.sagemaker_cost_usd)})`)),
              table(
                [
                  { label: "kind", cell: (r) => r.kind },
                  { label: "cost", num: true, cell: (r) => money(r.cost_usd) },
                ],
                costs.rows,
              ),
            ],
        budgets.length ? h("h2", {}, "Budgets") : null,
        (budgets.forbidden ? [] : budgets).map((b) =>
          h(
            "div",
            {},
            h("div", {}, `${b.name}: ${money(b.spend_usd)} of ${money(b.limit_usd)} (${b.percent}%)`),
            h("div", { class: `bar ${b.percent >= 100 ? "over" : ""}` }, h("span", { style: undefined })),
          ),
        ),
      ),
    ),
  );
  view.querySelectorAll("#spend .bar > span").forEach((bar, i) => {
    bar.style.width = `${Math.min(100, budgets[i].percent)}%`;
  });
}

function listParams() {
  const [, query = ""] = location.hash.split("?");
  return new URLSearchParams(query);
}

async function jobsView(view, kind) {
  const params = listParams();
  const page = Number(params.get("page") || 1);
  const size = 25;
  const state = {
    status: params.get("status") || "",
    name: params.get("name") || "",
    owner: params.get("owner") || "",
    sort: params.get("sort") || "created",
    order: params.get("order") || "desc",
  };
  const go = (changes) => {
    const next = new URLSearchParams({ ...state, page: String(page), ...changes });
    for (const [k, v] of [...next.entries()]) if (!v) next.delete(k);
    location.hash = `#/jobs/${kind}?${next}`;
  };
  const query = new URLSearchParams({ ...state, offset: String((page - 1) * size), limit: String(size) });
  for (const [k, v] of [...query.entries()]) if (!v) query.delete(k);
  const counter = h("span", { class: "muted", id: "count" });
  const newer = h("button", { disabled: page <= 1, onclick: () => go({ page: String(page - 1) }) }, "‹ Newer");
  const older = h("button", { onclick: () => go({ page: String(page + 1) }) }, "Older ›");
  const rows = h("div");
  const owners = h("span");
  let seen = "";
  // The rows refresh by themselves; the filters stay as they are (and keep the focus).
  const refresh = async () => {
    const found = await api(`/api/v1/jobs/${kind}?${query}`);
    counter.textContent = found.total
      ? `${found.offset + 1}–${found.offset + found.items.length} of ${found.total}`
      : "none";
    older.disabled = page >= Math.max(1, Math.ceil(found.total / size));
    if (JSON.stringify(found.owners) !== seen) {
      seen = JSON.stringify(found.owners);
      put(owners, ownerSelect(found.owners, state.owner, (owner) => go({ owner, page: "1" })));
    }
    put(
      rows,
      table(
        [
          { label: "name", sort: "name", cell: (j) => h("a", { href: `#/jobs/${kind}/${enc(j.name)}` }, j.name) },
          { label: "status", sort: "status", cell: (j) => waitingStatus(j) },
          { label: "owner", cell: ownerCell },
          { label: "instances", cell: (j) => `${j.instance_count} × ${j.instance_type}` },
          { label: "created", sort: "created", cell: (j) => when(j.created) },
          { label: "took", cell: (j) => duration(j.created, j.ended) },
        ],
        found.items,
        {
          id: "jobs",
          sorted: state.sort,
          order: state.order,
          onSort: (column) =>
            go({ sort: column, order: state.sort === column && state.order === "desc" ? "asc" : "desc" }),
        },
      ),
    );
  };
  await refresh();
  put(
    view,
    h("h1", {}, KINDS[kind]),
    h(
      "div",
      { class: "toolbar" },
      h("input", {
        placeholder: "name contains",
        value: state.name,
        onchange: (e) => go({ name: e.target.value, page: "1" }),
        "aria-label": "name contains",
      }),
      h(
        "select",
        { onchange: (e) => go({ status: e.target.value, page: "1" }), "aria-label": "status" },
        ["", "InProgress", "Completed", "Failed", "Stopping", "Stopped"].map((s) =>
          h("option", { value: s, selected: s === state.status }, s || "any status"),
        ),
      ),
      owners,
      counter,
      newer,
      older,
    ),
    rows,
  );
  every(3000, refresh);
}

// An s3:// URI of this server's store, as a link that downloads it (path-style S3 GET).
function s3(uri) {
  if (typeof uri !== "string" || !uri.startsWith("s3://")) return uri;
  const path = uri.slice(5).split("/").map(enc).join("/");
  return uri.endsWith("/") || !uri.slice(5).includes("/") ? uri : h("a", { href: `/${path}`, download: "" }, uri);
}

function kv(pairs) {
  return h(
    "dl",
    { class: "kv" },
    pairs.filter(([, v]) => v !== undefined && v !== null && v !== "").flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

function inputsOf(kind, request) {
  if (kind === "training")
    return (request.InputDataConfig || []).map((c) => [c.ChannelName, c.DataSource?.S3DataSource?.S3Uri || ""]);
  if (kind === "processing") return (request.ProcessingInputs || []).map((i) => [i.InputName, i.S3Input?.S3Uri || ""]);
  return [["input", request.TransformInput?.DataSource?.S3DataSource?.S3Uri || ""]];
}

function outputsOf(kind, request, job) {
  if (kind === "training")
    return [
      ["output path", request.OutputDataConfig?.S3OutputPath],
      ["model", job.model_artifacts],
    ];
  if (kind === "processing")
    return (request.ProcessingOutputConfig?.Outputs || []).map((o) => [o.OutputName, o.S3Output?.S3Uri || ""]);
  return [["output path", request.TransformOutput?.S3OutputPath]];
}

function logPanel(kind, name) {
  const pre = h("pre", { class: "log", id: "log", "aria-label": "log" });
  const hosts = h("select", { "aria-label": "instance" });
  let host = "algo-1";
  let offset = 0;
  let lines = 0;
  let busy = false;
  const MAX_LINES = 5000;
  hosts.addEventListener("change", () => {
    host = hosts.value;
    offset = 0;
    lines = 0;
    put(pre, );
    poll();
  });
  let refused = false; // the caller may not read this log: said once, not asked again
  async function poll() {
    if (busy || refused) return;
    busy = true;
    try {
      const found = await allowed(api(`/api/v1/jobs/${kind}/${enc(name)}/log?host=${enc(host)}&offset=${offset}`));
      if (found.forbidden) {
        refused = true;
        pre.textContent = found.forbidden;
        return;
      }
      if (hosts.options.length !== found.hosts.length)
        put(hosts, ...found.hosts.map((x) => h("option", { value: x, selected: x === host }, x)));
      if (found.lines.length) {
        const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 24;
        pre.append(document.createTextNode(found.lines.map((l) => l.m).join("\n") + "\n"));
        lines += found.lines.length;
        while (lines > MAX_LINES && pre.firstChild) {
          lines -= (pre.firstChild.textContent.match(/\n/g) || []).length;
          pre.firstChild.remove();
        }
        if (atBottom) pre.scrollTop = pre.scrollHeight;
      }
      offset = found.offset;
      if (found.lines.length >= 1000) setTimeout(poll, 0); // more waiting: read on at once
    } finally {
      busy = false;
    }
  }
  return { node: h("div", {}, h("div", { class: "toolbar" }, "instance ", hosts), pre), poll };
}

async function jobView(view, kind, name) {
  const job = await api(`/api/v1/jobs/${kind}/${enc(name)}`);
  const header = h("div");
  const renderHeader = (j) =>
    put(header,
      h("h1", {}, name, " ", status(j.status)),
      h(
        "div",
        { class: "toolbar" },
        h("span", { class: "muted", id: "secondary" }, pending(j) ? `${j.secondary_status}: ${j.status_message}` : j.secondary_status),
        h("span", { id: "cost" }, `cost ${money(j.cost_usd)}`, h("span", { class: "muted" }, ` (SageMaker ${money(j.sagemaker_cost_usd)})`)),
        j.status === "InProgress"
          ? h(
              "button",
              {
                class: "danger",
                id: "stop",
                onclick: async (e) => {
                  if (!confirm(`Stop ${kind} job ${name}?`)) return;
                  e.target.disabled = true;
                  const stopped = await allowed(api(`/api/v1/jobs/${kind}/${enc(name)}/stop`, { method: "POST" }));
                  if (stopped.forbidden) header.append(h("p", { class: "error", id: "stop-refused" }, stopped.forbidden));
                  else refresh();
                },
              },
              "Stop",
            )
          : null,
      ),
      j.failure_reason ? h("pre", { class: "error" }, j.failure_reason) : null,
    );
  const timeline = h("ul", { class: "timeline" });
  const renderTimeline = (j) =>
    put(timeline,
      ...j.transitions.map((t) =>
        h("li", {}, h("b", {}, t.status), " ", h("span", { class: "muted" }, `${when(t.start)} · ${duration(t.start, t.end)}`), t.message ? ` — ${t.message}` : ""),
      ),
    );
  renderHeader(job);
  renderTimeline(job);
  const request = job.request;
  const hyper = Object.entries(request.HyperParameters || {}).filter(([k]) => !k.startsWith("sagemaker_"));
  const logs = logPanel(kind, name);
  const charts = h("div", { id: "charts" });
  put(view,
    header,
    h(
      "div",
      { class: "grid" },
      h(
        "div",
        { class: "card" },
        h("h2", {}, "Details"),
        kv([
          ["owner", ownerCell(job)],
          ["instances", `${job.instance_count} × ${job.instance_type}`],
          ["image", request.AlgorithmSpecification?.TrainingImage || request.AppSpecification?.ImageUri || request.ModelName],
          ["created", when(job.created)],
          ["ended", when(job.ended)],
          ["billable", job.billable_seconds ? `${job.billable_seconds} s` : ""],
          ["scaled down", job.scaled_down],
          ["billed as", job.billed_as ? `${job.billed_as}, what it was given (SageMaker's price is for ${job.instance_type})` : ""],
        ]),
        h("h2", {}, "Status"),
        timeline,
      ),
      hyper.length
        ? h("div", { class: "card" }, h("h2", {}, "Hyperparameters"), kv(hyper.map(([k, v]) => [k, String(v)])))
        : null,
      h(
        "div",
        { class: "card" },
        h("h2", {}, "Inputs"),
        kv(inputsOf(kind, request).map(([k, v]) => [k, s3(v)])),
        h("h2", {}, "Outputs"),
        kv(outputsOf(kind, request, job).map(([k, v]) => [k, k === "model" ? s3(v) : v])),
      ),
    ),
    h("h2", {}, "Log"),
    logs.node,
    charts,
  );
  logs.poll();
  let drawn = "";
  async function drawCharts() {
    const [metrics, usage] = await Promise.all([
      kind === "training" ? api(`/api/v1/training-jobs/${enc(name)}/metrics`) : Promise.resolve({ metrics: {} }),
      api(`/api/v1/${NATIVE[kind]}/${enc(name)}/utilization`),
    ]);
    const key = JSON.stringify([Object.values(metrics.metrics).map((p) => p.length), Object.values(usage.hosts).map((p) => p.length)]);
    if (key === drawn) return;
    drawn = key;
    put(charts, );
    const names = Object.keys(metrics.metrics);
    if (names.length) charts.append(h("h2", {}, "Metrics"));
    for (const metric of names) {
      const points = metrics.metrics[metric];
      chart(charts, { title: metric, x: points.map((p) => p.step), series: [{ label: metric, values: points.map((p) => p.value) }], time: false });
    }
    const hosts = Object.keys(usage.hosts);
    if (hosts.length) {
      charts.append(h("h2", {}, "Utilization"));
      for (const host of hosts) {
        const samples = usage.hosts[host];
        const x = samples.map((s) => new Date(s.timestamp).getTime() / 1000);
        chart(charts, {
          title: `${host}: CPU and memory (%)`,
          x,
          series: [
            { label: "CPU %", values: samples.map((s) => s.cpu) },
            { label: "memory %", values: samples.map((s) => s.memory) },
          ],
        });
        // An instance granted GPUs that NVML read: GPUUtilization and GPUMemoryUtilization, 0-100.
        if (samples.some((s) => (s.gpu ?? null) !== null || (s.gpu_memory ?? null) !== null))
          chart(charts, {
            title: `${host}: GPU and GPU memory (%)`,
            x,
            series: [
              { label: "GPU %", values: samples.map((s) => s.gpu ?? null) },
              { label: "GPU memory %", values: samples.map((s) => s.gpu_memory ?? null) },
            ],
          });
      }
    }
  }
  await drawCharts();
  let current = job.status;
  async function refresh() {
    const j = await api(`/api/v1/jobs/${kind}/${enc(name)}`);
    current = j.status;
    renderHeader(j);
    renderTimeline(j);
  }
  every(1000, () => logs.poll());
  every(2000, () => (current === "InProgress" || current === "Stopping" ? Promise.all([refresh(), drawCharts()]) : null));
}

async function tuningListView(view) {
  const owner = listParams().get("owner") || "";
  const found = await api(`/api/v1/tuning-jobs?limit=50${owner ? `&owner=${enc(owner)}` : ""}`);
  put(view,
    h("h1", {}, "Tuning jobs"),
    h("div", { class: "toolbar" }, ownerSelect(found.owners, owner, (o) => (location.hash = `#/tuning${o ? `?owner=${enc(o)}` : ""}`))),
    table(
      [
        { label: "name", cell: (j) => h("a", { href: `#/tuning/${enc(j.name)}` }, j.name) },
        { label: "status", cell: (j) => status(j.status) },
        { label: "owner", cell: ownerCell },
        { label: "strategy", cell: (j) => j.strategy },
        { label: "trials", num: true, cell: (j) => `${j.trials} / ${j.max_trials}` },
        { label: "created", cell: (j) => when(j.created) },
      ],
      found.items,
    ),
  );
}

async function tuningView(view, name) {
  const running = await renderTuning(view, name);
  if (running) every(3000, () => renderTuning(view, name));
}

async function renderTuning(view, name) {
  const params = listParams();
  const sort = params.get("sort") || "objective";
  const order = params.get("order") || (sort === "objective" ? "best" : "asc");
  const job = await api(`/api/v1/tuning-jobs/${enc(name)}`);
  const maximize = job.objective.maximize;
  const counts = {};
  for (const t of job.trials) counts[t.status] = (counts[t.status] || 0) + 1;
  const trials = [...job.trials];
  const better = (a, b) => (maximize ? b - a : a - b);
  if (sort === "objective") {
    trials.sort((a, b) => (a.objective === null) - (b.objective === null) || better(a.objective, b.objective));
    if (order === "worst") trials.reverse();
  } else trials.sort((a, b) => (order === "asc" ? a.number - b.number : b.number - a.number));
  const hyperNames = [...new Set(job.trials.flatMap((t) => Object.keys(t.hyperparameters)))];
  const go = (s, o) => (location.hash = `#/tuning/${enc(name)}?sort=${s}&order=${o}`);
  put(view,
    h("h1", {}, name, " ", status(job.status)),
    job.parallel_note ? h("p", { class: "muted", id: "parallel-note" }, job.parallel_note) : null,
    h(
      "div",
      { class: "toolbar" },
      h("span", {}, `${job.strategy} · ${maximize ? "maximize" : "minimize"} ${job.objective.metrics.join(", ")} · cost ${money(job.cost_usd)} · owner `, ownerCell(job)),
      job.status === "InProgress"
        ? h(
            "button",
            {
              class: "danger",
              onclick: async () => {
                if (!confirm(`Stop tuning job ${name} and its running trials?`)) return;
                await api(`/api/v1/tuning-jobs/${enc(name)}/stop`, { method: "POST" });
              },
            },
            "Stop",
          )
        : null,
    ),
    h("div", { class: "counters" }, Object.entries(counts).map(([s, n]) => h("div", { class: "counter" }, h("b", {}, n), s))),
    h("div", { id: "tuning-chart" }),
    table(
      [
        { label: "#", num: true, sort: "number", cell: (t) => t.number },
        { label: "training job", cell: (t) => h("a", { href: `#/jobs/training/${enc(t.training_job)}` }, t.training_job) },
        { label: "status", cell: (t) => status(t.status) },
        { label: "objective", num: true, sort: "objective", cell: (t) => (t.objective === null ? "" : t.objective.toPrecision(5)) },
        ...hyperNames.map((k) => ({ label: k, cell: (t) => t.hyperparameters[k] ?? "" })),
        { label: "cost", num: true, cell: (t) => (t.cost_usd === null ? "" : money(t.cost_usd)) },
      ],
      trials,
      {
        sorted: sort,
        order: sort === "objective" ? (order === "best" ? "desc" : "asc") : order,
        onSort: (column) =>
          column === "objective" ? go("objective", order === "best" ? "worst" : "best") : go("number", order === "asc" ? "desc" : "asc"),
        rowClass: (t) => (t.training_job === job.best_training_job ? "best" : undefined),
        id: "trials",
      },
    ),
  );
  const done = job.trials.filter((t) => t.objective !== null).sort((a, b) => a.number - b.number);
  if (done.length) {
    let best = null;
    chart(view.querySelector("#tuning-chart"), {
      title: "objective by trial (and the best so far)",
      x: done.map((t) => t.number),
      series: [
        { label: "objective", values: done.map((t) => t.objective), points: true },
        {
          label: "best so far",
          values: done.map((t) => (best = best === null || better(t.objective, best) < 0 ? t.objective : best)),
        },
      ],
      time: false,
      points: false,
    });
  }
  return job.status === "InProgress";
}

async function costsView(view) {
  const params = listParams();
  const tag = params.get("tag") || "Project";
  const [byKind, byType, byDay, byTag, budgets, alerts, waste] = await Promise.all([
    api("/api/v1/costs?group_by=kind"),
    api("/api/v1/costs?group_by=instance_type"),
    api("/api/v1/costs?group_by=day"),
    api(`/api/v1/costs?group_by=tag:${enc(tag)}`),
    api("/api/v1/budgets"),
    api("/api/v1/alerts?limit=20"),
    api("/api/v1/waste"),
  ]);
  const money2 = (rows, key) =>
    table(
      [
        { label: key, cell: (r) => r[key] ?? "(none)" },
        { label: "cost", num: true, cell: (r) => money(r.cost_usd) },
        { label: "on SageMaker", num: true, cell: (r) => money(r.sagemaker_cost_usd) },
      ],
      rows,
    );
  put(view,
    h("h1", {}, "Costs this month"),
    h("p", {}, h("b", {}, money(byKind.total.cost_usd)), h("span", { class: "muted" }, ` at this site's rates · ${money(byKind.total.sagemaker_cost_usd)} on SageMaker`)),
    h("div", { id: "cost-chart" }),
    h(
      "div",
      { class: "grid" },
      h("div", { class: "card" }, h("h2", {}, "By kind"), money2(byKind.rows, "kind")),
      h("div", { class: "card" }, h("h2", {}, "By instance type"), money2(byType.rows, "instance_type")),
      h(
        "div",
        { class: "card" },
        h(
          "h2",
          {},
          "By tag ",
          h("input", {
            value: tag,
            size: 10,
            "aria-label": "tag key",
            onchange: (e) => (location.hash = `#/costs?tag=${enc(e.target.value)}`),
          }),
        ),
        money2(byTag.rows, `tag:${tag}`),
      ),
    ),
    h("h2", {}, "Budgets"),
    budgets.length
      ? table(
          [
            { label: "budget", cell: (b) => b.name },
            { label: "spent", num: true, cell: (b) => `${money(b.spend_usd)} of ${money(b.limit_usd)}` },
            { label: "%", num: true, cell: (b) => b.percent },
            { label: "committed", num: true, cell: (b) => money(b.committed_usd) },
          ],
          budgets,
        )
      : h("p", { class: "muted" }, "No budgets (shipyard budgets create …)."),
    h("h2", {}, "Alerts"),
    alerts.length
      ? table(
          [
            { label: "when", cell: (a) => when(a.created) },
            { label: "budget", cell: (a) => a.budget },
            { label: "what", cell: (a) => a.message },
          ],
          alerts,
        )
      : h("p", { class: "muted" }, "No alerts."),
    h("h2", {}, "Idle endpoints"),
    waste.idle_endpoints.length
      ? table(
          [
            { label: "endpoint", cell: (e) => h("a", { href: `#/endpoints/${enc(e.endpoint)}` }, e.endpoint) },
            { label: "idle for", cell: (e) => `${e.idle_minutes} min` },
            { label: "instances", cell: (e) => (e.instance_types || []).join(", ") },
            { label: "per day", num: true, cell: (e) => money(e.cost_per_day_usd) },
          ],
          waste.idle_endpoints,
        )
      : h("p", { class: "muted" }, "None."),
    h("h2", {}, "Right-sizing"),
    waste.right_sizing.length
      ? table(
          [
            { label: "job", cell: (s) => (NATIVE[s.kind] ? h("a", { href: `#/jobs/${s.kind}/${enc(s.job)}` }, s.job) : s.job) },
            { label: "now", cell: (s) => `${s.instance_count} × ${s.instance_type}` },
            { label: "suggested", cell: (s) => s.suggested_instance_type },
            { label: "saving", num: true, cell: (s) => `${money(s.saving_usd)} (${s.saving_percent}%)` },
            { label: "why", cell: (s) => s.reason },
          ],
          waste.right_sizing,
        )
      : h("p", { class: "muted" }, "No suggestions."),
  );
  // Every day of the month so far, the days without spend at zero.
  const spent = Object.fromEntries(byDay.rows.filter((r) => r.day).map((r) => [r.day, r]));
  const days = [];
  for (let d = new Date(byDay.start); d <= new Date(byDay.end); d = new Date(d.getTime() + 86400000))
    days.push(d.toISOString().slice(0, 10));
  chart(view.querySelector("#cost-chart"), {
    title: "spend by day (USD)",
    x: days.map((day) => new Date(`${day}T00:00:00Z`).getTime() / 1000),
    series: [
      { label: "site", values: days.map((day) => Number(spent[day]?.cost_usd || 0)) },
      { label: "SageMaker", values: days.map((day) => Number(spent[day]?.sagemaker_cost_usd || 0)) },
    ],
    bars: true,
    days: true,
    yFormat: money,
  });
}

async function endpointsView(view) {
  const owner = listParams().get("owner") || "";
  const found = await api(`/api/v1/endpoints${owner ? `?owner=${enc(owner)}` : ""}`);
  put(
    view,
    h("h1", {}, "Endpoints"),
    h("div", { class: "toolbar" }, ownerSelect(found.owners, owner, (o) => (location.hash = `#/endpoints${o ? `?owner=${enc(o)}` : ""}`))),
    found.items.length
      ? table(
          [
            { label: "name", cell: (e) => h("a", { href: `#/endpoints/${enc(e.name)}` }, e.name) },
            { label: "status", cell: (e) => status(e.status) },
            { label: "owner", cell: ownerCell },
            { label: "config", cell: (e) => e.config },
            { label: "created", cell: (e) => when(e.created) },
          ],
          found.items,
          { id: "endpoints" },
        )
      : h("p", { class: "muted" }, "No endpoints: deploy a model (job.deploy(), estimator.deploy())."),
  );
}

async function notebooksView(view) {
  const owner = listParams().get("owner") || "";
  const found = await api(`/api/v1/notebook-instances${owner ? `?owner=${enc(owner)}` : ""}`);
  // A link is made when asked for (it is good for 5 minutes), and shown for the user to follow.
  const open = (n) => {
    if (n.status !== "InService") return h("span", { class: "muted" }, n.failure_reason || "");
    const cell = h("span");
    const ask = h("button", { type: "button", class: "notebook-open" }, "Get link");
    ask.addEventListener("click", async () => {
      try {
        const { url } = await api(`/api/v1/notebook-instances/${enc(n.name)}/url`, { method: "POST" });
        put(cell, h("a", { href: url, target: "_blank", rel: "noopener noreferrer", class: "notebook-link" }, "Open JupyterLab"));
      } catch (error) {
        put(cell, h("span", { class: "error" }, error.message));
      }
    });
    put(cell, ask);
    return cell;
  };
  put(
    view,
    h("h1", {}, "Notebook instances"),
    h("div", { class: "toolbar" }, ownerSelect(found.owners, owner, (o) => (location.hash = `#/notebooks${o ? `?owner=${enc(o)}` : ""}`))),
    found.items.length
      ? table(
          [
            { label: "name", cell: (n) => n.name },
            { label: "status", cell: (n) => status(n.status) },
            { label: "owner", cell: ownerCell },
            { label: "type", cell: (n) => n.instance_type },
            { label: "created", cell: (n) => when(n.created) },
            { label: "JupyterLab", cell: open },
          ],
          found.items,
          { id: "notebooks" },
        )
      : h("p", { class: "muted" }, "No notebook instances: create one with CreateNotebookInstance (boto3's sagemaker client)."),
  );
  return found.items.some((n) => ["Pending", "Stopping", "Deleting"].includes(n.status));
}

async function endpointView(view, name) {
  const render = async () => {
    const [endpoint, metrics] = await Promise.all([
      api(`/api/v1/endpoints/${enc(name)}`),
      api(`/api/v1/endpoints/${enc(name)}/metrics?minutes=60`),
    ]);
    const charts = h("div", { id: "endpoint-charts" });
    const answer = h("pre", { class: "log", id: "answer", style: undefined });
    const body = h("textarea", { id: "payload", rows: 4, cols: 60, "aria-label": "request body" });
    // What the endpoint's model reads, its default first (built-in XGBoost CSV, a framework model
    // JSON, or its model package's SupportedContentTypes): the server says, per variant.
    const accepts = endpoint.variants.find((v) => v.accepts?.length)?.accepts || ["text/csv", "application/json"];
    const type = h("select", { "aria-label": "content type", id: "content-type" }, accepts.map((t) => h("option", { value: t }, t)));
    put(
      view,
      h("h1", {}, name, " ", status(endpoint.status)),
      h("p", {}, `cost so far ${money(endpoint.cost_usd)} · ${endpoint.instance_seconds} instance-seconds · config ${endpoint.config} · owner `, ownerCell(endpoint)),
      endpoint.failure_reason ? h("pre", { class: "error" }, endpoint.failure_reason) : null,
      table(
        [
          { label: "variant", cell: (v) => v.name },
          { label: "model", cell: (v) => v.model },
          {
            label: "instances",
            cell: (v) =>
              v.serverless
                ? `${v.instances.length} serving · serverless, ${v.serverless.memory_mb} MB, up to ${v.serverless.max_concurrency} requests at once`
                : `${v.instances.length} serving / ${v.desired_instance_count} × ${v.instance_type}`,
          },
          { label: "weight", num: true, cell: (v) => (v.weight ?? v.desired_weight) },
        ],
        endpoint.variants,
        { id: "variants" },
      ),
      h("h2", {}, "Invoke"),
      h(
        "div",
        { class: "toolbar" },
        body,
        type,
        h(
          "button",
          {
            id: "invoke",
            onclick: async () => {
              answer.textContent = "…";
              const sent = await fetch(`/endpoints/${enc(name)}/invocations`, {
                method: "POST",
                headers: { "Content-Type": type.value },
                body: body.value,
              });
              answer.textContent = `${sent.status} ${sent.statusText}\n${await sent.text()}`;
            },
          },
          "Send",
        ),
      ),
      answer,
      charts,
    );
    const minutes = metrics.metrics.Invocations.map((p) => p.timestamp);
    if (minutes.length) {
      chart(charts, {
        title: "invocations per minute",
        x: minutes,
        series: [
          { label: "invocations", values: metrics.metrics.Invocations.map((p) => p.Sum) },
          { label: "4XX", values: metrics.metrics.Invocation4XXErrors.map((p) => p.Sum) },
          { label: "5XX", values: metrics.metrics.Invocation5XXErrors.map((p) => p.Sum) },
        ],
      });
      chart(charts, {
        title: "latency (ms, average)",
        x: minutes,
        series: [
          { label: "model", values: metrics.metrics.ModelLatency.map((p) => (p.Average ?? null) && p.Average / 1000) },
          { label: "overhead", values: metrics.metrics.OverheadLatency.map((p) => (p.Average ?? null) && p.Average / 1000) },
        ],
      });
    } else charts.append(h("p", { class: "muted" }, "No invocations in the last hour."));
  };
  await render();
}

async function modelsView(view) {
  const group = listParams().get("group") || "";
  const found = await api(`/api/v1/model-packages${group ? `?group=${enc(group)}` : ""}`);
  const decide = (p, status) => async () => {
    if (!confirm(`${status === "Approved" ? "Approve" : "Reject"} ${p.group} version ${p.version}?`)) return;
    await api(`/api/v1/model-packages/${enc(p.group)}/${p.version}/approval`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ status }),
    });
    await modelsView(view);
  };
  put(
    view,
    h("h1", {}, "Model registry"),
    h(
      "div",
      { class: "toolbar" },
      h(
        "select",
        { "aria-label": "group", onchange: (e) => (location.hash = `#/models${e.target.value ? `?group=${enc(e.target.value)}` : ""}`) },
        ["", ...found.groups].map((g) => h("option", { value: g, selected: g === group }, g || "every group")),
      ),
    ),
    found.items.length
      ? table(
          [
            { label: "group", cell: (p) => p.group },
            { label: "version", num: true, cell: (p) => p.version },
            { label: "approval", cell: (p) => h("span", { class: `status ${p.approval === "Approved" ? "Completed" : p.approval === "Rejected" ? "Failed" : "Stopping"}` }, p.approval) },
            { label: "model", cell: (p) => (p.model_data || []).map((uri) => s3(uri)) },
            { label: "metrics", cell: (p) => (p.metrics ? s3(p.metrics) : "") },
            { label: "created", cell: (p) => when(p.created) },
            {
              label: "",
              cell: (p) => [
                p.approval !== "Approved" ? h("button", { onclick: decide(p, "Approved") }, "Approve") : null,
                " ",
                p.approval !== "Rejected" ? h("button", { class: "danger", onclick: decide(p, "Rejected") }, "Reject") : null,
              ],
            },
          ],
          found.items,
          { id: "packages" },
        )
      : h("p", { class: "muted" }, "No model packages: a pipeline's RegisterModel step (or CreateModelPackage) adds them."),
  );
}

async function pipelinesView(view) {
  const found = await api("/api/v1/pipelines");
  put(
    view,
    h("h1", {}, "Pipelines"),
    found.items.length
      ? table(
          [
            { label: "name", cell: (p) => h("a", { href: `#/pipelines/${enc(p.name)}` }, p.name) },
            { label: "owner", cell: ownerCell },
            { label: "description", cell: (p) => p.description || "" },
            { label: "last run", cell: (p) => when(p.last_run) },
          ],
          found.items,
          { id: "pipelines" },
        )
      : h("p", { class: "muted" }, "No pipelines yet."),
  );
}

function dag(steps, runs) {
  // Columns by depth: a step sits one column after the deepest step it waits for.
  const depth = {};
  const byName = Object.fromEntries(steps.map((s) => [s.name, s]));
  const level = (name, seen = new Set()) => {
    if (depth[name] !== undefined) return depth[name];
    if (seen.has(name)) return 0;
    seen.add(name);
    const after = byName[name]?.after || [];
    depth[name] = after.length ? 1 + Math.max(...after.map((a) => level(a, seen))) : 0;
    return depth[name];
  };
  steps.forEach((s) => level(s.name));
  const columns = [];
  for (const s of steps) (columns[depth[s.name]] ||= []).push(s);
  return h(
    "div",
    { class: "dag", id: "dag" },
    columns.flatMap((column, i) => [
      i ? h("div", { class: "arrow" }, "→") : null,
      h(
        "div",
        { class: "level" },
        column.map((s) => {
          const run = runs?.[s.name];
          const state = run ? run.status : "";
          const link = run?.jobs?.length ? jobLink(s.type, run.jobs[run.jobs.length - 1]) : null;
          return h(
            "div",
            { class: `node ${state}`, "data-step": s.name },
            h("b", {}, s.name),
            h("div", { class: "muted" }, s.type, s.branch ? ` · if ${s.branch.condition} is ${s.branch.outcome}` : ""),
            run ? h("div", {}, status(run.status), run.cached_from ? " cached" : "", run.attempts > 1 ? ` · ${run.attempts} attempts` : "") : h("div", { class: "muted" }, "not run"),
            run?.metadata?.Condition ? h("div", {}, `outcome ${run.metadata.Condition.Outcome}`) : null,
            link,
          );
        }),
      ),
    ]),
  );
}

function jobLink(type, job) {
  const kind = { Training: "training", Processing: "processing", Transform: "transform" }[type];
  if (kind) return h("a", { href: `#/jobs/${kind}/${enc(job)}` }, job);
  if (type === "Tuning") return h("a", { href: `#/tuning/${enc(job)}` }, job);
  return h("div", { class: "muted" }, job);
}

async function pipelineView(view, name, runId) {
  const pipeline = await api(`/api/v1/pipelines/${enc(name)}`);
  const id = runId || pipeline.runs[0]?.id;
  const run = id ? await api(`/api/v1/pipelines/${enc(name)}/executions/${enc(id)}`) : null;
  const steps = run ? Object.fromEntries(run.steps.map((s) => [s.name, s])) : {};
  put(
    view,
    h("h1", {}, name, run ? " " : "", run ? status(run.status) : null),
    pipeline.description ? h("p", {}, pipeline.description) : null,
    pipeline.definition_problem ? h("pre", { class: "error" }, pipeline.definition_problem) : null,
    run ? h("p", {}, `run ${run.arn.split("/").pop()} · started ${when(run.created)} · cost ${money(run.cost_usd)}`) : h("p", { class: "muted" }, "Never run."),
    run?.failure_reason ? h("pre", { class: "error" }, run.failure_reason) : null,
    dag(pipeline.steps, steps),
    run
      ? [
          h("h2", {}, "Steps"),
          table(
            [
              { label: "step", cell: (s) => s.name },
              { label: "status", cell: (s) => status(s.status) },
              { label: "attempts", num: true, cell: (s) => s.attempts },
              { label: "job", cell: (s) => (s.jobs.length ? jobLink(s.type, s.jobs[s.jobs.length - 1]) : "") },
              { label: "cost", num: true, cell: (s) => (s.cost_usd === null ? "" : money(s.cost_usd)) },
              { label: "note", cell: (s) => (s.cached_from ? `cached from ${s.cached_from.split("/").pop()}` : (s.failure_reason || "").split("\n")[0]) },
            ],
            run.steps,
            { id: "steps" },
          ),
        ]
      : null,
    h("h2", {}, "Runs"),
    table(
      [
        { label: "run", cell: (r) => h("a", { href: `#/pipelines/${enc(name)}/${enc(r.id)}` }, r.id) },
        { label: "status", cell: (r) => status(r.status) },
        { label: "started", cell: (r) => when(r.created) },
        { label: "took", cell: (r) => duration(r.created, r.ended) },
        { label: "failure", cell: (r) => (r.failure_reason || "").split("\n")[0].slice(0, 100) },
      ],
      pipeline.runs,
      { id: "runs" },
    ),
  );
  return run && (run.status === "Executing" || run.status === "Stopping");
}

// -- routing ------------------------------------------------------------------------------------
async function route() {
  generation += 1;
  const mine = generation;
  for (const id of timers) clearInterval(id);
  timers = [];
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/";
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const section = parts[0] === "jobs" ? parts[1] : parts[0] || "home";
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === section));
  const view = h("div");
  const show = () => {
    if (mine === generation) put(main, view);
  };
  try {
    if (!me) {
      me = await api("/api/v1/whoami");
      renderAccount();
    }
    if (parts.length === 0) await homeView(view);
    else if (parts[0] === "jobs" && KINDS[parts[1]] && parts.length === 2) await jobsView(view, parts[1]);
    else if (parts[0] === "jobs" && KINDS[parts[1]] && parts.length === 3) await jobView(view, parts[1], parts[2]);
    else if (parts[0] === "tuning" && parts.length === 1) await tuningListView(view);
    else if (parts[0] === "tuning" && parts.length === 2) await tuningView(view, parts[1]);
    else if (parts[0] === "costs") await costsView(view);
    else if (parts[0] === "endpoints" && parts.length === 1) await endpointsView(view);
    else if (parts[0] === "endpoints" && parts.length === 2) await endpointView(view, parts[1]);
    else if (parts[0] === "notebooks") {
      let busy = await notebooksView(view); // polled while one is starting or stopping
      every(3000, async () => {
        if (busy) busy = await notebooksView(view);
      });
    }
    else if (parts[0] === "pipelines" && parts.length === 1) await pipelinesView(view);
    else if (parts[0] === "models") await modelsView(view);
    else if (parts[0] === "pipelines" && parts.length <= 3) {
      if (await pipelineView(view, parts[1], parts[2])) every(2000, () => pipelineView(view, parts[1], parts[2]));
    }
    else put(view, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Home")));
    show();
  } catch (error) {
    if (error instanceof Unauthorized) {
      const refused = sessionStorage.getItem(TOKEN) !== null;
      sessionStorage.removeItem(TOKEN);
      return renderLogin(route, refused);
    }
    if (error instanceof Forbidden) put(view, h("h1", {}, "Not allowed"), h("p", { class: "error", id: "forbidden" }, error.message));
    else put(view, h("h1", {}, "Something went wrong"), h("p", { class: "error" }, error.message));
    show();
  }
}

window.addEventListener("hashchange", route);
route();
