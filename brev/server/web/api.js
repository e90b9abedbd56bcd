// The REST API as the pages use it: the same endpoints as the CLI, signed in by the
// HttpOnly session cookie. JavaScript never sees a token; it keeps only the CSRF token that
// the plane wants back on every write.

const PREFIX = "/api/v1";
const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export class ApiError extends Error {
  constructor(status, code, message, fields = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.fields = fields;
  }
}

// options.csrf(): the session's CSRF token (or null before sign-in);
// options.onUnauthorized(error): a 401 on anything but the session endpoints (the
// session ended or expired elsewhere), so the shell can show the sign-in form.
export function createApi({ csrf = () => null, onUnauthorized = () => {} } = {}) {
  // path -> {etag, body}: what getCached answers when the plane says 304 Not Modified.
  const cache = new Map();

  // quiet: a 401 is only this request's answer (a guess made before the session is known).
  async function request(method, path, body, extraHeaders = {}, { quiet = false } = {}) {
    const headers = { Accept: "application/json", ...extraHeaders };
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const token = csrf();
    if (UNSAFE.has(method) && token) headers["X-CSRF-Token"] = token;
    let response;
    try {
      response = await fetch(PREFIX + path, init);
    } catch (error) {
      throw new ApiError(0, "network", `the plane did not answer (${error.message})`);
    }
    if (response.ok || response.status === 304) return response;
    const error = await errorOf(response);
    if (error.status === 401 && !quiet && !path.startsWith("/web/sessions")) onUnauthorized(error);
    throw error;
  }

  async function json(method, path, body, options) {
    const response = await request(method, path, body, {}, options);
    return response.status === 204 ? null : response.json();
  }

  // Lists the page re-reads on every live event: a 304 costs the plane almost nothing.
  async function getCached(path) {
    const known = cache.get(path);
    const headers = known ? { "If-None-Match": known.etag } : {};
    const response = await request("GET", path, undefined, headers);
    if (response.status === 304 && known) return known.body;
    const body = await response.json();
    const etag = response.headers.get("ETag");
    if (etag) cache.set(path, { etag, body });
    return body;
  }

  return {
    get: (path, options) => json("GET", path, undefined, options),
    post: (path, body = {}) => json("POST", path, body),
    put: (path, body = {}) => json("PUT", path, body),
    del: (path) => json("DELETE", path),
    getCached,
    // Forget cached bodies (another org, or signed out).
    clearCache: () => cache.clear(),
  };
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's page): the status line is all there is
  }
  const detail = body && body.error;
  if (detail && detail.message) {
    return new ApiError(response.status, detail.code, detail.message, detail.fields || []);
  }
  const text = response.statusText || `HTTP ${response.status}`;
  return new ApiError(response.status, "http_" + response.status, text);
}
