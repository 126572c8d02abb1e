// Small DOM helpers. Every text goes in through textContent: nothing a task holds is parsed
// as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key in el && key !== "list" && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const TERMINAL = new Set(["completed", "failed", "cancelled"]);
export const STATUSES = ["scheduled", "queued", "processing", "retrying", "waiting", "completed", "failed", "cancelled"];
export const TYPES = ["chat_message", "tool_execution", "document_processing", "camera_analysis"];

export function chip(status) {
  return h("span", { class: `chip ${status}` }, status);
}

export function progressBar(task, label) {
  const pct = Math.round((task.progress ?? 0) * 100);
  const done = task.status === "completed" ? 100 : pct;
  return h("progress", { max: "100", value: String(done), "aria-label": label ?? `progress ${done}%` }, `${done}%`);
}

export function age(iso, now = Date.now()) {
  if (!iso) return "";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function shortId(id) {
  return String(id).slice(0, 8);
}

export function typeName(type) {
  return { chat_message: "chat", tool_execution: "tool", document_processing: "document",
    camera_analysis: "camera" }[type] ?? type;
}

export function field(labelText, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  if (hint) control.setAttribute("aria-describedby", `${id}-hint`);
  return h("div", {}, h("label", { for: id }, labelText), control,
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null);
}

export function pretty(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

// A modal question (a <dialog>: focus stays in it, Escape answers no). Resolves true only
// when the named action is pressed.
export function confirmAction(question, action, keep = "Keep them") {
  return new Promise((resolve) => {
    const yes = h("button", { type: "button", class: "danger" }, action);
    const no = h("button", { type: "button", class: "secondary" }, keep);
    const dialog = h("dialog", { class: "confirm card", "aria-labelledby": "confirm-q" },
      h("p", { id: "confirm-q" }, question), h("div", { class: "actions" }, no, yes));
    const done = (answer) => { dialog.close(); dialog.remove(); resolve(answer); };
    yes.addEventListener("click", () => done(true));
    no.addEventListener("click", () => done(false));
    dialog.addEventListener("cancel", (e) => { e.preventDefault(); done(false); });
    document.body.append(dialog);
    dialog.showModal();
    no.focus();
  });
}

export function mib(bytes) {
  return bytes == null ? "—" : `${Math.round(bytes / 2 ** 20)} MiB`;
}
