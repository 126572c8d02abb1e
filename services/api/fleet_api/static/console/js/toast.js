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
}
