// The token: in this tab's sessionStorage only (gone when the tab closes), sent in the
// Authorization header and, on the WebSocket, as a subprotocol; never in a URL, never logged.

const KEY = "taskfleet.token";
let token = sessionStorage.getItem(KEY);
const listeners = new Set();

export class ApiFailure extends Error {
  constructor(status, error) {
    super(error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = error?.code ?? "http_error";
  }
}

export function currentToken() {
  return token;
}

// The claims, for display and for "is this task mine" (the API checks the token, not this).
export function claims() {
  if (!token) return null;
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return null;
  }
}

export function onSessionChange(fn) {
  listeners.add(fn);
}

function set(value) {
  token = value;
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
  for (const fn of listeners) fn(value);
}

export function signOut() {
  set(null);
}

// A pasted token is kept only once the API has accepted it.
export async function signInWithToken(value) {
  const candidate = value.trim().replace(/^Bearer\s+/i, "");
  const res = await fetch("/api/tasks?limit=1", {
    headers: { Authorization: `Bearer ${candidate}` }, cache: "no-store",
  });
  if (!res.ok) {
    const body = await res.json().catch(() => null);
    throw new ApiFailure(res.status, body?.error);
  }
  set(candidate);
}

// A sign-in link's one-time code (from the URL fragment, which no server sees) for its token.
export async function signInWithCode(code) {
  const res = await fetch("/api/console/session", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ code }), cache: "no-store",
  });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new ApiFailure(res.status, body?.error);
  set(body.token);
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => null);
  if (res.status === 401) signOut();
  if (!res.ok) throw new ApiFailure(res.status, data?.error);
  return data;
}
