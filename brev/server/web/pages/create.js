// #/create: offer search with the filters of `brev search`, a Create button per offer, and
// the new instance shown live (its placements and attempts) until it runs or fails.

import { ApiError } from "../api.js";
import { attempt, clearError, formatMoney, h, route, showError } from "../dom.js";

const FINAL = new Set(["running", "failed", "stopped", "deleted"]);
const DASH = "—";

function field(id, label, input) {
  return h("label", { for: id }, label, " ", input);
}

function number(value) {
  return value === null || value === undefined ? DASH : String(value);
}

// Registered nodes' free GPUs first, then the plane's order (cheapest first).
export function ordered(offers) {
  const local = offers.filter((o) => o.provider === "local");
  return [...local, ...offers.filter((o) => o.provider !== "local")];
}

// What `brev create` would send for this offer: its GPU and count, provider, region (a
// node by name), spot, and its price as the ceiling, so the plane cannot pick dearer.
export function createBody(offer, { name, spot }) {
  const body = {
    gpu: offer.gpu_model ? `${offer.gpu_model}:${offer.gpu_count}` : "cpu",
    providers: [offer.provider],
    spot: Boolean(spot),
    idempotency_key: `web-${crypto.randomUUID()}`,
  };
  if (offer.node) body.node = offer.node;
  else body.region = offer.region;
  const price = spot ? offer.spot_price_per_hour : offer.price_per_hour;
  if (price) body.max_price = price;
  if (name) body.name = name;
  return body;
}

export async function render(root, ctx) {
  const { api, org } = ctx;
  const input = (id, attrs = {}) => h("input", { id, name: id, ...attrs });
  const gpu = input("f-gpu", { placeholder: "a100, h100:8, any", autocomplete: "off" });
  const provider = input("f-provider", { placeholder: "aws,gcp,local" });
  const region = input("f-region", { placeholder: "us-east-1" });
  const maxPrice = input("f-max-price", { type: "number", min: "0.01", step: "0.01" });
  const minVram = input("f-min-vram", { type: "number", min: "0", step: "1" });
  const spot = input("f-spot", { type: "checkbox" });
  const name = input("f-name", { placeholder: "generated", autocomplete: "off" });
  const count = h("span", { class: "count muted", "aria-live": "polite" });
  const rows = h("tbody", { id: "offer-rows" });
  const results = h("section", { class: "panel", "aria-label": "offers" });
  const watchPanel = h("section", { id: "new-instance", class: "panel", hidden: true,
    "aria-live": "polite", "aria-label": "new instance" });
  let watching = null; // {name, unsubscribe}
  let searchSeq = 0;

  const form = h(
    "form",
    { class: "toolbar", onsubmit: (e) => { e.preventDefault(); search(); } },
    field("f-gpu", "GPU", gpu),
    field("f-provider", "provider", provider),
    field("f-region", "region", region),
    field("f-max-price", "max $/h", maxPrice),
    field("f-min-vram", "min VRAM GiB", minVram),
    h("label", { for: "f-spot" }, spot, " spot"),
    h("button", { type: "submit", class: "primary" }, "Search"),
    count,
  );

  results.append(
    h("table", { id: "offers" },
      h("thead", {}, h("tr", {},
        ...["provider", "type", "GPU", "VRAM GiB", "vCPUs", "RAM GiB", "region", "$/h",
          "spot $/h", ""].map((t) => h("th", { scope: "col" }, t)))),
      rows),
  );
  root.append(
    h("h1", {}, "Create an instance"),
    form,
    h("p", {}, field("f-name", "name (optional)", name)),
    watchPanel,
    results,
  );

  async function search() {
    const seq = ++searchSeq;
    const q = new URLSearchParams();
    if (gpu.value.trim()) q.set("gpu", gpu.value.trim());
    if (provider.value.trim()) q.set("provider", provider.value.trim());
    if (region.value.trim()) q.set("region", region.value.trim());
    if (maxPrice.value) q.set("max_price", maxPrice.value);
    if (minVram.value) q.set("min_vram", minVram.value);
    if (spot.checked) q.set("spot", "true");
    count.textContent = "searching…";
    try {
      const offers = ordered(await api.get(`/orgs/${encodeURIComponent(org)}/offers?${q}`));
      if (seq !== searchSeq) return;
      clearError(root);
      showOffers(offers, spot.checked);
    } catch (error) {
      if (seq !== searchSeq) return;
      count.textContent = "";
      rows.replaceChildren();
      showError(root, error);
    }
  }

  function showOffers(offers, wantSpot) {
    count.textContent = offers.length === 1 ? "1 offer" : `${offers.length} offers`;
    if (!offers.length) {
      rows.replaceChildren(h("tr", {}, h("td", { colspan: 10, class: "muted" },
        "No offers match; drop a filter (region, max price, min VRAM, spot).")));
      return;
    }
    rows.replaceChildren(...offers.slice(0, 300).map((offer) => {
      const gpuText = offer.gpu_model ? `${offer.gpu_model} × ${offer.gpu_count}` : "CPU";
      const where = offer.provider === "local" ? `node ${offer.instance_type}` : offer.region;
      const button = h("button", { type: "button", class: "primary",
        "aria-label": `Create ${gpuText} on ${offer.provider} ${offer.instance_type} ${where}` },
        "Create");
      button.addEventListener("click", () => create(offer, wantSpot, button));
      return h("tr", {},
        h("td", {}, offer.provider),
        h("td", {}, offer.instance_type),
        h("td", {}, gpuText),
        h("td", { class: "num" }, number(offer.gpu_memory_gib)),
        h("td", { class: "num" }, number(offer.vcpus)),
        h("td", { class: "num" }, number(offer.memory_gib)),
        h("td", {}, offer.provider === "local" ? "local" : offer.region),
        h("td", { class: "num" }, formatMoney(offer.price_per_hour)),
        h("td", { class: "num" }, formatMoney(offer.spot_price_per_hour)),
        h("td", {}, button));
    }));
    if (offers.length > 300) {
      rows.append(h("tr", {}, h("td", { colspan: 10, class: "muted" },
        `and ${offers.length - 300} more: narrow the search`)));
    }
  }

  async function create(offer, wantSpot, button) {
    await attempt(button, root, async () => {
      const body = createBody(offer, { name: name.value.trim(), spot: wantSpot });
      const detail = await api.post(`/orgs/${encodeURIComponent(org)}/instances`, body);
      name.value = "";
      watch(detail);
    });
  }

  function watch(detail) {
    if (watching) watching.unsubscribe();
    const path = `/orgs/${encodeURIComponent(org)}/instances/${encodeURIComponent(detail.name)}`;
    const state = { name: detail.name, unsubscribe: () => {} };
    watching = state;
    showInstance(detail);
    if (FINAL.has(detail.status)) return;
    const refresh = async () => {
      if (watching !== state) return;
      try {
        const fresh = await api.get(path);
        if (watching !== state) return;
        showInstance(fresh);
        if (FINAL.has(fresh.status)) state.unsubscribe();
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) state.unsubscribe();
        showError(watchPanel, error);
      }
    };
    state.unsubscribe = ctx.live.subscribe(refresh, { readings: false });
    // A live event may come before the stream is open: read once more shortly anyway.
    state.timer = setInterval(refresh, 3000);
    const stop = state.unsubscribe;
    state.unsubscribe = () => {
      clearInterval(state.timer);
      stop();
    };
  }

  function showInstance(detail) {
    watchPanel.hidden = false;
    const status = h("span", { id: "new-status", class: `status-${detail.status}` },
      detail.status);
    const where = detail.node
      ? `node ${detail.node}`
      : [detail.provider, detail.instance_type, detail.zone || detail.region]
        .filter(Boolean).join(" ");
    watchPanel.replaceChildren(
      h("h2", {}, "New instance ",
        h("a", { href: route("instances", detail.name), id: "new-name" }, detail.name)),
      h("p", {}, status,
        where ? ` · ${where}` : "",
        detail.price_per_hour != null ? ` · ${formatMoney(detail.price_per_hour)}/h` : "",
        detail.status_reason ? ` · ${detail.status_reason}` : ""),
      attemptsTable(detail),
    );
  }

  await search();
  return () => {
    searchSeq += 1;
    if (watching) watching.unsubscribe();
    watching = null;
  };
}

