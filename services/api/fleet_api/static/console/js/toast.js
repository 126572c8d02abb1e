// Toasts: a polite live region announces each; they go by themselves or by their button.

import { h, typeName, shortId } from "./dom.js";

const SHOWN_MS = 10000;

export function toast(message, href) {
  const region = document.getElementById("toasts");
  const close = h("button", { type: "button", "aria-label": "Dismiss" }, "×");
  const item = h("div", { class: "toast" }, href ? h("a", { href }, message) : h("span", {}, message), close);
  close.addEventListener("click", () => item.remove());
  region.append(item);
  setTimeout(() => item.remove(), SHOWN_MS);
}

export function taskFinished(task) {
  const what = `${typeName(task.type)} task ${shortId(task.id)} ${task.status}`;
  const detail = task.status === "failed" && task.error ? `: ${task.error.code}` : "";
  toast(what + detail, `#/tasks/${task.id}`);
  // The browser's own notification too, when the user allowed it (and the tab is hidden
  // or not: the toast may be out of sight).
  if ("Notification" in window && Notification.permission === "granted") {
    const note = new Notification(`taskfleet: ${what}`, { body: detail.slice(2), tag: task.id });
    note.addEventListener("click", () => { window.focus(); location.hash = `#/tasks/${task.id}`; });
  }
}

// A button that asks for the browser's permission, shown only while it can be asked.
export function notifyButton() {
  if (!("Notification" in window) || Notification.permission !== "default") return null;
  const button = h("button", { type: "button", class: "secondary" }, "Notify me");
  button.addEventListener("click", async () => {
    await Notification.requestPermission();
    button.remove();
  });
  return button;
}
