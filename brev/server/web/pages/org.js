// Org (#/org): the org's members, API tokens, cloud credentials and audit log, one section
// each (pages/org_*.js). What the plane refuses a member (inviting, changing roles,
// removing people, adding or removing credentials) is not offered to one; what the plane
// answers with an error is shown as its message, in the section it belongs to.

import { h } from "../dom.js";
import { renderMembers } from "./org_members.js";
import { renderTokens } from "./org_tokens.js";
import { renderCredentials } from "./org_credentials.js";
import { renderAudit } from "./org_audit.js";

const SECTIONS = [
  { id: "members", title: "Members", render: renderMembers },
  { id: "tokens", title: "API tokens", render: renderTokens },
  { id: "credentials", title: "Cloud credentials", render: renderCredentials },
  { id: "audit", title: "Audit log", render: renderAudit },
];

export async function render(root, ctx) {
  root.append(
    h("h1", {}, "Org ", h("span", { class: "mono" }, ctx.org)),
    h("p", { class: "muted" }, "You are ", ctx.me, ", ",
      ctx.role === "admin" ? "an admin" : "a member", " of this org."),
  );
  const cleanups = [];
  // A change made in one section (a member added, a token revoked) is news to the audit log.
  const listeners = [];
  const sectionCtx = {
    ...ctx,
    changed: () => listeners.forEach((fn) => fn()),
    onChange: (fn) => listeners.push(fn),
  };
  // Each section loads on its own: one that fails shows its error and the others still draw.
  await Promise.all(SECTIONS.map(async (s) => {
    const heading = h("h2", { id: `org-${s.id}-title` }, s.title);
    const section = h("section", { id: `org-${s.id}`, "aria-labelledby": heading.id }, heading);
    root.append(section);
    const cleanup = await s.render(section, sectionCtx);
    if (typeof cleanup === "function") cleanups.push(cleanup);
  }));
  return () => cleanups.forEach((cleanup) => cleanup());
}
