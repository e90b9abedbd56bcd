// Small DOM helpers shared by every page. Data from the API only ever becomes text
// (textContent) or attribute values, never markup: an instance named <script> stays a name.

// h("a", {href: "#/x", class: "link", onclick: fn}, "text", child, [more]):
// `on*` functions become listeners; `class`, `for` and other strings become attributes;
// booleans set or drop the attribute (hidden, disabled, checked); `value` and `checked`
// are set as properties too, so forms show them. null/undefined/false children are skipped.
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "value" || key === "checked" || key === "selected") {
      element[key] = value;
    } else if (typeof value === "boolean") {
      element.toggleAttribute(key, value);
    } else {
      element.setAttribute(key, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else if (child instanceof Node) element.appendChild(child);
    else element.appendChild(document.createTextNode(String(child)));
  }
}

// The message the server gave (ApiError.message), in a role="alert" at the top of root;
// one at a time. Returns the element (remove() it, or call clearError).
export function showError(root, error) {
  clearError(root);
  const text = (error && error.message) || String(error);
  const alert = h("p", { role: "alert", class: "error" }, text);
  root.prepend(alert);
  return alert;
}

export function clearError(root) {
  for (const old of root.querySelectorAll(":scope > .error[role=alert]")) old.remove();
}

// Runs `work` with `control` disabled (no second click while the first is on its way); an
// error from it is shown in `alerts` after `onError(error)`. Resolves whether it succeeded.
export async function attempt(control, alerts, work, onError = () => {}) {
  clearError(alerts);
  control.disabled = true;
  try {
    await work();
    return true;
  } catch (error) {
    onError(error);
    showError(alerts, error);
    return false;
  } finally {
    control.disabled = false;
  }
}

// A modal <dialog>; resolves true when confirmed. Escape or Cancel resolve false.
export function confirmDialog(text, { confirm = "Delete", cancel = "Cancel" } = {}) {
  return new Promise((resolve) => {
    const no = h("button", { type: "button", value: "no" }, cancel);
    const yes = h("button", { type: "button", value: "yes", class: "danger" }, confirm);
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-label": "confirm" },
      h("p", {}, text),
      h("div", { class: "actions" }, no, yes),
    );
    no.addEventListener("click", () => dialog.close("no"));
    yes.addEventListener("click", () => dialog.close("yes"));
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "yes");
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    no.focus(); // the safe choice has the focus: Enter does not delete
  });
}

// A button that copies `text`. navigator.clipboard needs a secure context (https or
// localhost); a plane reached over plain http elsewhere falls back to execCommand.
export function copyButton(text, label = "Copy") {
  const button = h("button", { type: "button", class: "copy", "aria-label": `${label}: ${text}` },
    label);
  button.addEventListener("click", async () => {
    let copied = false;
    try {
      await navigator.clipboard.writeText(text);
      copied = true;
    } catch {
      const area = h("textarea", { class: "offscreen", readonly: true }, text);
      document.body.appendChild(area);
      area.select();
      copied = document.execCommand("copy");
      area.remove();
    }
    button.textContent = copied ? "Copied" : "Copy failed";
    setTimeout(() => (button.textContent = label), 1500);
  });
  return button;
}

// -- formatting -----------------------------------------------------------------------------

const DASH = "—";

export function formatMoney(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return DASH;
  return "$" + Number(value).toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

// Seconds as the CLI prints ages: 45s, 12m, 3h, 2d.
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return DASH;
  const s = Math.max(0, Math.floor(seconds));
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (s >= size) return Math.floor(s / size) + unit;
  }
  return s + "s";
}

export function formatAge(iso, now = Date.now()) {
  if (!iso) return DASH;
  return formatDuration((now - Date.parse(iso)) / 1000);
}

// Time until iso: "in 3h", or "overdue" once past.
export function formatUntil(iso, now = Date.now()) {
  if (!iso) return DASH;
  const seconds = (Date.parse(iso) - now) / 1000;
  return seconds > 0 ? "in " + formatDuration(seconds) : "overdue";
}

export function formatTime(iso) {
  if (!iso) return DASH;
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return DASH;
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 || value >= 100 ? 0 : 1)} ${units[unit]}`;
}

export function formatMib(mib) {
  return mib === null || mib === undefined ? DASH : formatBytes(mib * 1024 * 1024);
}

export function formatPercent(value) {
  return value === null || value === undefined ? DASH : `${Math.round(value)}%`;
}

export function gpuLabel(instance) {
  if (!instance.gpu_count) return "CPU";
  return `${instance.gpu_model || instance.gpu_spec || "GPU"} × ${instance.gpu_count}`;
}

export function whereLabel(instance) {
  if (instance.node) return `node ${instance.node}`;
  return [instance.provider, instance.region].filter(Boolean).join(" / ") || DASH;
}

// The hash of a route with a name in it (names are DNS-shaped, but encode anyway).
export function route(...parts) {
  return "#/" + parts.map(encodeURIComponent).join("/");
}
