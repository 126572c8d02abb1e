// The live feed: one WebSocket to /ws/tasks for the whole console. A snapshot of the
// unfinished tasks, then events; after a drop it reconnects with `since=<task>:<seq>` for
// every unfinished task it follows, and the API sends what was missed (docs/live-updates.md).
// It listens only while the console is open: no polling.

import { claims, currentToken, signOut } from "./session.js";
import { TERMINAL } from "./dom.js";

const MAX_SINCE = 50;  // the unfinished tasks to resume by seq; the snapshot covers the rest

class Live {
  constructor() {
    this.tasks = new Map();    // task id -> the task as last known (merged events)
    this.seqs = new Map();     // task id -> last seq seen
    this.replies = new Map();  // task id -> the assistant reply so far
    this.listeners = new Set();
    this.ws = null;
    this.retry = 0;
    this.stopped = true;
    this.state = "offline";
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.ws) this.ws.close(1000, "signed out");
    this.ws = null;
    this.tasks.clear(); this.seqs.clear(); this.replies.clear();
    this.setState("offline");
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(event) {
    for (const fn of [...this.listeners]) fn(event);
  }

  setState(state) {
    this.state = state;
    this.emit({ type: "state", state });
  }

  url() {
    const url = new URL("/ws/tasks", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const open = [...this.seqs].filter(([id]) => !TERMINAL.has(this.tasks.get(id)?.status));
    for (const [id, seq] of open.slice(-MAX_SINCE)) url.searchParams.append("since", `${id}:${seq}`);
    return url;
  }

  connect() {
    // A browser does not tell why a WebSocket was refused: an expired token would be retried
    // for ever, so it signs out instead (as an API call answered 401 does).
    const exp = claims()?.exp;
    if (exp !== undefined && exp * 1000 <= Date.now()) {
      signOut();
      return;
    }
    // The token travels as a subprotocol: a browser cannot set headers on a WebSocket, and
    // a query string would put it in URLs that proxies log.
    const ws = new WebSocket(this.url(), ["taskfleet", `bearer.${currentToken()}`]);
    this.ws = ws;
    this.setState("connecting");
    ws.addEventListener("open", () => { this.retry = 0; this.setState("live"); });
    ws.addEventListener("message", (e) => this.handle(JSON.parse(e.data)));
    ws.addEventListener("close", () => {
      if (this.ws !== ws || this.stopped) return;
      this.setState("reconnecting");
      const delay = Math.min(10000, 500 * 2 ** this.retry++) * (0.5 + Math.random() / 2);
      setTimeout(() => { if (!this.stopped && this.ws === ws) this.connect(); }, delay);
    });
  }

  handle(event) {
    if (event.type === "snapshot") {
      for (const task of event.tasks) {
        this.tasks.set(task.id, task);
        this.seqs.set(task.id, task.seq);
        if (task.message) this.replies.set(task.id, task.message.content);
      }
      this.emit({ type: "snapshot" });
      return;
    }
    const id = event.task_id;
    if (event.seq !== undefined) this.seqs.set(id, Math.max(event.seq, this.seqs.get(id) ?? 0));
    if (event.type === "task.updated") this.updated(id, event.task);
    else if (event.type === "message.delta") this.delta(id, event.offset, event.delta);
    else if (event.type === "message.snapshot") this.replies.set(id, event.content);
    this.emit(event);
  }

  updated(id, task) {
    const before = this.tasks.get(id);
    const was = before?.status;
    const merged = Object.assign(before ?? {}, task);
    this.tasks.set(id, merged);
    const reply = merged.output?.reply;
    if (merged.status === "completed" && typeof reply === "string") this.replies.set(id, reply);
    if (TERMINAL.has(merged.status) && !TERMINAL.has(was)) {
      this.emit({ type: "finished", task_id: id, task: merged });
    }
  }

  // Placing text by offset makes a repeated delta harmless.
  delta(id, offset, text) {
    const sofar = this.replies.get(id) ?? "";
    if (offset > sofar.length) return;  // a gap: the next snapshot or the final reply fills it
    this.replies.set(id, sofar.slice(0, offset) + text + sofar.slice(offset + text.length));
  }

  // A task read over HTTP: kept so that later events merge into it. An event may be newer
  // than the read (then its fields win) but carries only what changed (the read fills in).
  remember(task) {
    const known = this.tasks.get(task.id) ?? {};
    const newer = task.seq >= (this.seqs.get(task.id) ?? -1);
    this.tasks.set(task.id, newer ? { ...known, ...task } : { ...task, ...known });
    if (newer) this.seqs.set(task.id, task.seq);
    if (task.message && (this.replies.get(task.id) ?? "").length <= task.message.content.length) {
      this.replies.set(task.id, task.message.content);
    }
    return this.tasks.get(task.id);
  }
}

export const live = new Live();
