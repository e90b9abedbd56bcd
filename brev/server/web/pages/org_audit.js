// The Org page's audit log: every change a person or the plane made, newest first, filtered
// by the plane (instance name, action prefix, actor), a page at a time: "Older" asks for
// the events before the oldest one shown.

import { clearError, formatTime, h, showError } from "../dom.js";

const PAGE = 50;
const KINDS = ["instance.", "member.", "token.", "provider.", "node.", "org."];

// An event's details as text: key=value, values that are not strings as JSON.
export function detailsText(details) {
  return Object.entries(details || {})
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
}

export async function renderAudit(section, ctx) {
  const base = `/orgs/${encodeURIComponent(ctx.org)}/events`;
  const alerts = h("div", { class: "alerts" });
  const field = (id, label, attrs = {}) => {
    const input = h("input", { id, type: "text", autocomplete: "off", spellcheck: "false",
      ...attrs });
    return [input, h("label", { for: id }, label, input)];
  };
  const [instance, instanceField] = field("audit-instance", "Instance", { maxlength: "63",
    placeholder: "name" });
  const [kind, kindField] = field("audit-kind", "Kind", { maxlength: "64",
    placeholder: "member.", list: "audit-kinds" });
  const [actor, actorField] = field("audit-actor", "Actor", { maxlength: "254",
    placeholder: "email, or plane" });
  const kinds = h("datalist", { id: "audit-kinds" }, KINDS.map((k) => h("option", { value: k })));
  const clear = h("button", { type: "button" }, "Clear");
  const filters = h("form", { class: "toolbar", id: "audit-filters",
    "aria-label": "Filter the audit log" },
    instanceField, kindField, actorField, kinds,
    h("button", { type: "submit" }, "Filter"), clear);
  const count = h("span", { class: "count", "aria-live": "polite" });
  filters.append(count);
  const tbody = h("tbody");
  const table = h("table", { class: "audit" },
    h("thead", {}, h("tr", {},
      ["Time", "Actor", "Action", "Object", "Details"].map((l) => h("th", { scope: "col" }, l)))),
    tbody);
  const empty = h("p", { class: "notice", hidden: true }, "No events match.");
  const older = h("button", { type: "button", hidden: true }, "Older");
  section.append(alerts, filters, table, empty, h("p", {}, older));

  let shown = []; // the events in the table, newest first
  let busy = false;
  let again = false; // the newest page was asked for while a load was on its way

  function query(before) {
    const params = new URLSearchParams({ limit: String(PAGE) });
    for (const [key, input] of [["instance", instance], ["kind", kind], ["actor", actor]]) {
      const value = input.value.trim();
      if (value) params.set(key, value);
    }
    if (before) params.set("before", String(before));
    return `${base}?${params}`;
  }

  function row(e) {
    const object = [e.object_type, e.object_name].filter(Boolean).join(" ");
    return h("tr", { "data-id": String(e.id) },
      h("td", { title: e.created_at }, formatTime(e.created_at)),
      h("td", { class: e.actor ? null : "muted" }, e.actor || "plane"),
      h("th", { scope: "row" }, h("code", {}, e.action)),
      h("td", {}, object || "—"),
      h("td", { class: "details" }, detailsText(e.details)));
  }

  // Load the newest page (more: false) or the page before the oldest shown (more: true).
  async function load(more) {
    if (busy) {
      if (!more) again = true;
      return;
    }
    busy = true;
    clearError(alerts);
    try {
      const before = more && shown.length ? shown[shown.length - 1].id : null;
      const events = await ctx.api.get(query(before));
      shown = more ? shown.concat(events) : events;
      const rows = events.map(row);
      if (more) tbody.append(...rows);
      else tbody.replaceChildren(...rows);
      older.hidden = events.length < PAGE;
      table.hidden = shown.length === 0;
      empty.hidden = shown.length > 0;
      count.textContent = `${shown.length} event${shown.length === 1 ? "" : "s"}` +
        (older.hidden ? "" : " so far");
    } catch (error) {
      showError(alerts, error);
    } finally {
      busy = false;
      if (again) {
        again = false;
        load(false);
      }
    }
  }

  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    load(false);
  });
  clear.addEventListener("click", () => {
    filters.reset();
    load(false);
  });
  older.addEventListener("click", () => load(true));
  ctx.onChange(() => load(false));
  await load(false);
}
