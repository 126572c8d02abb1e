// The operators page (admin token): queues with their depth, consumers and rate; each
// dead-letter queue's letters with Replay and Purge (after a confirmation); the workers,
// live and lost (with the tasks at risk), their memory and why they are paused.
// Read when the page opens and when Refresh is pressed: it polls nothing.

import { h, chip, shortId, mib, confirmAction } from "./dom.js";
import { api, claims } from "./session.js";

const LETTERS = 50;

function table(caption, columns, rows, cls = "tasks") {
  return h("table", { class: cls },
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows));
}

function td(label, ...content) {
  return h("td", { "data-label": label }, ...content);
}

function taskLink(id) {
  return id ? h("a", { href: `#/tasks/${id}`, class: "mono", "aria-label": `task ${shortId(id)}` }, shortId(id)) : "—";
}

function queueRow(q) {
  return h("tr", { "data-queue": q.name },
    td("Queue", h("span", { class: "mono" }, q.name)),
    td("Ready", String(q.messages)),
    td("Consumers", String(q.consumers)),
    td("Ended last minute", q.finished_last_min == null ? "—" : String(q.finished_last_min)));
}

function workerRow(w) {
  const paused = Object.entries(w.paused ?? {}).map(([cause, why]) => `${cause}: ${why}`).join("; ");
  return h("tr", { "data-worker": w.id },
    td("Worker", `${w.worker} `, h("span", { class: "mono" }, `${w.host}:${w.pid}`)),
    td("Status", chip(w.status)),
    td("Memory", mib(w.rss_bytes)),
    td("Paused", paused || "no"),
    td("In flight", `${w.inflight.length} of ${w.concurrency}`),
    td("At risk", w.at_risk.length ? w.at_risk.map((id, i) => [i ? ", " : "", taskLink(id)]).flat() : "none"),
    td("Heartbeat", `${Math.round(w.heartbeat_age_s)}s ago`));
}

function letterRows(letters) {
  return letters.map((m) => h("tr", { "data-letter": m.task_id ?? m.message_id ?? "" },
    td("Task", taskLink(m.task_id)),
    td("Reason", m.reason ?? "—"),
    td("Error", m.error ? h("code", {}, m.error) : "—")));
}

export function operatorsView(main) {
  document.title = "Operators · taskfleet console";
  const said = h("p", { role: "status", class: "hint" });
  const refresh = h("button", { type: "button", class: "secondary", onclick: () => load() }, "Refresh");
  const queues = h("section", { "aria-labelledby": "h-queues" });
  const dead = h("section", { "aria-labelledby": "h-dlq" });
  const workers = h("section", { "aria-labelledby": "h-workers" });
  main.replaceChildren(h("h1", {}, "Operators"), h("div", { class: "actions" }, refresh), said,
    queues, dead, workers);

  async function act(queue, verb) {
    if (verb === "purge" && !await confirmAction(
      `Delete every dead letter of ${queue} for good? Their tasks stay failed; Retry, Resume or Restart still run them.`,
      "Purge for good")) return;
    said.textContent = verb === "purge" ? `Purging ${queue}…` : `Replaying ${queue}…`;
    try {
      const r = await api(`/api/admin/dlq/${queue}/${verb}`, { method: "POST" });
      said.textContent = verb === "purge" ? `Purged ${r.purged} dead letters of ${queue}.`
        : `Replayed ${r.replayed} dead letters of ${queue} (${r.skipped} left in the queue).`;
    } catch (err) {
      said.textContent = `${verb} refused: ${err.message}`;
      return;
    }
    await load(false);
  }

  async function deadLetters(depths) {
    const work = depths.filter((q) => !q.dead_letter).map((q) => q.name);
    const parts = await Promise.all(work.map(async (name) => {
      const held = depths.find((q) => q.name === `${name}.dlq`)?.messages ?? 0;
      const letters = held ? (await api(`/api/admin/dlq/${name}?limit=${LETTERS}`)).messages : [];
      return [name, letters];
    }));
    const shown = parts.filter(([, letters]) => letters.length);
    return shown.length ? shown.map(([name, letters]) => h("div", { class: "dlq", "data-dlq": name },
      h("h3", {}, `${name}.dlq: ${letters.length}${letters.length === LETTERS ? "+" : ""} letter${letters.length === 1 ? "" : "s"}`),
      h("div", { class: "actions" },
        h("button", { type: "button", onclick: () => act(name, "replay"), "aria-label": `Replay ${name}` }, "Replay"),
        h("button", { type: "button", class: "danger", onclick: () => act(name, "purge"), "aria-label": `Purge ${name}` }, "Purge")),
      table(`Dead letters of ${name}`, ["Task", "Reason", "Error"], letterRows(letters))))
      : [h("p", { class: "empty" }, "No dead letters.")];
  }

  async function load(announce = true) {
    if (announce) said.textContent = "Reading…";
    try {
      const [q, w] = await Promise.all([api("/api/admin/queues"), api("/api/admin/workers")]);
      queues.replaceChildren(h("h2", { id: "h-queues" }, "Queues"),
        table("Queues: ready messages, consumers, tasks ended in the last minute",
          ["Queue", "Ready", "Consumers", "Ended last minute"], q.queues.map(queueRow)));
      workers.replaceChildren(h("h2", { id: "h-workers" }, "Workers"), w.workers.length
        ? table("Worker processes", ["Worker", "Status", "Memory", "Paused", "In flight", "At risk", "Heartbeat"], w.workers.map(workerRow))
        : h("p", { class: "empty" }, "No worker is running."));
      dead.replaceChildren(h("h2", { id: "h-dlq" }, "Dead letters"), ...await deadLetters(q.queues));
      if (announce) said.textContent = `Read at ${new Date().toLocaleTimeString()}.`;
    } catch (err) {
      said.textContent = err.status === 403 ? "This page needs an admin token." : `Could not read: ${err.message}`;
    }
  }

  if (claims()?.scope === "admin") load();
  else {
    said.textContent = "This page needs an admin token.";
    refresh.disabled = true;
  }
  return () => {};
}
