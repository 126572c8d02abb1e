// The recovery view: failed and cancelled tasks (an interrupted one keeps its checkpoint),
// newest first, with Resume (from the checkpoint: only where there is one), Restart (from
// scratch) and Delete (after a confirmation), each the API's own route. An admin may name
// another user, or `*` for every user's (GET /api/admin/tasks). Read when the page opens, pages by the API's cursors; the rows follow the
// live feed. It polls nothing.

import { h, chip, age, shortId, typeName, field, confirmAction, TERMINAL } from "./dom.js";
import { api, claims } from "./session.js";
import { live } from "./live.js";

const PAGE = 20;

function operator() {
  return ["admin", "service"].includes(claims()?.scope);
}

// What a checkpoint says, briefly: a document's pages, else that there is one.
function checkpointText(cp) {
  if (cp == null) return "none";
  if (typeof cp === "object" && Number.isInteger(cp.pages_done)) {
    return `pages ${cp.pages_done}${Number.isInteger(cp.pages) ? ` of ${cp.pages}` : ""} done`;
  }
  return "saved";
}

function td(label, ...content) {
  return h("td", { "data-label": label }, ...content);
}

export function recoveryView(main) {
  document.title = "Recovery · taskfleet console";
  const params = new URLSearchParams(location.hash.split("?")[1] ?? "");
  const user = operator() ? params.get("user") ?? "" : "";
  const cursors = [null];
  let page = 0;
  let next = null;
  let ids = [];
  const said = h("p", { role: "status", class: "hint" });
  const tbody = h("tbody");
  const older = h("button", { type: "button", class: "secondary", onclick: () => go(page + 1) }, "Older");
  const newer = h("button", { type: "button", class: "secondary", onclick: () => go(page - 1) }, "Newer");
  const who = h("input", { name: "user", type: "text", value: user, placeholder: "yours" });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Whose tasks" },
    field("User", who, "A user id, or * for every user's (admin)"), h("div", {}, h("button", { type: "submit" }, "Show")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = who.value ? `#/recovery?user=${encodeURIComponent(who.value)}` : "#/recovery";
  });
  main.replaceChildren(h("h1", {}, "Recovery"),
    h("p", { class: "hint" }, "Failed and cancelled tasks. Resume goes on from the task's checkpoint; Restart starts it from scratch; Delete removes a finished task for good."),
    ...(operator() ? [form] : []), said,
    h("table", { class: "tasks recovery" },
      h("caption", { class: "visually-hidden" }, "Failed and cancelled tasks, newest first"),
      h("thead", {}, h("tr", {}, ["Task", "Type", "Status", "Error", "Checkpoint", "Ended", "Actions"]
        .map((c) => h("th", { scope: "col" }, c)))),
      tbody),
    h("nav", { class: "pager", "aria-label": "Pages" }, newer, older));

  function row(t) {
    const name = shortId(t.id);
    const ended = TERMINAL.has(t.status);
    const again = ["failed", "cancelled"].includes(t.status);
    const button = (label, verb, extra = {}) => h("button", { type: "button", "aria-label": `${label} task ${name}`,
      onclick: () => act(t.id, verb), ...extra }, label);
    return h("tr", { "data-task": t.id },
      td("Task", h("a", { href: `#/tasks/${t.id}`, class: "mono", "aria-label": `task ${name}` }, name)),
      td("Type", typeName(t.type)),
      td("Status", chip(t.status)),
      td("Error", t.error ? h("code", {}, t.error.code) : "—"),
      td("Checkpoint", checkpointText(t.checkpoint)),
      td("Ended", t.completed_at ? `${age(t.completed_at)} ago` : "—"),
      td("Actions", h("div", { class: "actions" },
        button("Resume", "resume", { disabled: !again || t.checkpoint == null }),
        button("Restart", "restart", { class: "secondary", disabled: !again }),
        button("Delete", "delete", { class: "danger", disabled: !ended }))));
  }

  function draw() {
    tbody.replaceChildren(...ids.map((id) => live.tasks.get(id)).filter(Boolean).map(row));
    if (!said.dataset.keep) said.textContent = ids.length ? `${ids.length} task${ids.length === 1 ? "" : "s"}, page ${page + 1}` : "Nothing to recover.";
    newer.disabled = page === 0;
    older.disabled = !next;
  }

  async function act(id, verb) {
    const name = shortId(id);
    if (verb === "delete" && !await confirmAction(`Delete task ${name} for good? Its messages and children go with it.`, "Delete for good", "Keep it")) return;
    said.dataset.keep = "1";
    try {
      if (verb === "delete") {
        await api(`/api/tasks/${id}`, { method: "DELETE" });
        ids = ids.filter((x) => x !== id);
        live.tasks.delete(id);
        said.textContent = `Task ${name} deleted.`;
      } else {
        live.remember(await api(`/api/tasks/${id}/${verb}`, { method: "POST" }));
        said.textContent = `Task ${name} ${verb === "resume" ? "resumed from its checkpoint" : "restarted from scratch"}: queued again.`;
      }
    } catch (err) {
      said.textContent = `${verb} refused: ${err.message}`;
    }
    draw();
  }

  async function load() {
    const q = new URLSearchParams({ limit: String(PAGE), status: "failed,cancelled" });
    if (cursors[page]) q.set("cursor", cursors[page]);
    try {
      const path = user === "*" ? "/api/admin/tasks"
        : user ? `/api/tasks/user/${encodeURIComponent(user)}` : "/api/tasks";
      const data = await api(`${path}?${q}`);
      ids = data.tasks.map((t) => live.remember(t).id);
      next = data.next_cursor;
    } catch (err) {
      said.textContent = `Could not load: ${err.message}`;
      return;
    }
    delete said.dataset.keep;
    draw();
  }

  function go(to) {
    if (to > page) cursors[to] = next;
    page = to;
    load();
  }

  const unsubscribe = live.subscribe((event) => {
    if (event.type === "task.updated" && ids.includes(event.task_id)) draw();
  });
  load();
  return unsubscribe;
}
