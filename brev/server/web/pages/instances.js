// Instances (#/instances): the org's instances, filtered and sorted in the page.
//
// Speed with 1,000 rows: each row is built once and kept (by name); a live event re-reads
// the list with If-None-Match (a 304 is nothing to do) and touches only the rows whose
// data changed. Filtering hides rows, sorting re-orders the same nodes; nothing is rebuilt.
// The rows are an ARIA table of CSS grid rows, not a <table>: a row off screen is then
// `content-visibility: auto` and costs no layout or paint, where a 1,000-row <table> spent
// ~300 ms laying out (bench/dashboard.py).

import {
  formatAge, formatMoney, formatUntil, gpuLabel, h, route, showError, clearError, whereLabel,
} from "../dom.js";

const STATUSES = ["pending", "provisioning", "starting", "running", "stopping", "stopped",
  "deleting", "failed"];

// label, what the cell shows, what it sorts by, and whether it is a number.
const COLUMNS = [
  { key: "name", label: "Name", sort: (i) => i.name },
  { key: "status", label: "Status", sort: (i) => i.status },
  { key: "health", label: "Health", sort: (i) => i.health },
  { key: "gpu", label: "GPU", sort: (i) => gpuLabel(i) },
  { key: "where", label: "Where", sort: (i) => whereLabel(i) },
  { key: "price", label: "$/h", num: true, sort: (i) => i.price_per_hour ?? -1 },
  { key: "age", label: "Age", num: true, sort: (i) => -Date.parse(i.created_at) },
  { key: "owner", label: "Owner", sort: (i) => i.created_by },
  { key: "expires", label: "Expires", sort: (i) => expiry(i) ?? "9" },
];

function expiry(i) {
  const times = [i.expires_at, i.run_lease_until].filter(Boolean).sort();
  return times[0] || null;
}

// Writes the instance into the row's cells; only cells whose text changed are touched.
function fill(cells, i, now) {
  const text = {
    status: i.status,
    health: i.health,
    gpu: gpuLabel(i),
    where: whereLabel(i),
    price: formatMoney(i.price_per_hour),
    age: formatAge(i.created_at, now),
    owner: i.created_by,
    expires: expiry(i) ? formatUntil(expiry(i), now) : "—",
  };
  for (const [key, value] of Object.entries(text)) {
    if (cells[key].textContent !== value) cells[key].textContent = value;
  }
  cells.status.className = `status-${i.status}`;
  cells.health.className = `health-${i.health}`;
  cells.status.title = i.status_reason || ""; // why it failed, on hover
}

