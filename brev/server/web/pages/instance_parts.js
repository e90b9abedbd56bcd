// Sections of the instance page (pages/instance.js): GPU table, charts, connection
// commands, autostop/TTL settings, attempts and events.

import { columns, createChart, METRICS } from "../charts.js";
import { clearError, copyButton, formatAge, formatTime, h, showError } from "../dom.js";

const RANGES = [
  { label: "Hour", seconds: 3600, every: 10 },
  { label: "Day", seconds: 86400, every: 60 },
  { label: "Week", seconds: 7 * 86400, every: 300 },
];
const CLOUD_HOME = "/home/ubuntu"; // brev.server.services.ssh_access.CLOUD_LOGIN's home

// -- GPU table: the one `brev show` prints (brev.cli.gpus) -------------------------------------

const one = (value, unit) => (value === null || value === undefined ? "—" : `${Math.round(value)}${unit}`);

export function gpuTable(d) {
  const gpus = (d.telemetry && d.telemetry.gpus) || [];
  if (!d.last_heartbeat_at) return [h("p", { class: "notice" }, "No agent report yet.")];
  if (!gpus.length) return [h("p", { class: "notice" }, "The agent reports no GPUs.")];
  const head = ["gpu", "name", "util", "memory", "temp", "power", "processes"];
  const memory = (g) => (g.memory_total_mib === null || g.memory_total_mib === undefined ? "—"
    : `${((g.memory_used_mib || 0) / 1024).toFixed(1)}/${(g.memory_total_mib / 1024).toFixed(1)} GiB` +
      (g.unified_memory ? " (unified)" : ""));
  const power = (g) => (g.power_draw_w === null || g.power_draw_w === undefined ? "—"
    : g.power_limit_w ? `${Math.round(g.power_draw_w)}/${Math.round(g.power_limit_w)}W`
      : `${Math.round(g.power_draw_w)}W`);
  const processes = (g) => (g.processes || [])
    .map((p) => `${String(p.name || "?").split("/").pop()}[${p.pid}]`).join(", ") || "—";
  return [
    h("p", { class: "small muted" }, `Last agent report ${formatAge(d.last_heartbeat_at)} ago.`),
    h("table", { class: "gpus" },
      h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, gpus.map((g) => h("tr", {},
        h("th", { scope: "row" }, String(g.index ?? "")), h("td", {}, String(g.name ?? "")),
        h("td", { class: "num" }, one(g.utilization_gpu_pct, "%")), h("td", { class: "num" }, memory(g)),
        h("td", { class: "num" }, one(g.temperature_c, "C")), h("td", { class: "num" }, power(g)),
        h("td", {}, processes(g)))))),
  ];
}

// -- charts -------------------------------------------------------------------------------

export function chartsPanel(ctx, path) {
  let range = RANGES[0];
  let charts = []; // one per metric, for the GPUs in `indices`
  let indices = "";
  let last = 0;
  const body = h("div", { class: "charts" });
  const note = h("p", { class: "notice", hidden: true }, "No GPU metrics in this range yet.");
  const buttons = RANGES.map((r) => {
    const button = h("button", { type: "button", "aria-pressed": String(r === range) }, r.label);
    button.addEventListener("click", () => {
      range = r;
      for (const b of buttons) b.setAttribute("aria-pressed", String(b === button));
      load().catch((error) => showError(element, error));
    });
    return button;
  });
  const element = h("section", { "aria-labelledby": "charts-title", class: "charts-panel" },
    h("div", { class: "toolbar" }, h("h2", { id: "charts-title" }, "GPU metrics"),
      h("div", { class: "range", role: "group", "aria-label": "time range" }, buttons)),
    note, body);

  function destroy() {
    for (const chart of charts) chart.destroy();
    charts = [];
    indices = "";
  }

  async function load() {
    last = Date.now();
    const since = new Date(Date.now() - range.seconds * 1000).toISOString();
    const series = await ctx.api.get(`${path}/metrics?since=${encodeURIComponent(since)}`);
    clearError(element);
    note.hidden = series.length > 0;
    const gpus = series.map((s) => s.gpu_index);
    if (gpus.join(",") !== indices) {
      destroy();
      body.replaceChildren();
      indices = gpus.join(",");
      if (!series.length) return;
      charts = METRICS.map((metric) => {
        const box = h("figure", { class: "chart", "aria-label": `${metric.title} per GPU` },
          h("h3", {}, `${metric.title} (${metric.unit})`));
        body.append(box);
        return { metric, ...createChart(box, metric, gpus, columns(series, metric)) };
      });
    } else {
      for (const chart of charts) chart.setData(columns(series, chart.metric));
    }
  }

  return {
    element,
    // On live events: at most once per range.every seconds (agents report every 10 s).
    refresh(force = false) {
      if (force || Date.now() - last >= range.every * 1000) {
        load().catch((error) => showError(element, error));
      }
    },
    destroy,
  };
}

// -- connecting ---------------------------------------------------------------------------

export function commandsPanel(ctx, d) {
  const list = h("ul", { class: "commands" });
  const vscode = h("a", { class: "vscode" }, "Open in VS Code (Remote-SSH)");
  const setFolder = (folder) =>
    vscode.setAttribute("href", `vscode://vscode-remote/ssh-remote+${encodeURIComponent(d.name)}${folder}`);
  setFolder(CLOUD_HOME);
  for (const command of [`brev shell ${d.name}`, `ssh ${d.name}`, `brev jupyter ${d.name}`,
    `brev open ${d.name}`]) {
    list.append(h("li", {}, h("code", {}, command), copyButton(command)));
  }
  if (d.node) {
    // On a node the session starts in the instance's working directory.
    ctx.api.get(`/orgs/${encodeURIComponent(ctx.org)}/nodes/${encodeURIComponent(d.node)}`)
      .then((node) => node.node_home && setFolder(`${node.node_home}/instances/${d.name}`))
      .catch(() => {}); // the home folder link still works
  }
  const element = h("section", { "aria-labelledby": "connect-title" },
    h("h2", { id: "connect-title" }, "Connect"), list,
    h("p", { class: "small" }, vscode,
      h("span", { class: "muted" }, " · `ssh` and VS Code need `brev refresh` once (SSH config).")));
  return { element };
}

