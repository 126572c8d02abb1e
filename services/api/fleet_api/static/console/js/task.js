// A task: status, progress, attempts, partial output, the error with its code, the reply as
// it streams, parent and children links, and Cancel / Retry (the real routes).

import { h, chip, progressBar, age, shortId, typeName, pretty, TERMINAL } from "./dom.js";
import { api, claims } from "./session.js";
import { live } from "./live.js";

function fact(term, ...value) {
  return [h("dt", {}, term), h("dd", {}, ...value)];
}

function taskLink(id) {
  return h("a", { href: `#/tasks/${id}`, class: "mono" }, shortId(id));
}

function when(iso) {
  return iso ? h("time", { datetime: iso }, `${new Date(iso).toLocaleString()} (${age(iso)} ago)`) : "—";
}

// One line per change of status (GET /api/tasks/{id}/transitions): when, to what, the
// attempt, and a retry's error and next attempt.
function timeline(steps) {
  return h("ol", { class: "timeline", "aria-label": "Timeline" }, steps.map((s) => h("li", {},
    h("time", { datetime: s.at }, new Date(s.at).toLocaleTimeString()), " ",
    s.from_status ? `${s.from_status} → ` : "created ", chip(s.to_status),
    s.attempts ? ` attempt ${s.attempts}` : "",
    s.error_code ? [" ", h("code", {}, s.error_code)] : "",
    s.next_attempt_at ? ` next at ${new Date(s.next_attempt_at).toLocaleTimeString()}` : "")));
}

function section(title, body) {
  return [h("h2", {}, title), body];
}

function facts(t, children) {
  return h("dl", { class: "facts" },
    fact("Status", chip(t.status), t.cancel_requested && !TERMINAL.has(t.status) ? " cancel requested" : ""),
    fact("Type", typeName(t.type)),
    fact("Progress", progressBar(t, "progress"), t.stage ? ` ${t.stage}` : "", t.status_message ? ` — ${t.status_message}` : ""),
    fact("Attempts", `${t.attempts ?? 0} of ${t.max_attempts ?? "?"}`),
    t.next_attempt_at && t.status === "retrying" ? fact("Next attempt", when(t.next_attempt_at)) : [],
    fact("Created", when(t.created_at)),
    fact("Started", when(t.started_at)),
    fact("Finished", when(t.completed_at)),
    t.chat_id ? fact("Chat", h("a", { href: `#/chat/${encodeURIComponent(t.chat_id)}` }, t.chat_id)) : [],
    t.parent_id ? fact("Parent", taskLink(t.parent_id)) : [],
    children.length ? fact("Children", ...children.flatMap((c, i) => [i ? ", " : "", taskLink(c.id), ` (${c.status})`])) : []);
}

export function taskView(main, id) {
  document.title = `Task ${shortId(id)} · taskfleet console`;
  const said = h("p", { role: "status", class: "hint" });
  const body = h("div", { class: "detail" });
  let children = [];
  let steps = [];
  const cancel = h("button", { type: "button", class: "danger", onclick: () => act("cancel") }, "Cancel");
  const retry = h("button", { type: "button", onclick: () => act("retry") }, "Retry");
  const resume = h("button", { type: "button", class: "secondary", onclick: () => act("resume") }, "Resume");
  const restart = h("button", { type: "button", class: "secondary", onclick: () => act("restart") }, "Restart");
  main.replaceChildren(h("h1", {}, "Task ", h("span", { class: "mono" }, shortId(id))),
    h("div", { class: "actions" }, cancel, retry, resume, restart), said, body);

  function draw() {
    const t = live.tasks.get(id);
    if (!t) return;
    cancel.disabled = TERMINAL.has(t.status) || Boolean(t.cancel_requested);
    retry.disabled = restart.disabled = !["failed", "cancelled"].includes(t.status);
    resume.disabled = retry.disabled || t.checkpoint == null;
    const reply = live.replies.get(id);
    body.replaceChildren(...[facts(t, children),
      t.type === "chat_message" ? section("Reply", h("pre", { id: "reply", "aria-live": "polite" }, reply ?? "")) : [],
      t.error ? section("Error", h("p", { class: "error" }, h("code", {}, t.error.code), `: ${t.error.message}`,
        t.error.retryable ? " (retryable)" : "")) : [],
      steps.length ? section("Timeline", timeline(steps)) : [],
      t.partial_output != null ? section("Partial output", h("pre", {}, pretty(t.partial_output))) : [],
      t.output != null ? section("Output", h("pre", {}, pretty(t.output))) : [],
      section("Input", h("pre", {}, pretty(t.input ?? ""))),
      h("p", { class: "hint mono" }, `id ${t.id} · seq ${t.seq}`)].flat());
  }

  async function act(what) {
    said.textContent = what === "cancel" ? "Cancelling…" : "Starting again…";
    try {
      live.remember(await api(`/api/tasks/${id}/${what}`, { method: "POST" }));
      said.textContent = { cancel: "Cancel requested.", resume: "Queued again, from its checkpoint.",
        restart: "Queued again, from scratch." }[what] ?? "Queued again.";
    } catch (err) {
      said.textContent = `${what} refused: ${err.message}`;
    }
    draw();
  }

  // Children: the parent's own listing of them (`?parent_id=`), as its owner (an operator
  // reading another user's task reads them through every user's listing).
  async function findChildren() {
    try {
      const owner = live.tasks.get(id)?.user_id;
      const mine = !owner || owner === claims()?.sub;
      const page = await api(mine ? `/api/tasks?parent_id=${id}&limit=200`
        : `/api/admin/tasks?parent_id=${id}&user_id=${encodeURIComponent(owner)}&limit=200`);
      children = page.tasks;
      draw();
    } catch { /* the task itself is what matters here */ }
  }

  async function load(first = false) {
    try {
      live.remember(await api(`/api/tasks/${id}`));
    } catch (err) {
      said.textContent = err.status === 404 ? "No such task (or not yours)." : `Could not load: ${err.message}`;
      return;
    }
    draw();
    if (first) findChildren();
    try {
      steps = (await api(`/api/tasks/${id}/transitions`)).transitions;
      draw();
    } catch { /* the task itself is what matters here */ }
  }

  let shownStatus = null;
  const unsubscribe = live.subscribe((event) => {
    const reply = document.getElementById("reply");
    const status = live.tasks.get(id)?.status;
    if (event.task_id === id && event.type === "task.updated" && status !== shownStatus) {
      shownStatus = status;
      load();  // a new status: read the whole task once (events carry what changed only)
      return;
    }
    if (event.task_id === id && event.type === "message.delta" && reply) {
      reply.textContent = live.replies.get(id) ?? "";  // the reply alone, token by token
    } else if (event.task_id === id || event.type === "snapshot") draw();
  });
  load(true);
  return unsubscribe;
}
