// The chat page: the conversation from GET /api/chats/{id}/messages, a reply streaming in
// token by token from the live feed, and a box to send the next message. Leaving and coming
// back reads the history again and picks the stream up where it is.

import { h, field, TERMINAL } from "./dom.js";
import { api } from "./session.js";
import { live } from "./live.js";

function newChatId() {
  return `chat-${crypto.randomUUID().slice(0, 8)}`;
}

async function knownChats() {
  const page = await api("/api/tasks?type=chat_message&limit=100");
  const seen = [...live.tasks.values(), ...page.tasks].filter((t) => t.chat_id)
    .sort((a, b) => String(b.created_at ?? "~").localeCompare(String(a.created_at ?? "~")));
  return [...new Set(seen.map((t) => t.chat_id))];
}

function chatList(current) {
  const list = h("ul");
  const nav = h("nav", { class: "chat-list", "aria-label": "Chats" },
    h("h2", {}, "Chats"),
    h("p", {}, h("a", { href: `#/chat/${newChatId()}` }, "+ New chat")), list);
  knownChats().then((ids) => {
    if (current && !ids.includes(current)) ids.unshift(current);
    list.replaceChildren(...ids.map((id) => h("li", {}, h("a", {
      href: `#/chat/${encodeURIComponent(id)}`, "aria-current": id === current ? "page" : null }, id))));
  }).catch(() => {});
  return nav;
}

export function chatView(main, chatId) {
  if (!chatId) {
    location.replace(`#/chat/${newChatId()}`);
    return undefined;
  }
  document.title = `Chat ${chatId} · taskfleet console`;
  const messages = h("ol", { class: "messages", "aria-label": "Messages", "aria-live": "polite" });
  const input = h("textarea", { name: "content", required: true, rows: "2", placeholder: "Say something" });
  const said = h("p", { role: "status", class: "hint" });
  const send = h("button", { type: "submit" }, "Send");
  const form = h("form", { class: "compose", "aria-label": "Send a message" }, field("Message", input), send);
  const replies = new Map();  // task id -> the assistant message's elements

  main.replaceChildren(h("div", { class: "chat" }, chatList(chatId),
    h("section", { "aria-labelledby": "chat-title" }, h("h1", { id: "chat-title" }, `Chat ${chatId}`),
      messages, said, form)));

  function statusOf(taskId, fallback) {
    const task = live.tasks.get(taskId);
    if (!task) return fallback;
    return task.status === "completed" ? "completed" : TERMINAL.has(task.status) ? task.status : task.status === "processing" ? "streaming" : task.status;
  }

  function refresh(taskId) {
    const el = replies.get(taskId);
    if (!el) return;
    el.text.textContent = live.replies.get(taskId) ?? "";
    const task = live.tasks.get(taskId);
    const state = statusOf(taskId, el.meta.dataset.status);
    el.meta.textContent = task?.status === "failed" && task.error ? `assistant · failed: ${task.error.message}` : `assistant · ${state}`;
    el.item.setAttribute("aria-busy", String(!TERMINAL.has(task?.status ?? "completed") && state !== "completed"));
  }

  function add(role, content, status, taskId) {
    const meta = h("div", { class: "meta", "data-status": status }, `${role} · ${status}`);
    const text = h("div", { class: "text" }, content);
    const item = h("li", { class: `msg ${role}`, "data-task": taskId ?? "" }, meta, text);
    messages.append(item);
    if (role === "assistant" && taskId) {
      if ((live.replies.get(taskId) ?? "").length < content.length) live.replies.set(taskId, content);
      replies.set(taskId, { item, meta, text });
      refresh(taskId);
    }
  }

  async function load() {
    try {
      const history = await api(`/api/chats/${encodeURIComponent(chatId)}/messages`);
      messages.replaceChildren();
      for (const m of history.messages) add(m.role, m.content, m.status, m.task_id);
    } catch (err) {
      if (err.status !== 404) said.textContent = `Could not load the chat: ${err.message}`;
    }
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const content = input.value.trim();
    if (!content) return;
    send.disabled = true;
    said.textContent = "Sending…";
    try {
      const accepted = await api("/api/chat/stream", {
        method: "POST", body: { chat_id: chatId, content, idempotency_key: crypto.randomUUID() } });
      add("user", content, "sent");
      add("assistant", "", accepted.status, accepted.task_id);
      input.value = "";
      said.textContent = "";
    } catch (err) {
      said.textContent = `Not sent: ${err.message}`;
    } finally {
      send.disabled = false;
      input.focus();
    }
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });

  const unsubscribe = live.subscribe((event) => {
    if (event.task_id) refresh(event.task_id);
  });
  load();
  input.focus();
  return unsubscribe;
}