// -- autostop and TTL ---------------------------------------------------------------------

export function settingsPanel(ctx, path, draw) {
  const minutes = h("input", { id: "autostop-minutes", type: "number", min: 1, max: 43200, step: 1, required: true });
  const deletes = h("input", { id: "autostop-delete", type: "checkbox" });
  const autostopNow = h("span", { class: "small muted" });
  const autostopOff = h("button", { type: "button" }, "Turn autostop off");
  const hours = h("input", { id: "ttl-hours", type: "number", min: 0.05, max: 8760, step: "any", required: true });
  const ttlNow = h("span", { class: "small muted" });
  const ttlOff = h("button", { type: "button" }, "Remove TTL");
  const autostopForm = h("form", { class: "inline", "aria-label": "autostop" },
    h("label", { for: "autostop-minutes" }, "Autostop after (minutes idle)"), minutes,
    h("label", { for: "autostop-delete" }, deletes, " delete instead of stop"),
    h("button", { type: "submit" }, "Set autostop"), autostopOff, autostopNow);
  const ttlForm = h("form", { class: "inline", "aria-label": "ttl" },
    h("label", { for: "ttl-hours" }, "Delete in (hours from now)"), hours,
    h("button", { type: "submit" }, "Set TTL"), ttlOff, ttlNow);
  const element = h("section", { "aria-labelledby": "settings-title" },
    h("h2", { id: "settings-title" }, "Autostop and TTL"), autostopForm, ttlForm);

  const put = async (what, body) => {
    try {
      draw(await ctx.api.put(`${path}/${what}`, body));
    } catch (error) {
      showError(element, error);
    }
  };
  autostopForm.addEventListener("submit", (event) => {
    event.preventDefault();
    put("autostop", { seconds: Math.round(Number(minutes.value) * 60), delete: deletes.checked });
  });
  autostopOff.addEventListener("click", () => put("autostop", { seconds: null, delete: false }));
  ttlForm.addEventListener("submit", (event) => {
    event.preventDefault();
    put("ttl", { seconds: Math.round(Number(hours.value) * 3600) });
  });
  ttlOff.addEventListener("click", () => put("ttl", { seconds: null }));

  let filled = false;
  return {
    element,
    update(d) {
      clearError(element);
      const on = Boolean(d.autostop_idle_seconds);
      autostopNow.textContent = on ? `now: ${d.autostop_delete ? "delete" : "stop"} after ` +
        `${Math.round(d.autostop_idle_seconds / 60)} min idle` : "now: off";
      autostopOff.hidden = !on;
      ttlNow.textContent = d.expires_at ? `now: deleted at ${formatTime(d.expires_at)}` : "now: none";
      ttlOff.hidden = !d.expires_at;
      if (!filled) { // once: a live update must not overwrite what is being typed
        filled = true;
        if (on) minutes.value = String(Math.round(d.autostop_idle_seconds / 60));
        deletes.checked = d.autostop_delete;
      }
    },
  };
}

// -- what was tried, and what happened ----------------------------------------------------

export function attemptsTable(d) {
  const tried = [...d.events].reverse()
    .filter((e) => e.action === "instance.attempt_failed" || e.action === "instance.provisioned");
  if (!tried.length) return [];
  const cell = (v) => h("td", {}, v === null || v === undefined ? "" : String(v));
  return [
    h("h2", {}, "Attempts"),
    h("table", { class: "attempts" },
      h("thead", {}, h("tr", {}, ["#", "provider", "type", "where", "outcome"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, tried.map((e) => h("tr", {}, cell(e.details.attempt), cell(e.details.provider),
        cell(e.details.instance_type), cell(e.details.zone || e.details.region),
        cell(e.action === "instance.provisioned" ? "ok" : e.details.reason))))),
  ];
}

function details(object) {
  return Object.entries(object || {}).filter(([, v]) => v !== null && v !== "")
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
}

export function timeline(ctx, d) {
  const item = (e) => h("li", {}, h("time", { datetime: e.created_at }, formatTime(e.created_at)),
    h("span", {}, h("code", {}, e.action), e.actor ? h("span", { class: "muted" }, ` by ${e.actor}`) : null),
    h("span", { class: "details" }, details(e.details)));
  const list = h("ol", { class: "timeline", reversed: true }, d.events.map(item));
  if (!d.events.length) return h("p", { class: "notice" }, "No events.");
  const wrapper = h("div", {}, list);
  if (d.events.length >= 200) {
    // The detail carries the newest 200; older ones come from the audit log, by instance.
    const more = h("button", { type: "button" }, "Older events");
    more.addEventListener("click", async () => {
      const oldest = list.lastElementChild ? Number(list.dataset.oldest || d.events.at(-1).id) : 0;
      try {
        const older = (await ctx.api.get(`/orgs/${encodeURIComponent(ctx.org)}/events?instance=` +
          `${encodeURIComponent(d.name)}&before=${oldest}&limit=100`))
          .filter((e) => e.object_name === d.name && e.id < oldest);
        list.append(...older.map(item));
        if (older.length) list.dataset.oldest = String(older.at(-1).id);
        more.hidden = older.length === 0;
      } catch (error) {
        showError(wrapper, error);
      }
    });
    wrapper.append(more);
  }
  return wrapper;
}
