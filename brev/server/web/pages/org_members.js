// The Org page's members: who is in the org and with which role. Admins invite people
// (a new user's login token is shown once, here, and never again), change roles and remove
// members; the plane keeps the last admin (409), and its message is what the page shows.

import {
  attempt, clearError, confirmDialog, copyButton, formatTime, h, showError,
} from "../dom.js";

const ROLES = ["member", "admin"];

export async function renderMembers(section, ctx) {
  const base = `/orgs/${encodeURIComponent(ctx.org)}/members`;
  const admin = ctx.role === "admin";
  const alerts = h("div", { class: "alerts" });
  const created = h("div", { id: "member-created", "aria-live": "polite" });
  const tbody = h("tbody");
  const table = h("table", { class: "members" },
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Email"),
      h("th", { scope: "col" }, "Name"),
      h("th", { scope: "col" }, "Role"),
      h("th", { scope: "col" }, "Added"),
      admin ? h("th", { scope: "col" }, h("span", { class: "offscreen" }, "Actions")) : null)),
    tbody);
  section.append(alerts, admin ? inviteForm() : null, created, table);

  async function refresh() {
    const members = await ctx.api.get(base);
    tbody.replaceChildren(...members.map(row));
  }

  function row(m, n) {
    const cells = [
      h("th", { scope: "row" }, m.email),
      h("td", {}, m.name || "—"),
      h("td", {}, admin ? roleSelect(m, n) : m.role),
      h("td", {}, formatTime(m.joined_at)),
    ];
    if (admin) {
      const remove = h("button", { type: "button", class: "danger" }, "Remove");
      remove.setAttribute("aria-label", `Remove ${m.email}`);
      remove.addEventListener("click", () => removeMember(m));
      cells.push(h("td", {}, remove));
    }
    return h("tr", { "data-email": m.email }, cells);
  }

  function roleSelect(m, n) {
    const id = `member-role-${n}`;
    const select = h("select", { id },
      ROLES.map((r) => h("option", { value: r, selected: r === m.role }, r)));
    select.value = m.role;
    select.addEventListener("change", () => setRole(m, select));
    return h("span", {}, h("label", { for: id, class: "offscreen" }, `Role of ${m.email}`), select);
  }

  async function setRole(m, select) {
    const role = select.value;
    const self = m.email.toLowerCase() === String(ctx.me).toLowerCase();
    if (self && role !== "admin") {
      const sure = await confirmDialog(
        "Make yourself a member? You will no longer manage this org.",
        { confirm: "Make me a member" });
      if (!sure) {
        select.value = m.role;
        return;
      }
    }
    await attempt(select, alerts, async () => {
      await ctx.api.put(`${base}/${encodeURIComponent(m.email)}`, { role });
      m.role = role;
      ctx.changed();
      // The shell learnt our role at sign-in: start again to see the page as a member.
      if (self && role !== "admin") location.reload();
    }, () => { select.value = m.role; });
  }

  async function removeMember(m) {
    const sure = await confirmDialog(
      `Remove ${m.email} from ${ctx.org}? Their tokens stop working in this org.`,
      { confirm: "Remove" });
    if (!sure) return;
    clearError(alerts);
    try {
      await ctx.api.del(`${base}/${encodeURIComponent(m.email)}`);
      if (m.email.toLowerCase() === String(ctx.me).toLowerCase()) location.reload(); // we left
      else await refresh();
      ctx.changed();
    } catch (error) {
      showError(alerts, error);
    }
  }

  function inviteForm() {
    const email = h("input", { id: "invite-email", type: "email", required: true,
      autocomplete: "off", placeholder: "name@example.com" });
    const name = h("input", { id: "invite-name", type: "text", maxlength: "100",
      autocomplete: "off" });
    const role = h("select", { id: "invite-role" }, ROLES.map((r) => h("option", { value: r }, r)));
    const submit = h("button", { type: "submit", class: "primary" }, "Invite");
    const form = h("form", { class: "inline toolbar", id: "invite-form",
      "aria-label": "Invite a member" },
      h("label", { for: "invite-email" }, "Email"), email,
      h("label", { for: "invite-name" }, "Name (optional)"), name,
      h("label", { for: "invite-role" }, "Role"), role,
      submit);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      attempt(submit, alerts, async () => {
        const added = await ctx.api.post(base, {
          email: email.value.trim(), name: name.value.trim(), role: role.value });
        created.replaceChildren(invited(added));
        form.reset();
        await refresh();
        ctx.changed();
      });
    });
    return form;
  }

  // What the invite answered: the login token of a new user, once; or that they have one.
  function invited(added) {
    const who = added.member.email;
    const done = h("button", { type: "button" }, "Done");
    let box;
    if (added.login_token) {
      box = h("div", { class: "panel secret", role: "status" },
        h("p", {}, "Added ", h("strong", {}, who), " as ", added.member.role,
          ". Give them this login token; they sign in with it (",
          h("code", {}, "brev login"), " or this page):"),
        h("p", { class: "actions" }, h("code", { id: "login-token" }, added.login_token),
          copyButton(added.login_token, "Copy token")),
        h("p", { class: "muted" }, "It is shown only now: it will not be shown again."),
        done);
    } else {
      box = h("div", { class: "panel", role: "status" },
        h("p", {}, "Added ", h("strong", {}, who), " as ", added.member.role,
          ". They already have a brev account and sign in as before."),
        done);
    }
    done.addEventListener("click", () => box.remove());
    return box;
  }

  try {
    await refresh();
  } catch (error) {
    showError(alerts, error);
  }
}