export async function render(root, ctx) {
  const base = `/orgs/${encodeURIComponent(ctx.org)}/instances`;
  const filter = h("input", { type: "search", id: "instances-filter", placeholder: "name, GPU, owner…",
    autocomplete: "off" });
  const status = h("select", { id: "instances-status" },
    h("option", { value: "" }, "all"), STATUSES.map((s) => h("option", { value: s }, s)));
  const count = h("span", { class: "count", "aria-live": "polite" });
  const tbody = h("div", { role: "rowgroup", class: "body", id: "instance-rows" });
  const sortButtons = new Map();
  const headRow = h("div", { role: "row", class: "row head" }, COLUMNS.map((c) => {
    const button = h("button", { type: "button", class: "sort" }, c.label);
    const th = h("div", { role: "columnheader", class: c.num ? "num" : null, "aria-sort": "none" },
      button);
    sortButtons.set(c.key, th);
    button.addEventListener("click", () => sortBy(c.key));
    return th;
  }));
  const empty = h("p", { class: "notice", hidden: true }, "No instances yet. Create one on the ",
    h("a", { href: "#/create" }, "Create"), " page, or with ", h("code", {}, "brev create a100"), ".");
  const table = h("div", { role: "table", class: "instances", "aria-label": "instances" },
    h("div", { role: "rowgroup" }, headRow), tbody);
  root.append(
    h("h1", {}, "Instances"),
    h("div", { class: "toolbar" },
      h("label", { for: "instances-filter" }, "Filter"), filter,
      h("label", { for: "instances-status" }, "Status"), status, count),
    table, empty);

  const rows = new Map(); // name -> {tr, cells, data}
  let sort = { key: "age", dir: 1 }; // newest first, like `brev ls` reversed
  let list = [];

  // One row built with h(), then cloned: a deep clone is several times cheaper than making
  // each of 10,000 cells anew.
  const template = h("div", { role: "row", class: "row" },
    h("div", { role: "rowheader" }, h("a")),
    COLUMNS.slice(1).map((c) => h("div", { role: "cell", class: c.num ? "num" : null })));

  function makeRow(i) {
    const tr = template.cloneNode(true);
    tr.dataset.name = i.name;
    const link = tr.firstChild.firstChild;
    link.href = route("instances", i.name);
    link.textContent = i.name;
    const cells = {};
    COLUMNS.slice(1).forEach((c, n) => (cells[c.key] = tr.children[n + 1]));
    const row = { tr, cells, data: i, haystack: "" };
    update(row, i, Date.now());
    return row;
  }

  function update(row, i, now) {
    row.data = i;
    fill(row.cells, i, now);
    row.haystack = [i.name, i.status, i.health, gpuLabel(i), whereLabel(i), i.created_by,
      i.instance_type || ""].join(" ").toLowerCase();
  }

  function applyFilter() {
    const words = filter.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const wanted = status.value;
    let shown = 0;
    for (const row of rows.values()) {
      const visible = (!wanted || row.data.status === wanted) &&
        words.every((w) => row.haystack.includes(w));
      if (row.tr.hidden === visible) row.tr.hidden = !visible;
      if (visible) shown += 1;
    }
    count.textContent = rows.size === shown ? `${rows.size} instances`
      : `${shown} of ${rows.size} instances`;
    empty.hidden = rows.size > 0;
    table.hidden = rows.size === 0;
  }

  function applySort() {
    const column = COLUMNS.find((c) => c.key === sort.key);
    const keyed = [...rows.values()].map((r) => [column.sort(r.data), r]);
    keyed.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0) * sort.dir);
    // Only move rows when the order changed: appending 1,000 rows costs a layout.
    const order = keyed.map(([, r]) => r.tr);
    const same = order.length === tbody.children.length &&
      order.every((tr, n) => tbody.children[n] === tr);
    if (!same) tbody.append(...order);
    for (const [key, th] of sortButtons) {
      th.setAttribute("aria-sort", key !== sort.key ? "none"
        : sort.dir === 1 ? "ascending" : "descending");
    }
  }

  function sortBy(key) {
    sort = { key, dir: sort.key === key ? -sort.dir : 1 };
    applySort();
  }

  // Merge a list from the plane into the kept rows.
  function merge(next) {
    const now = Date.now();
    const seen = new Set();
    for (const i of next) {
      seen.add(i.name);
      const row = rows.get(i.name);
      if (!row) rows.set(i.name, makeRow(i));
      else if (row.data.updated_at !== i.updated_at || row.data.status !== i.status ||
               row.data.health !== i.health) update(row, i, now);
      else fill(row.cells, i, now); // ages move on
    }
    for (const [name, row] of rows) {
      if (!seen.has(name)) {
        row.tr.remove();
        rows.delete(name);
      }
    }
    applySort();
    applyFilter();
  }

  async function refresh() {
    const next = await ctx.api.getCached(base);
    if (next === list) return; // 304: nothing changed
    list = next;
    clearError(root);
    merge(next);
  }

  filter.addEventListener("input", applyFilter);
  status.addEventListener("change", applyFilter);
  const started = performance.now();
  await refresh();
  root.dataset.drawnMs = String(Math.round(performance.now() - started));
  // The list shows no GPU readings: a fleet of reporting agents need not wake it.
  ctx.live.subscribe(() => refresh().catch((error) => showError(root, error)), { readings: false });
  // Ages and "expires in" move on while nothing changes.
  const ticker = setInterval(() => merge(list), 30000);
  return () => clearInterval(ticker);
}
