// The dashboard's shell: sign-in, the header (org, who, sign out), and a hash router that
// shows one page module at a time.
//
// A page module is `export async function render(root, ctx)`: root is an empty element to
// fill; ctx is { api, org, role, me, params, live, navigate }. render may return a cleanup
// function, called when the page is left (another route, another org, sign-out). Live
// subscriptions made through ctx.live (live.js: subscribe(fn, {readings})) end with the page
// by themselves.

import { ApiError, createApi } from "./api.js";
import { createLive } from "./live.js";
import { h, showError } from "./dom.js";

const ROUTES = [
  { pattern: /^\/$/, module: "./pages/overview.js", title: "Fleet", nav: "/" },
  { pattern: /^\/instances$/, module: "./pages/instances.js", title: "Instances", nav: "/instances" },
  { pattern: /^\/instances\/([^/]+)$/, keys: ["name"], module: "./pages/instance.js",
    title: "Instance", nav: "/instances" },
  { pattern: /^\/create$/, module: "./pages/create.js", title: "Create", nav: "/create" },
  { pattern: /^\/nodes$/, module: "./pages/nodes.js", title: "Nodes", nav: "/nodes" },
  { pattern: /^\/nodes\/([^/]+)$/, keys: ["name"], module: "./pages/nodes.js", title: "Node",
    nav: "/nodes" },
  { pattern: /^\/org$/, module: "./pages/org.js", title: "Org", nav: "/org" },
];
const ORG_KEY = "brev-org"; // which org was shown last: not a secret, kept across visits

const $ = (id) => document.getElementById(id);

// What the signed-in browser knows. The CSRF token lives only here, in memory.
const state = { csrf: null, me: null, memberships: [], org: null, live: null };
let current = null; // {cleanup, unsubscribers} of the page shown

const api = createApi({ csrf: () => state.csrf, onUnauthorized: () => signedOut() });

function navigate(hash) {
  if (location.hash === hash) show();
  else location.hash = hash;
}

function match(path) {
  for (const r of ROUTES) {
    const m = r.pattern.exec(path);
    if (m) {
      const params = {};
      (r.keys || []).forEach((key, i) => (params[key] = decodeURIComponent(m[i + 1])));
      return { ...r, params };
    }
  }
  return null;
}

function leave() {
  if (current) end(current);
  current = null;
}

function end(page) {
  for (const unsubscribe of page.unsubscribers) unsubscribe();
  page.unsubscribers = [];
  if (typeof page.cleanup === "function") {
    try {
      page.cleanup();
    } catch (error) {
      console.warn("page cleanup failed:", error);
    }
  }
  page.cleanup = null;
}

// Render the route in location.hash into a fresh root. A render still awaiting when the
// route changes again is cleaned up as soon as it returns, and never shown.
async function show() {
  if (!state.csrf) return;
  leave();
  const path = (location.hash || "#/").slice(1) || "/";
  const found = match(path);
  const root = h("div", { class: "page" });
  $("page").replaceChildren(root);
  for (const link of document.querySelectorAll("#nav a")) {
    const active = found && link.getAttribute("href") === "#" + found.nav;
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const mine = { cleanup: null, unsubscribers: [] };
  current = mine;
  if (!found) {
    document.title = "Not found · brev";
    root.append(h("h1", {}, "Not found"), h("p", {}, "No page at ", h("code", {}, path), "."));
    return;
  }
  document.title = `${found.title} · brev`;
  const membership = state.memberships.find((m) => m.org === state.org);
  const live = {
    subscribe(fn, options) {
      const unsubscribe = state.live.subscribe(fn, options);
      mine.unsubscribers.push(unsubscribe);
      return unsubscribe;
    },
  };
  const ctx = {
    api,
    org: state.org,
    role: membership ? membership.role : "member",
    me: state.me,
    params: found.params,
    live,
    navigate,
  };
  try {
    const page = await import(found.module);
    mine.cleanup = await page.render(root, ctx);
    if (current !== mine) end(mine); // left while it was rendering
  } catch (error) {
    if (current !== mine) {
      end(mine);
      return;
    }
    if (error instanceof ApiError && error.status === 401) return; // sign-in form shown
    console.warn(error);
    showError(root, error);
  }
}

// -- signing in and out ---------------------------------------------------------------------

// who: the /whoami answer when it was asked for already (at boot, beside the session).
async function signedIn(session, who = null) {
  state.csrf = session.csrf_token;
  state.me = session.email;
  who = who || (await api.get("/whoami"));
  state.memberships = who.memberships;
  const remembered = localStorage.getItem(ORG_KEY);
  const orgs = who.memberships.map((m) => m.org);
  state.org = orgs.includes(remembered) ? remembered : who.default_org || orgs[0] || null;
  const select = $("org");
  select.replaceChildren(...orgs.map((org) => h("option", { value: org }, org)));
  if (state.org) select.value = state.org;
  $("who").textContent = state.me;
  $("signin").hidden = true;
  $("shell").hidden = false;
  $("signin-error").replaceChildren();
  startLive();
  if (!state.org) {
    $("page").replaceChildren(h("p", {}, "You are in no org yet: ask an admin to add you."));
    return;
  }
  await show();
}

function startLive() {
  if (state.live) state.live.close();
  state.live = state.org ? createLive(state.org) : null;
}

function signedOut(message) {
  leave();
  if (state.live) state.live.close();
  Object.assign(state, { csrf: null, me: null, memberships: [], org: null, live: null });
  api.clearCache();
  $("shell").hidden = true;
  $("page").replaceChildren();
  $("signin").hidden = false;
  $("signin-error").replaceChildren();
  if (message) showError($("signin-error"), { message });
  $("token").focus();
}

async function signIn(body) {
  try {
    await signedIn(await api.post("/web/sessions", body));
  } catch (error) {
    signedOut(error.message);
  }
}

async function signOut() {
  try {
    await api.del("/web/sessions/current");
  } catch (error) {
    // The cookie may already be gone; the plane clears it either way. Say why, though.
    console.warn("sign-out:", error);
  }
  signedOut();
}

async function boot() {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    $("token").value = ""; // the token leaves the page with this request and nowhere else
    if (token) signIn({ token });
  });
  $("signout").addEventListener("click", signOut);
  $("org").addEventListener("change", () => {
    state.org = $("org").value;
    localStorage.setItem(ORG_KEY, state.org);
    api.clearCache();
    startLive();
    show();
  });
  window.addEventListener("hashchange", show);

  // `brev dashboard` opens /#login=CODE: the code is single-use, and it leaves the
  // address bar and history before anything else happens.
  if (location.hash.startsWith("#login=")) {
    const code = decodeURIComponent(location.hash.slice("#login=".length));
    history.replaceState(null, "", "/#/");
    await signIn({ login_code: code });
    return;
  }
  try {
    // Both at once: a returning visitor's first page waits for one round trip, not two.
    const [session, who] = await Promise.all([
      api.get("/web/sessions/current"),
      api.get("/whoami", { quiet: true }).catch(() => null),
    ]);
    await signedIn(session, who);
  } catch (error) {
    signedOut(error instanceof ApiError && error.status === 401 ? null : error.message);
  }
}

boot();
