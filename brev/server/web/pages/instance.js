// Instance page (#/instances/NAME): what `brev show` prints (where it runs, its GPUs, what
// was tried), live GPU charts, how to connect, and the actions. Every member of an org may
// start, stop, delete and set autostop/TTL on its instances (brev.server.services
// .instance_actions checks no role), so everyone gets the same buttons here.

import {
  attempt, clearError, confirmDialog, formatAge, formatMoney, formatTime, formatUntil, gpuLabel,
  h, route, showError,
} from "../dom.js";
import { attemptsTable, chartsPanel, commandsPanel, gpuTable, settingsPanel, timeline } from
  "./instance_parts.js";

export async function render(root, ctx) {
  const name = ctx.params.name;
  const path = `/orgs/${encodeURIComponent(ctx.org)}/instances/${encodeURIComponent(name)}`;
  const title = h("h1", {}, name);
  const actions = h("div", { class: "actions", role: "group", "aria-label": "actions" });
  const status = h("p", { class: "status-line", "aria-live": "polite" });
  const fields = h("table", { class: "fields" });
  const gpus = h("section", { "aria-labelledby": "gpus-title" });
  const attempts = h("section");
  const events = h("section", { "aria-labelledby": "events-title" });

  let detail = await ctx.api.get(path);
  const charts = chartsPanel(ctx, path);
  const settings = settingsPanel(ctx, path, (next) => draw(next));
  const commands = commandsPanel(ctx, detail);
  root.append(
    h("p", { class: "small" }, h("a", { href: "#/instances" }, "← Instances")),
    title, status, actions,
    h("div", { class: "grid-2" },
      h("section", { "aria-labelledby": "where-title" }, h("h2", { id: "where-title" }, "Where it runs"),
        fields),
      h("div", {}, commands.element, settings.element)),
    gpus, charts.element, attempts, events);

  let actionsKey = null;
  function draw(next) {
    detail = next;
    clearError(root);
    status.replaceChildren(...statusLine(next));
    // Rebuilt only when what they offer changes, so a focused button is not replaced.
    const key = `${next.status}/${next.desired_status}`;
    if (key !== actionsKey) {
      actionsKey = key;
      actions.replaceChildren(...actionButtons(ctx, path, next, draw, root));
    }
    fields.replaceChildren(h("tbody", {}, fieldRows(next).map(([label, value]) =>
      h("tr", {}, h("th", { scope: "row" }, label), h("td", {}, value)))));
    gpus.replaceChildren(h("h2", { id: "gpus-title" }, "GPUs"), ...gpuTable(next));
    attempts.replaceChildren(...attemptsTable(next));
    events.replaceChildren(h("h2", { id: "events-title" }, "Events"), timeline(ctx, next));
    settings.update(next);
  }
  draw(detail);
  charts.refresh(true); // now that the charts' box is in the page and has a width

  async function refresh() {
    let next;
    try {
      next = await ctx.api.get(path);
    } catch (error) {
      if (error.status === 404) {
        gone();
        return;
      }
      throw error;
    }
    draw(next);
    charts.refresh();
  }

  function gone() {
    root.replaceChildren(h("h1", {}, name),
      h("p", { role: "status" }, `'${name}' is deleted. `, h("a", { href: "#/instances" }, "Back to instances"), "."));
    charts.destroy();
  }

  ctx.live.subscribe(() => refresh().catch((error) => showError(root, error)));
  return () => charts.destroy();
}

function statusLine(d) {
  const parts = [h("span", { class: `status-${d.status}` }, d.status)];
  if (d.desired_status !== d.status) parts.push(h("span", { class: "muted" }, ` (wanted: ${d.desired_status})`));
  parts.push(" · health ", h("span", { class: `health-${d.health}` }, d.health));
  if (d.status_reason) parts.push(h("span", { class: "muted" }, ` · ${d.status_reason}`));
  return parts;
}

// What may be asked in this state (the plane refuses the rest with 409 anyway).
function actionButtons(ctx, path, d, draw, root) {
  const ending = ["deleting", "deleted"].includes(d.status) || d.desired_status === "deleted";
  const buttons = [];
  const act = (label, verb, run) => {
    const button = h("button", { type: "button", class: verb === "delete" ? "danger" : null }, label);
    button.addEventListener("click", () => attempt(button, root, async () => {
      const next = await run();
      if (next) draw(next);
    }));
    buttons.push(button);
  };
  if (!ending && d.status !== "failed" && d.desired_status !== "running" && d.status !== "running") {
    act("Start", "start", () => ctx.api.post(`${path}/start`));
  }
  if (!ending && !["failed", "pending", "provisioning", "stopped"].includes(d.status) &&
      d.desired_status !== "stopped") {
    act("Stop", "stop", () => ctx.api.post(`${path}/stop`));
  }
  if (!ending) {
    act("Delete", "delete", async () => {
      const sure = await confirmDialog(
        `Delete ${d.name}? Its machine and disk are gone for good.`, { confirm: "Delete" });
      return sure ? ctx.api.del(path) : null;
    });
  }
  return buttons;
}

function fieldRows(d) {
  const node = d.node ? h("a", { href: route("nodes", d.node) }, d.node) : null;
  const autostop = d.autostop_idle_seconds
    ? `${d.autostop_delete ? "delete" : "stop"} after ${Math.round(d.autostop_idle_seconds / 60)} min idle` +
      (d.idle_since ? ` (idle for ${formatAge(d.idle_since)})` : "")
    : "off";
  return [
    ["gpu", gpuLabel(d)],
    node ? ["node", node] : ["provider", [d.provider, d.instance_type].filter(Boolean).join(" ") || "—"],
    ["where", d.zone || d.region || (d.node ? `node ${d.node}` : "—")],
    ["spot", d.spot ? "yes" : "no"],
    ["$/h", formatMoney(d.price_per_hour)],
    ["machine", d.provider_ref || "—"],
    ["address", d.public_ip || "—"],
    ["created", `${formatTime(d.created_at)} by ${d.created_by}, ${formatAge(d.created_at)} ago`],
    ["ttl", d.expires_at ? `deleted ${formatUntil(d.expires_at)} (${formatTime(d.expires_at)})` : "—"],
    ["lease", d.run_lease_until ? `deleted ${formatUntil(d.run_lease_until)} unless \`brev run\` renews it` : "—"],
    ["autostop", autostop],
    ["last report", d.last_heartbeat_at ? `${formatAge(d.last_heartbeat_at)} ago` : "none yet"],
  ];
}
