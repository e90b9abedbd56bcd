// Fleet overview (#/): every GPU of the org, cloud and owned, one cell each, grouped by
// where it is, coloured by live utilization (the number is always written too: colour
// alone tells nothing to a screen reader or to colour-blind eyes). Cost per hour now, the
// last 7 days' spend and the idle GPUs on top.

import { formatAge, formatMib, formatMoney, h, route, showError, clearError } from "../dom.js";

// What the colour classes u0..u5 of a cell stand for (see `cell`).
const BUCKETS = ["<5%", "5–20%", "20–40%", "40–60%", "60–80%", "80–100%"];

export async function render(root, ctx) {
  const cards = h("div", { class: "cards", "aria-live": "polite" });
  const idle = h("section", { class: "idle-list", "aria-live": "polite" });
  const groups = h("div", { class: "fleet" });
  root.append(
    h("h1", {}, "Fleet"),
    cards,
    h("div", { class: "legend", "aria-hidden": "true" }, "utilization:",
      ...BUCKETS.map((text, u) => h("span", { class: `gpu-cell u${u}` }, text)),
      h("span", { class: "gpu-cell idle" }, "idle"),
      h("span", { class: "gpu-cell unknown" }, "no report")),
    idle,
    groups,
  );

  let shown = null; // the bodies drawn last: getCached answers the same objects on a 304
  async function refresh() {
    const [fleet, instances] = await Promise.all([
      ctx.api.getCached(`/orgs/${encodeURIComponent(ctx.org)}/fleet`),
      ctx.api.getCached(`/orgs/${encodeURIComponent(ctx.org)}/instances`),
    ]);
    if (shown && shown[0] === fleet && shown[1] === instances) return;
    shown = [fleet, instances];
    clearError(root);
    drawCards(cards, fleet);
    drawIdle(idle, fleet);
    drawGroups(groups, fleet, instances);
  }

  await refresh();
  ctx.live.subscribe(() => refresh().catch((error) => showError(root, error)));
}

function drawCards(cards, fleet) {
  const gpus = fleet.gpus;
  const reporting = gpus.filter((g) => g.utilization_pct !== null);
  const average = reporting.length
    ? reporting.reduce((sum, g) => sum + g.utilization_pct, 0) / reporting.length
    : null;
  const card = (label, value, extra) =>
    h("div", { class: "card" }, h("div", { class: "label" }, label),
      h("div", { class: "value" }, value), extra ? h("div", { class: "small muted" }, extra) : null);
  cards.replaceChildren(
    card("GPUs", String(gpus.length), `${reporting.length} reporting`),
    card("Average utilization", average === null ? "—" : `${Math.round(average)}%`),
    card("Cost per hour now", formatMoney(fleet.cost_per_hour)),
    card("Spend, last 7 days", formatMoney(fleet.spend_7d)),
    card("Idle GPUs", String(fleet.idle_gpus), `under ${fleet.idle_threshold_pct}% for the autostop window`),
  );
}

function drawIdle(section, fleet) {
  const idle = fleet.gpus.filter((g) => g.idle);
  if (!idle.length) {
    section.replaceChildren();
    return;
  }
  section.replaceChildren(
    h("h2", {}, `Idle GPUs (${idle.length})`),
    h("ul", { class: "idle" }, idle.map((g) => h("li", {},
      g.instance ? h("a", { href: route("instances", g.instance) }, g.instance) : `node ${g.node}`,
      ` GPU ${g.index}`, g.model ? ` (${g.model})` : "",
      g.idle_since ? `: idle for ${formatAge(g.idle_since)}` : ": idle"))),
  );
}

// Nodes by name; cloud GPUs by provider / region of their instance.
function drawGroups(container, fleet, instances) {
  const byName = new Map(instances.map((i) => [i.name, i]));
  const groups = new Map();
  for (const gpu of fleet.gpus) {
    let key;
    if (gpu.source === "node") key = `node ${gpu.node}`;
    else {
      const instance = byName.get(gpu.instance);
      key = instance ? [instance.provider, instance.region].filter(Boolean).join(" / ") : "cloud";
    }
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(gpu);
  }
  if (!groups.size) {
    container.replaceChildren(h("p", { class: "notice" },
      "No GPUs yet. Create an instance (the Create page, or ", h("code", {}, "brev create"),
      ") or register a machine (", h("code", {}, "brev register"), ")."));
    return;
  }
  // Nodes first (owned hardware), then clouds, each by name.
  const keys = [...groups.keys()].sort((a, b) =>
    (b.startsWith("node ") - a.startsWith("node ")) || a.localeCompare(b));
  container.replaceChildren(...keys.map((key) => {
    const gpus = groups.get(key);
    const busy = gpus.filter((g) => g.utilization_pct !== null && !g.idle).length;
    return h("section", { class: "fleet-group", "aria-label": key },
      h("h2", {}, key, h("span", { class: "muted small" }, ` · ${gpus.length} GPUs, ${busy} busy`)),
      h("ul", { class: "gpu-grid" }, gpus.map((g) => h("li", {}, cell(g)))));
  }));
}

function cell(gpu) {
  const util = gpu.utilization_pct;
  const bucket = util === null ? null : util < 5 ? 0 : Math.min(5, Math.ceil(util / 20));
  const classes = ["gpu-cell", bucket === null ? "unknown" : `u${bucket}`];
  if (gpu.idle) classes.push("idle");
  if (!gpu.instance) classes.push("free");
  const percent = util === null ? "—" : `${Math.round(util)}%`;
  const holder = gpu.instance || "free";
  const memory = gpu.memory_total_mib
    ? `${formatMib(gpu.memory_used_mib || 0)} / ${formatMib(gpu.memory_total_mib)}`
    : null;
  // The cell is narrow: one unit, the total rounded ("20.5/80 GiB"); the label has it all.
  const shortMemory = gpu.memory_total_mib
    ? `${((gpu.memory_used_mib || 0) / 1024).toFixed(1)}/${Math.round(gpu.memory_total_mib / 1024)} GiB`
    : null;
  const label = [
    `${gpu.model || "GPU"} ${gpu.index}`,
    gpu.source === "node" ? `on node ${gpu.node}` : null,
    gpu.instance ? `instance ${gpu.instance}` : "free",
    util === null ? "no report yet" : `utilization ${percent}`,
    memory ? `memory ${memory}` : null,
    gpu.idle ? "idle" : null,
    gpu.status,
  ].filter(Boolean).join(", ");
  const href = gpu.instance ? route("instances", gpu.instance) : route("nodes", gpu.node);
  return h("a", { class: classes.join(" "), href, "aria-label": label, title: label },
    h("div", { class: "util" }, percent, gpu.idle ? h("span", { class: "small" }, " idle") : null),
    h("div", { class: "sub" }, `${gpu.index} · ${gpu.model || "GPU"}`),
    h("div", { class: "sub" }, holder),
    shortMemory ? h("div", { class: "sub" }, shortMemory) : null);
}
