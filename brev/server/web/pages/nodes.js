// Nodes (#/nodes) and one node (#/nodes/NAME): the org's registered GPU boxes, online or
// offline, which of their GPUs are free and which instance holds the others, live readings
// from the newest agent report, driver and CUDA, how old that report is. Org admins may
// remove a node (the plane refuses while instances hold its GPUs, unless forced, which
// deletes them); members are not offered it.

import {
  attempt, clearError, confirmDialog, formatAge, formatBytes, formatDuration, formatMib,
  formatMoney, formatPercent, formatTime, h, route, showError,
} from "../dom.js";
import { timeline } from "./instance_parts.js";

const DASH = "—";
const AGE_TICK_MS = 5000; // report ages move on while nothing else changes

export async function render(root, ctx) {
  return ctx.params.name ? renderNode(root, ctx, ctx.params.name) : renderList(root, ctx);
}

function nodesPath(ctx) {
  return `/orgs/${encodeURIComponent(ctx.org)}/nodes`;
}

// "2 × H200", "1 × H200, 1 × A100", or "none".
function gpusLabel(node) {
  if (!node.gpus.length) return "none";
  const counts = new Map();
  for (const g of node.gpus) {
    const model = g.model || g.name || "GPU";
    counts.set(model, (counts.get(model) || 0) + 1);
  }
  return [...counts].map(([model, n]) => `${n} × ${model}`).join(", ");
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function freeCount(node) {
  return node.gpus.filter((g) => !g.instance).length;
}

function reportAge(node, now = Date.now()) {
  return node.last_heartbeat_at ? `${formatAge(node.last_heartbeat_at, now)} ago` : "none yet";
}

// -- the list -------------------------------------------------------------------------------

const COLUMNS = [
  { key: "status", label: "Status" },
  { key: "gpus", label: "GPUs" },
  { key: "free", label: "Free GPUs", num: true },
  { key: "instances", label: "Instances", num: true },
  { key: "driver", label: "Driver" },
  { key: "cuda", label: "CUDA" },
  { key: "os", label: "OS" },
  { key: "report", label: "Last report" },
];

function fillRow(cells, node, now) {
  const text = {
    status: node.status,
    gpus: gpusLabel(node),
    free: node.gpus.length ? `${freeCount(node)} of ${node.gpus.length}` : DASH,
    instances: String(node.instances.length),
    driver: node.driver_version || DASH,
    cuda: node.cuda_version || DASH,
    os: [node.os, node.arch].filter(Boolean).join(" · ") || DASH,
    report: reportAge(node, now),
  };
  for (const [key, value] of Object.entries(text)) {
    if (cells[key].textContent !== value) cells[key].textContent = value;
  }
  cells.status.className = `status-${node.status}`;
  cells.report.title = node.last_heartbeat_at ? formatTime(node.last_heartbeat_at) : "";
}

async function renderList(root, ctx) {
  const count = h("span", { class: "count", "aria-live": "polite" });
  const tbody = h("tbody");
  const table = h("table", { class: "nodes" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"),
      COLUMNS.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
    tbody);
  const empty = h("p", { class: "notice", hidden: true },
    "No nodes yet. To add a GPU box of your own, run ", h("code", {}, "sudo brev register --name NAME"),
    " on the box itself (signed in to this plane as an org admin), or ",
    h("code", {}, "brev nodes add NAME --host HOST --user USER"), " from here. Its GPUs then show up as ",
    "offers, free to the org.");
  root.append(h("h1", {}, "Nodes"), h("div", { class: "toolbar" }, count), table, empty);

  const rows = new Map(); // name -> {tr, cells}
  let list = null;

  function draw(nodes) {
    const now = Date.now();
    const seen = new Set();
    for (const node of nodes) {
      seen.add(node.name);
      let row = rows.get(node.name);
      if (!row) {
        const cells = {};
        const tr = h("tr", { "data-name": node.name },
          h("th", { scope: "row" }, h("a", { href: route("nodes", node.name) }, node.name)),
          COLUMNS.map((c) => (cells[c.key] = h("td", { class: c.num ? "num" : null }))));
        row = { tr, cells };
        rows.set(node.name, row);
      }
      fillRow(row.cells, node, now);
    }
    for (const [name, row] of rows) {
      if (!seen.has(name)) {
        row.tr.remove();
        rows.delete(name);
      }
    }
    const order = nodes.map((n) => rows.get(n.name).tr);
    if (!order.every((tr, i) => tbody.children[i] === tr) || tbody.children.length !== order.length) {
      tbody.append(...order);
    }
    const online = nodes.filter((n) => n.status === "online").length;
    const free = nodes.reduce((sum, n) => sum + freeCount(n), 0);
    const gpus = nodes.reduce((sum, n) => sum + n.gpus.length, 0);
    count.textContent = nodes.length
      ? `${plural(nodes.length, "node")}, ${online} online · ${free} of ${plural(gpus, "GPU")} free`
      : "";
    table.hidden = nodes.length === 0;
    empty.hidden = nodes.length > 0;
  }

  async function refresh() {
    const next = await ctx.api.getCached(nodesPath(ctx));
    if (next === list) return; // 304: nothing changed
    list = next;
    clearError(root);
    draw(next);
  }

  await refresh();
  ctx.live.subscribe(() => refresh().catch((error) => showError(root, error)));
  const ticker = setInterval(() => list && draw(list), AGE_TICK_MS);
  return () => clearInterval(ticker);
}

// -- one node -------------------------------------------------------------------------------

async function renderNode(root, ctx, name) {
  const path = `${nodesPath(ctx)}/${encodeURIComponent(name)}`;
  const status = h("p", { class: "status-line", "aria-live": "polite" });
  const actions = h("section", { class: "node-actions", "aria-label": "actions" });
  const fields = h("table", { class: "fields" });
  const gpus = h("section", { "aria-labelledby": "node-gpus-title" });
  const problems = h("section", { "aria-live": "polite" });
  const events = h("section", { "aria-labelledby": "node-events-title" });

  let detail = await ctx.api.get(path);
  root.append(
    h("p", { class: "small" }, h("a", { href: "#/nodes" }, "← Nodes")),
    h("h1", {}, name), status, actions, problems,
    gpus,
    h("section", { "aria-labelledby": "node-facts-title" },
      h("h2", { id: "node-facts-title" }, "Facts"), fields),
    events);
  const removal = ctx.role === "admin" ? removeControls(ctx, path, name, actions) : null;
  if (removal) actions.append(removal.element);

  function draw(next, now = Date.now()) {
    detail = next;
    if (removal) removal.update(next);
    status.replaceChildren(h("span", { class: `status-${next.status}` }, next.status),
      ` · last report ${reportAge(next, now)}`,
      h("span", { class: "muted" }, ` · ${gpusLabel(next)}, ${freeCount(next)} free`));
    fields.replaceChildren(h("tbody", {}, factRows(next, now).map(([label, value]) =>
      h("tr", {}, h("th", { scope: "row" }, label), h("td", {}, value)))));
    gpus.replaceChildren(h("h2", { id: "node-gpus-title" }, "GPUs"), gpuTable(next));
    const found = (next.telemetry && next.telemetry.problems) || [];
    problems.replaceChildren(...(found.length ? [h("h2", {}, "What the agent reports wrong"),
      h("ul", { class: "problems" }, found.map((p) => h("li", {}, String(p))))] : []));
    events.replaceChildren(h("h2", { id: "node-events-title" }, "Events"),
      timeline(ctx, next));
  }
  draw(detail);

  let gone = false;
  async function refresh() {
    if (gone) return;
    let next;
    try {
      next = await ctx.api.get(path);
    } catch (error) {
      if (error.status === 404) {
        gone = true;
        root.replaceChildren(h("h1", {}, name), h("p", { role: "status" },
          `Node '${name}' is removed. `, h("a", { href: "#/nodes" }, "Back to nodes"), "."));
        return;
      }
      throw error;
    }
    clearError(root);
    draw(next);
  }

  ctx.live.subscribe(() => refresh().catch((error) => showError(root, error)));
  const ticker = setInterval(() => !gone && draw(detail), AGE_TICK_MS);
  return () => clearInterval(ticker);
}

function number(value, digits = 0) {
  return value === null || value === undefined || Number.isNaN(Number(value))
    ? null : Number(value).toFixed(digits);
}

function gpuTable(node) {
  if (!node.gpus.length) return h("p", { class: "notice" }, "No GPUs reported (yet).");
  const readings = new Map(((node.telemetry && node.telemetry.gpus) || []).map((g) => [g.index, g]));
  const head = ["GPU", "Model", "Held by", "Utilization", "Memory", "Temperature", "Power"];
  const nums = new Set(["Utilization", "Memory", "Temperature", "Power"]);
  return h("table", { class: "node-gpus" },
    h("thead", {}, h("tr", {}, head.map((label) =>
      h("th", { scope: "col", class: nums.has(label) ? "num" : null }, label)))),
    h("tbody", {}, node.gpus.map((g) => {
      const r = readings.get(g.index) || {};
      const util = r.utilization_gpu_pct;
      const temp = number(r.temperature_c);
      const draw = number(r.power_draw_w);
      const limit = number(r.power_limit_w);
      const total = r.memory_total_mib ?? g.memory_mib;
      return h("tr", { "data-index": String(g.index) },
        h("th", { scope: "row" }, String(g.index)),
        // "H200"; the driver's name too when it says more than "NVIDIA H200" does
        h("td", {}, g.model || g.name, g.model && g.name && !g.name.includes(g.model)
          ? h("span", { class: "muted small" }, ` (${g.name})`) : null,
        g.uuid ? h("div", { class: "muted small mono" }, g.uuid) : null),
        h("td", { class: g.instance ? "held" : "free" },
          g.instance ? h("a", { href: route("instances", g.instance) }, g.instance) : "free"),
        h("td", { class: "num" }, formatPercent(util),
          util === null || util === undefined ? null
            : [" ", h("meter", { min: "0", max: "100", value: String(util), "aria-hidden": "true" })]),
        h("td", { class: "num" }, g.unified_memory && r.memory_used_mib === undefined
          ? "shared with host"
          : `${formatMib(r.memory_used_mib)} / ${formatMib(total)}`),
        h("td", { class: "num" }, temp === null ? DASH : `${temp} °C`),
        h("td", { class: "num" }, draw === null ? DASH
          : limit === null ? `${draw} W` : `${draw} / ${limit} W`));
    })));
}

function factRows(node, now) {
  const t = node.telemetry || {};
  const host = t.host || {};
  const ssh = node.ssh_host
    ? `${node.ssh_user ? node.ssh_user + "@" : ""}${node.ssh_host}${node.ssh_port !== 22 ? ":" + node.ssh_port : ""}`
    : DASH;
  const memory = node.memory_bytes ?? host.memory_total_bytes;
  const instances = node.instances.length
    ? node.instances.flatMap((n, i) => [i ? ", " : null, h("a", { href: route("instances", n) }, n)])
    : "none";
  const text = (value) => (value === null || value === undefined || value === "" ? DASH : String(value));
  return [
    ["hostname", text(host.hostname)],
    ["os", text(node.os || host.os)],
    ["kernel", text(host.kernel)],
    ["arch", text(node.arch || host.arch)],
    ["cpus", text(node.cpu_count ?? host.cpu_count)],
    ["memory", memory ? formatBytes(memory) +
      (host.memory_available_bytes ? ` (${formatBytes(host.memory_available_bytes)} available)` : "")
      : DASH],
    ["disk", host.disk_total_bytes
      ? `${formatBytes(host.disk_free_bytes)} free of ${formatBytes(host.disk_total_bytes)}` : DASH],
    ["load (1 min)", host.load_1m === undefined || host.load_1m === null ? DASH : number(host.load_1m, 2)],
    ["uptime", host.uptime_seconds ? formatDuration(host.uptime_seconds) : DASH],
    ["driver", text(node.driver_version)],
    ["cuda", text(node.cuda_version)],
    ["readings from", text(t.source)],
    ["instances", instances],
    ["ssh", ssh],
    ["$/h per GPU", node.price_per_hour === null ? "free" : formatMoney(node.price_per_hour)],
    ["agent", [node.install_mode, node.python ? `python ${node.python}` : null].filter(Boolean).join(", ") || DASH],
    ["agent folder", text(node.node_home)],
    ["host keys", node.host_keys.length ? `${node.host_keys.length} pinned` : "none pinned"],
    ["added", `${formatTime(node.created_at)} by ${node.created_by}, ${formatAge(node.created_at, now)} ago`],
    ["last report", node.last_heartbeat_at
      ? `${formatTime(node.last_heartbeat_at)}, ${formatAge(node.last_heartbeat_at, now)} ago` : "none yet"],
  ];
}

// The admin's "Remove node": confirmed once; when instances still live on the node the
// plane answers 409 with why, and only then is a forced removal (which deletes them)
// offered, confirmed again.
function removeControls(ctx, path, name, section) {
  const remove = h("button", { type: "button", class: "danger" }, "Remove node");
  const force = h("button", { type: "button", class: "danger", hidden: true },
    "Remove anyway, deleting its instances");
  const element = h("div", { class: "actions" }, remove, force);

  async function removeWith(forced, button) {
    await attempt(button, section, async () => {
      await ctx.api.del(forced ? `${path}?force=true` : path);
      ctx.navigate("#/nodes");
    }, (error) => {
      if (error.status === 409 && !forced) force.hidden = false;
    });
  }

  remove.addEventListener("click", async () => {
    const sure = await confirmDialog(
      `Remove node ${name} from the org? Its agent uninstalls itself at its next report; ` +
      "the box itself is left as it is.", { confirm: "Remove" });
    if (sure) await removeWith(false, remove);
  });
  force.addEventListener("click", async () => {
    const sure = await confirmDialog(
      `Remove node ${name} and delete every instance on it? Their files on the box are gone ` +
      "for good.", { confirm: "Remove and delete" });
    if (sure) await removeWith(true, force);
  });
  // Nothing left on the node (deleted elsewhere): a plain removal works again.
  function update(node) {
    if (!force.hidden && node.instances.length === 0) {
      force.hidden = true;
      clearError(section);
    }
  }
  return { element, update };
}
