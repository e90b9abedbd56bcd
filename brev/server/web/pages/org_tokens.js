// The Org page's API tokens. Anyone creates tokens of their own for this org (the secret is
// shown once, at creation, and never again) and revokes their own; the plane lists a member
// only their own tokens, and an admin every member's token of the org, which an admin may
// revoke too.

import {
  attempt, clearError, confirmDialog, copyButton, formatAge, formatTime, formatUntil, h,
  showError,
} from "../dom.js";

const EXPIRIES = [
  ["", "never"],
  [String(86400), "1 day"],
  [String(7 * 86400), "7 days"],
  [String(30 * 86400), "30 days"],
  [String(90 * 86400), "90 days"],
  [String(365 * 86400), "1 year"],
];

function state(t, now) {
  if (t.revoked_at) return "revoked";
  if (t.expires_at && Date.parse(t.expires_at) <= now) return "expired";
  return "active";
}

export async function renderTokens(section, ctx) {
  const base = `/orgs/${encodeURIComponent(ctx.org)}/tokens`;
  const admin = ctx.role === "admin";
  const alerts = h("div", { class: "alerts" });
  const created = h("div", { id: "token-created", "aria-live": "polite" });
  const tbody = h("tbody");
  const empty = h("p", { class: "notice", hidden: true }, "No tokens yet.");
  const table = h("table", { class: "tokens" },
    h("thead", {}, h("tr", {},
      ["Name", "Owner", "Scope", "Prefix", "Created", "Last used", "Expires", "Status"]
        .map((label) => h("th", { scope: "col" }, label)),
      h("th", { scope: "col" }, h("span", { class: "offscreen" }, "Actions")))),
    tbody);
  section.append(
    h("p", { class: "muted small" }, admin
      ? "Every member's tokens for this org. A token acts as its owner."
      : "Your tokens for this org. A token acts as you."),
    alerts, createForm(), created, table, empty);

  async function refresh() {
    const tokens = await ctx.api.get(base);
    const now = Date.now();
    // Active ones first, newest first within each.
    const order = [...tokens].sort((a, b) =>
      (state(a, now) === "active" ? 0 : 1) - (state(b, now) === "active" ? 0 : 1) ||
      Date.parse(b.created_at) - Date.parse(a.created_at));
    tbody.replaceChildren(...order.map((t) => row(t, now)));
    table.hidden = tokens.length === 0;
    empty.hidden = tokens.length > 0;
  }

  function row(t, now) {
    const status = state(t, now);
    const mine = t.owner.toLowerCase() === String(ctx.me).toLowerCase();
    let action = null;
    if (status === "active" && (mine || admin)) {
      action = h("button", { type: "button", class: "danger",
        "aria-label": `Revoke ${t.name} of ${t.owner}` }, "Revoke");
      action.addEventListener("click", () => revoke(t));
    }
    return h("tr", { "data-token": t.name, class: status === "active" ? null : "muted" },
      h("th", { scope: "row" }, t.name),
      h("td", {}, t.owner),
      h("td", {}, scopeLabel(t)),
      h("td", {}, h("code", {}, t.prefix + "…")),
      h("td", {}, formatTime(t.created_at)),
      h("td", {}, t.last_used_at ? `${formatAge(t.last_used_at, now)} ago` : "never"),
      h("td", { title: t.expires_at ? formatTime(t.expires_at) : null },
        t.expires_at ? formatUntil(t.expires_at, now) : "never"),
      h("td", {}, status),
      h("td", {}, action));
  }

  async function revoke(t) {
    const sure = await confirmDialog(
      `Revoke the token ${t.name} of ${t.owner}? Whatever uses it stops working at once.`,
      { confirm: "Revoke" });
    if (!sure) return;
    clearError(alerts);
    try {
      await ctx.api.del(`${base}/${encodeURIComponent(t.name)}`);
      await refresh();
      ctx.changed();
    } catch (error) {
      showError(alerts, error);
    }
  }

  function createForm() {
    const name = h("input", { id: "token-name", type: "text", required: true, maxlength: "63",
      autocomplete: "off", spellcheck: "false", placeholder: "ci-main" });
    const expires = h("select", { id: "token-expires" },
      EXPIRIES.map(([value, label]) => h("option", { value }, label)));
    const scope = h("select", { id: "token-scope" },
      h("option", { value: "" }, "everything you may do"),
      h("option", { value: "run" }, "run (CI: brev run only)"));
    const submit = h("button", { type: "submit", class: "primary" }, "Create token");
    const form = h("form", { class: "inline toolbar", id: "token-form",
      "aria-label": "Create a token" },
      h("label", { for: "token-name" }, "Token name"), name,
      h("label", { for: "token-expires" }, "Expires"), expires,
      h("label", { for: "token-scope" }, "Scope"), scope,
      submit);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError(alerts);
      const body = { name: name.value.trim() };
      if (expires.value) body.expires_in_seconds = Number(expires.value);
      if (scope.value) body.scope = scope.value;
      attempt(submit, alerts, async () => {
        const made = await ctx.api.post(base, body);
        created.replaceChildren(secretBox(made));
        form.reset();
        await refresh();
        ctx.changed();
      });
    });
    return form;
  }

  function secretBox(made) {
    const done = h("button", { type: "button" }, "Done");
    const box = h("div", { class: "panel secret", role: "status" },
      h("p", {}, "Created the token ", h("strong", {}, made.token.name), ". Its secret:"),
      h("p", { class: "actions" }, h("code", { id: "token-secret" }, made.secret),
        copyButton(made.secret, "Copy secret")),
      h("p", { class: "muted" },
        "Copy it now: it is shown only once and will not be shown again."),
      done);
    done.addEventListener("click", () => box.remove());
    return box;
  }

  try {
    await refresh();
  } catch (error) {
    showError(alerts, error);
  }
}

function scopeLabel(t) {
  if (t.scope !== "run") return t.org ? "org" : "all orgs";
  const limits = [];
  if (t.max_price_per_hour != null) limits.push(`≤ $${t.max_price_per_hour}/h`);
  if (t.max_gpus != null) limits.push(`≤ ${t.max_gpus} GPUs`);
  if (t.max_ttl_seconds != null) limits.push(`TTL ≤ ${Math.round(t.max_ttl_seconds / 3600)}h`);
  return ["run", ...limits].join(", ");
}