// Each placement of the plan with what became of it: from the instance's attempt events
// (newest first in detail.events), the plan's order, and where it runs now.
export function attemptsTable(detail) {
  const outcome = new Map(); // attempt number (1-based) -> text
  for (const event of [...(detail.events || [])].reverse()) {
    const n = event.details && event.details.attempt;
    if (!n) continue;
    if (event.action === "instance.attempt") outcome.set(n, "trying");
    else if (event.action === "instance.attempt_failed") {
      outcome.set(n, `failed: ${event.details.reason || event.details.code || "?"}`);
    } else if (event.action === "instance.provider_error") {
      outcome.set(n, `retrying: ${event.details.reason || "provider error"}`);
    }
  }
  const plan = detail.plan || [];
  const rows = plan.map((p, i) => {
    let text = outcome.get(i + 1) || (i < detail.attempt ? "skipped" : "not tried");
    const here = i === detail.attempt; // the placement tried last (brev.api: attempt)
    if (here && detail.status === "running") text = "running";
    else if (here && text === "trying" && detail.status === "failed") text = "failed";
    return h("tr", {},
      h("td", { class: "num" }, String(i + 1)),
      h("td", {}, p.provider),
      h("td", {}, p.instance_type),
      h("td", {}, p.gpu_model ? `${p.gpu_model} × ${p.gpu_count}` : "CPU"),
      h("td", {}, [p.region, p.zone].filter(Boolean).join(" / ")),
      h("td", {}, p.spot ? "spot" : "on-demand"),
      h("td", { class: "num" }, formatMoney(p.price_per_hour)),
      h("td", {}, text));
  });
  return h("table", { id: "attempts", "aria-label": "attempts" },
    h("thead", {}, h("tr", {},
      ...["#", "provider", "type", "GPU", "where", "", "$/h", "outcome"].map(
        (t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.length ? rows :
      h("tr", {}, h("td", { colspan: 8, class: "muted" }, "no placements"))));
}
