// The Org page's cloud credentials: which clouds the org uses and as whom. The plane checks
// credentials with the cloud when they are added, stores them sealed and never shows them
// again, so neither does this page: what was typed in leaves the form once sent. Adding
// and removing are an admin's; everyone sees the list.
//
// The form is drawn from what the plane says it has (GET /providers): every installed
// provider, built in or a plug-in, with the config keys its class declares. A key the CLI
// alone reads (`local`, e.g. an AWS profile) is not asked for here.

import { attempt, clearError, confirmDialog, formatTime, h, showError } from "../dom.js";

// Words that read better in capitals in a key's label: endpoint_url -> "Endpoint URL".
const CAPITALS = new Set(["api", "id", "json", "url", "ssh", "ip"]);

// A config key's name as its label: "access_key_id" -> "Access key ID".
export function keyLabel(name) {
  const words = String(name).split(/[_\s]+/).filter(Boolean)
    .map((w) => (CAPITALS.has(w.toLowerCase()) ? w.toUpperCase() : w.toLowerCase()));
  if (!words.length) return String(name);
  words[0] = words[0][0].toUpperCase() + words[0].slice(1);
  return words.join(" ");
}

// The provider select's label for one: a provider whose SDK the plane lacks says how to
// install it (and is disabled).
export function kindLabel(kind) {
  if (kind.installed) return kind.display_name;
  const how = kind.extra ? `: pip install 'brev[${kind.extra}]'` : "";
  return `${kind.display_name} (not installed${how})`;
}

// The config as the plane wants it: the non-empty values of the keys shown, as strings.
export function configOf(inputs) {
  const config = {};
  for (const [name, input] of inputs) {
    const value = input.value.trim();
    if (value) config[name] = value;
  }
  return config;
}

function idOf(...parts) {
  return parts.map((p) => String(p).replace(/[^A-Za-z0-9_-]/g, "-")).join("-");
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
  const form = admin ? addForm() : null;
  section.append(alerts, table, empty,
    admin ? h("h3", {}, "Add or replace credentials") : null, form ? form.element : null);

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

  // The form, and load(kinds) that fills its provider select once GET /providers answers.
  function addForm() {
    let kinds = new Map(); // name -> ProviderKind
    let inputs = new Map(); // config key name -> its input or textarea, for the chosen one
    const provider = h("select", { id: "credential-provider", required: true },
      h("option", { value: "", disabled: true, selected: true }, "Choose a provider…"));
    const fields = h("div", { id: "credential-fields" });
    const submit = h("button", { type: "submit", class: "primary" }, "Add credentials");
    const element = h("form", { id: "credential-form", class: "panel",
      "aria-label": "Add cloud credentials" },
      h("p", { class: "muted small" },
        "Adding a provider that is here already replaces its credentials."),
      h("p", { class: "toolbar" },
        h("label", { for: "credential-provider" }, "Provider"), " ", provider),
      fields,
      h("p", { class: "muted small" }, "The plane checks them with the cloud, then keeps them " +
        "encrypted. They are never shown again, here or anywhere."),
      submit);

    function load(list) {
      kinds = new Map(list.map((k) => [k.name, k]));
      provider.append(...list.map((k) => h("option", { value: k.name, disabled: !k.installed },
        kindLabel(k))));
    }

    function draw() {
      const kind = kinds.get(provider.value);
      inputs = new Map();
      if (!kind) {
        fields.replaceChildren();
        return;
      }
      const keys = kind.config_keys.filter((k) => !k.local);
      fields.replaceChildren(...keys.map((key) => field(kind, key)));
      if (!keys.length) {
        fields.append(h("p", { class: "notice" }, `${kind.display_name} declares no config ` +
          "keys: add it on the command line, with ", h("code", {}, "brev provider add"), "."));
      }
    }

    function field(kind, key) {
      const id = idOf("credential", kind.name, key.name);
      const hintId = `${id}-hint`;
      const attrs = { id, name: key.name, required: key.required, autocomplete: "off",
        spellcheck: "false", "aria-describedby": key.help ? hintId : null,
        "data-key": key.name };
      let input;
      let picker = null;
      if (key.from_file) {
        input = h("textarea", { ...attrs, rows: "5", cols: "90", class: "mono",
          placeholder: "Paste the file's text, or choose the file" });
        picker = h("input", { type: "file", id: `${id}-file`,
          "aria-label": `${keyLabel(key.name)}: read from a file` });
        picker.addEventListener("change", async () => {
          const file = picker.files && picker.files[0];
          if (!file) return;
          clearError(alerts);
          try {
            input.value = await file.text();
          } catch (error) {
            showError(alerts, new Error(`Could not read ${file.name}: ${error.message}`));
          } finally {
            picker.value = ""; // the file's name stays no longer than its text
          }
        });
      } else {
        input = h("input", { ...attrs, type: key.secret ? "password" : "text", size: "48" });
      }
      inputs.set(key.name, input);
      const label = keyLabel(key.name) + (key.required ? "" : " (optional)");
      return h("p", { class: "credential-field" },
        h("label", { for: id }, label), h("br"),
        input, picker ? " " : null, picker,
        key.help ? [h("br"), h("span", { id: hintId, class: "muted small" }, key.help)] : null);
    }

    function clearInputs() {
      for (const input of inputs.values()) input.value = "";
      for (const picker of fields.querySelectorAll("input[type=file]")) picker.value = "";
    }

    provider.addEventListener("change", () => {
      clearError(alerts);
      draw();
    });
    element.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = { provider: provider.value, config: configOf(inputs) };
      attempt(submit, alerts, async () => {
        await ctx.api.post(base, body);
        clearInputs(); // the secrets leave the page
        await refresh();
        ctx.changed();
      });
    });
    return { element, load };
  }

  // The list and (for an admin) the providers on offer load together; either may fail alone.
  await Promise.all([
    refresh().catch((error) => showError(alerts, error)),
    form ? ctx.api.get("/providers").then(form.load).catch((error) => showError(alerts, error))
      : null,
  ]);
}
