// The Org page's cloud credentials: which clouds the org uses and as whom. The plane checks
// credentials with the cloud when they are added, stores them sealed and never shows them
// again, so neither does this page: the config typed in leaves the form once sent. Adding
// and removing are an admin's; everyone sees the list.

import { attempt, clearError, confirmDialog, formatTime, h, showError } from "../dom.js";

// What each installed provider wants (brev/api ProviderConfigAdd), as the textarea's hint.
const EXAMPLES = {
  aws: '{"access_key_id": "AKIA…", "secret_access_key": "…", "session_token": "(optional)"}',
  gcp: '{"project": "my-project", "credentials_json": "(a service account key, optional)"}',
};

// The textarea's JSON as the plane wants it (an object of strings), or an Error saying why not.
export function parseConfig(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return new Error(`The config is not valid JSON: ${error.message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return new Error('The config must be a JSON object, e.g. {"key": "value"}.');
  }
  const wrong = Object.entries(value).filter(([, v]) => typeof v !== "string").map(([k]) => k);
  if (wrong.length) {
    return new Error(`Every value of the config must be a string (not: ${wrong.join(", ")}).`);
  }
  return value;
}

export async function renderCredentials(section, ctx) {
  const base = `/orgs/${encodeURIComponent(ctx.org)}/providers`;
  const admin = ctx.role === "admin";
  const alerts = h("div", { class: "alerts" });
  const tbody = h("tbody");
  const empty = h("p", { class: "notice", hidden: true }, "No cloud credentials yet",
    admin ? ": add some below." : ": an admin adds them.");
  const table = h("table", { class: "credentials" },
    h("thead", {}, h("tr", {},
      ["Provider", "Identity", "Added by", "Added"].map((l) => h("th", { scope: "col" }, l)),
      admin ? h("th", { scope: "col" }, h("span", { class: "offscreen" }, "Actions")) : null)),
    tbody);
  section.append(alerts, table, empty,
    admin ? h("h3", {}, "Add or replace credentials") : null, admin ? addForm() : null);

  async function refresh() {
    const configs = await ctx.api.get(base);
    tbody.replaceChildren(...configs.map(row));
    table.hidden = configs.length === 0;
    empty.hidden = configs.length > 0;
  }

  function row(c) {
    let remove = null;
    if (admin) {
      remove = h("button", { type: "button", class: "danger",
        "aria-label": `Remove ${c.provider} credentials` }, "Remove");
      remove.addEventListener("click", () => removeConfig(c));
    }
    return h("tr", { "data-provider": c.provider },
      h("th", { scope: "row" }, c.provider),
      h("td", {}, c.identity),
      h("td", {}, c.added_by),
      h("td", {}, formatTime(c.created_at)),
      admin ? h("td", {}, remove) : null);
  }

  async function removeConfig(c) {
    const sure = await confirmDialog(
      `Remove the org's ${c.provider} credentials? Nobody can create instances there until an ` +
      "admin adds them again.", { confirm: "Remove" });
    if (!sure) return;
    clearError(alerts);
    try {
      await ctx.api.del(`${base}/${encodeURIComponent(c.provider)}`);
      await refresh();
      ctx.changed();
    } catch (error) {
      showError(alerts, error);
    }
  }

  function addForm() {
    const provider = h("select", { id: "credential-provider" },
      Object.keys(EXAMPLES).map((p) => h("option", { value: p }, p)));
    const config = h("textarea", { id: "credential-config", rows: "4", cols: "90", required: true,
      spellcheck: "false", autocomplete: "off", class: "mono" });
    const hint = () => (config.placeholder = EXAMPLES[provider.value] || "{}");
    hint();
    provider.addEventListener("change", hint);
    const submit = h("button", { type: "submit", class: "primary" }, "Add credentials");
    const form = h("form", { id: "credential-form", class: "panel",
      "aria-label": "Add cloud credentials" },
      h("p", { class: "muted small" },
        "Adding a provider that is here already replaces its credentials."),
      h("p", { class: "toolbar" },
        h("label", { for: "credential-provider" }, "Provider"), " ", provider),
      h("p", {}, h("label", { for: "credential-config" }, "Config (JSON)")),
      h("p", {}, config),
      h("p", { class: "muted small" }, "The plane checks them with the cloud, then keeps them " +
        "encrypted. They are never shown again, here or anywhere."),
      submit);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError(alerts);
      const parsed = parseConfig(config.value);
      if (parsed instanceof Error) {
        showError(alerts, parsed);
        config.focus();
        return;
      }
      attempt(submit, alerts, async () => {
        await ctx.api.post(base, { provider: provider.value, config: parsed });
        config.value = ""; // the secrets leave the page
        await refresh();
        ctx.changed();
      });
    });
    return form;
  }

  try {
    await refresh();
  } catch (error) {
    showError(alerts, error);
  }
}
