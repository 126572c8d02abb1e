// The tasks page: pages from GET /api/tasks (its cursors and filters, `active` included),
// kept live by the feed; every user's (`user=*`): an admin's pages of GET /api/admin/tasks, a
// service token's the feed's own list of unfinished tasks. Filters live in the address
// (#/tasks?status=&type=&chat=&user=), so that coming back shows the same list. An admin
// or service token may name another user (their history) or `*` (the feed of such a token
// carries every user's events).

import { h, chip, progressBar, age, shortId, typeName, field, STATUSES, TYPES, TERMINAL } from "./dom.js";
import { api, claims } from "./session.js";
import { live } from "./live.js";

const PAGE = 20;

function readFilters() {
  const params = new URLSearchParams(location.hash.split("?")[1] ?? "");
  const f = { status: params.get("status") ?? "", type: params.get("type") ?? "",
    chat: params.get("chat") ?? "", user: operator() ? params.get("user") ?? "" : "" };
  // An admin pages through every user's history (GET /api/admin/tasks); a service token sees
  // every user's unfinished tasks in its feed only.
  if (f.user === "*" && !admin()) f.status = "active";
  return f;
}

function admin() {
  return claims()?.scope === "admin";
}

function operator() {
  return ["admin", "service"].includes(claims()?.scope);
}

function matches(task, f) {
  if (f.status === "active" ? TERMINAL.has(task.status) : f.status && task.status !== f.status) return false;
  if (f.type && task.type !== f.type) return false;
  if (f.user !== "*" && task.user_id !== undefined && task.user_id !== (f.user || claims()?.sub)) return false;
  return !f.chat || task.chat_id === f.chat;
}

function cell(label, ...content) {
  return h("td", { "data-label": label }, ...content);
}

function row(t) {
  const name = shortId(t.id);
  return h("tr", { "data-task": t.id },
    cell("Task", h("a", { href: `#/tasks/${t.id}`, class: "mono", "aria-label": `task ${name}` }, name)),
    cell("Type", typeName(t.type)),
    cell("Status", chip(t.status)),
    cell("Progress", progressBar(t, `progress of task ${name}`)),
    cell("Attempts", `${t.attempts ?? 0} / ${t.max_attempts ?? "?"}`),
    cell("Age", t.created_at ? h("time", { datetime: t.created_at, title: t.created_at }, age(t.created_at)) : "new"),
    cell("Chat", t.chat_id ? h("a", { href: `#/chat/${encodeURIComponent(t.chat_id)}` }, t.chat_id) : "—"),
    operator() ? cell("User", t.user_id ?? "") : null);
}

function filterForm(f) {
  const status = h("select", { name: "status" }, h("option", { value: "" }, "any"),
    h("option", { value: "active" }, "active (unfinished)"),
    STATUSES.map((s) => h("option", { value: s }, s)));
  const type = h("select", { name: "type" }, h("option", { value: "" }, "any"),
    TYPES.map((t) => h("option", { value: t }, typeName(t))));
  const chat = h("input", { name: "chat", type: "text", value: f.chat, placeholder: "chat id" });
  status.value = f.status;
  type.value = f.type;
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter tasks" },
    field("Status", status), field("Type", type), field("Chat", chat),
    operator() ? field("User", h("input", { name: "user", type: "text", value: f.user,
      placeholder: "yours" }), "A user id, or * for every user's tasks (unfinished ones only for a service token)") : null,
    h("div", {}, h("button", { type: "submit" }, "Apply")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    location.hash = `#/tasks${q.size ? `?${q}` : ""}`;
  });
  return form;
}

export function tasksView(main) {
  document.title = "Tasks · taskfleet console";
  const f = readFilters();
  const cursors = [null];
  let page = 0;
  let next = null;
  let ids = [];
  const tbody = h("tbody");
  const status = h("p", { class: "hint", role: "status" });
  const older = h("button", { type: "button", class: "secondary", onclick: () => go(page + 1) }, "Older");
  const newer = h("button", { type: "button", class: "secondary", onclick: () => go(page - 1) }, "Newer");
  const table = h("table", { class: "tasks" },
    h("caption", { class: "visually-hidden" }, "Tasks, newest first; live"),
    h("thead", {}, h("tr", {}, ["Task", "Type", "Status", "Progress", "Attempts", "Age", "Chat",
      ...(operator() ? ["User"] : [])].map((c) => h("th", { scope: "col" }, c)))),
    tbody);
  main.replaceChildren(h("h1", {}, "Tasks"), filterForm(f), status, table, h("nav", { class: "pager", "aria-label": "Pages" }, newer, older));

  function draw() {
    tbody.replaceChildren(...ids.map((id) => live.tasks.get(id)).filter(Boolean).map(row));
    status.textContent = ids.length ? `${ids.length} task${ids.length === 1 ? "" : "s"}${f.user === "*" && !admin() ? ", every user's unfinished" : `, page ${page + 1}`}` : "No tasks match.";
    newer.disabled = page === 0;
    older.disabled = !next;
  }

  function redrawRow(id) {
    const old = tbody.querySelector(`tr[data-task="${id}"]`);
    if (!old) return;
    const hadFocus = old.contains(document.activeElement);
    const fresh = row(live.tasks.get(id));
    old.replaceWith(fresh);
    if (hadFocus) fresh.querySelector("a")?.focus();
  }

  async function load() {
    if (f.user === "*" && !admin()) {
      ids = [...live.tasks.values()].filter((t) => matches(t, f))
        .sort((a, b) => String(b.created_at).localeCompare(String(a.created_at))).map((t) => t.id);
      next = null;
    } else {
      const q = new URLSearchParams({ limit: String(PAGE) });
      if (f.status) q.set("status", f.status);
      if (f.type) q.set("type", f.type);
      if (f.chat) q.set("chat_id", f.chat);
      if (cursors[page]) q.set("cursor", cursors[page]);
      try {
        const path = f.user === "*" ? "/api/admin/tasks"
          : f.user ? `/api/tasks/user/${encodeURIComponent(f.user)}` : "/api/tasks";
        const data = await api(`${path}?${q}`);
        ids = data.tasks.map((t) => live.remember(t)).filter((t) => matches(t, f)).map((t) => t.id);
        next = data.next_cursor;
      } catch (err) {
        status.textContent = `Could not load tasks: ${err.message}`;
        return;
      }
    }
    draw();
  }

  function go(to) {
    if (to > page) cursors[to] = next;
    page = to;
    load();
  }

  // A task we had not seen (a new one) goes on top of the first page, read whole once.
  async function arrived(id) {
    ids.unshift(id);
    draw();
    if (!live.tasks.get(id)?.created_at) {
      try { live.remember(await api(`/api/tasks/${id}`)); redrawRow(id); } catch { /* gone */ }
    }
  }

  const unsubscribe = live.subscribe((event) => {
    if (event.type === "snapshot" && f.user === "*" && !admin()) return load();
    if (event.type !== "task.updated") return;
    const task = live.tasks.get(event.task_id);
    if (ids.includes(event.task_id)) redrawRow(event.task_id);
    else if (page === 0 && task && matches(task, f)) arrived(event.task_id);
  });
  load();
  return unsubscribe;
}
