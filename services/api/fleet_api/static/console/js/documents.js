// The documents page: the caller's documents (GET /api/documents, newest first), an upload
// with its progress bar (XMLHttpRequest: fetch reports no upload progress), each document's
// indexing followed live from the feed (its task's progress, page by page), and search.

import { h, age, field, shortId } from "./dom.js";
import { ApiFailure, api, currentToken } from "./session.js";
import { live } from "./live.js";

// A document's status takes the colour of the task status it means: `indexed` is done.
const CHIP = { indexed: "completed" };

function send(file, title, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/documents");
    xhr.setRequestHeader("Authorization", `Bearer ${currentToken()}`);
    // The same key if the browser sends it again: one document, however often it is retried.
    xhr.setRequestHeader("Idempotency-Key", crypto.randomUUID());
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); });
    xhr.addEventListener("load", () => (xhr.status === 202 ? resolve(xhr.response)
      : reject(new ApiFailure(xhr.status, xhr.response?.error))));
    xhr.addEventListener("error", () => reject(new Error("the upload did not reach the API")));
    const form = new FormData();
    form.append("file", file);
    if (title) form.append("title", title);
    xhr.send(form);
  });
}

// `**word**` marks a match in a snippet: made into <mark> without parsing any HTML.
function snippet(text) {
  return h("p", { class: "snippet" }, text.split(/\*\*(.+?)\*\*/).map((part, i) => (i % 2 ? h("mark", {}, part) : part)));
}

function indexing(doc) {
  // What the API said of its task, with what the feed said since (events carry changes only).
  const task = doc.task ? { ...doc.task, ...(live.tasks.get(doc.task_id) ?? {}) } : live.tasks.get(doc.task_id);
  if (!task || doc.status === "indexed") return doc.pages ? `${doc.pages} pages, ${doc.chunks} chunks` : `${doc.chunks} chunks`;
  const pct = Math.round((task.progress ?? 0) * 100);
  return [h("progress", { max: "100", value: String(pct), "aria-label": `indexing ${doc.title}: ${pct}%` }, `${pct}%`),
    " ", task.status_message ?? task.status, task.error ? h("span", { class: "error" }, ` ${task.error.code}`) : ""];
}

function row(doc) {
  const status = doc.status;
  return h("tr", { "data-document": doc.id },
    h("td", { "data-label": "Title" }, doc.title),
    h("td", { "data-label": "Status" }, h("span", { class: `chip ${CHIP[status] ?? status}` }, status)),
    h("td", { "data-label": "Indexing" }, indexing(doc)),
    h("td", { "data-label": "Size" }, `${Math.max(1, Math.round(doc.size_bytes / 1024))} KiB`),
    h("td", { "data-label": "Age" }, h("time", { datetime: doc.created_at }, age(doc.created_at))),
    h("td", { "data-label": "Task" }, doc.task_id ? h("a", { href: `#/tasks/${doc.task_id}`, class: "mono",
      "aria-label": `task of ${doc.title}` }, shortId(doc.task_id)) : "—"));
}

function uploadForm(onSent) {
  const file = h("input", { type: "file", name: "file", required: true, accept: ".pdf,.txt,.md,application/pdf,text/plain,text/markdown" });
  const title = h("input", { type: "text", name: "title", maxlength: "300", placeholder: "the file's name" });
  const bar = h("progress", { max: "100", value: "0", "aria-label": "upload progress", hidden: true });
  const said = h("p", { class: "hint", role: "status" });
  const button = h("button", { type: "submit" }, "Upload");
  const form = h("form", { class: "filters", "aria-label": "Upload a document" },
    field("File (PDF, text or Markdown)", file), field("Title", title), h("div", {}, button), bar, said);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!file.files.length) return;
    button.disabled = true;
    bar.hidden = false;
    said.textContent = "Uploading…";
    try {
      const accepted = await send(file.files[0], title.value.trim(), (f) => { bar.value = Math.round(f * 100); });
      said.textContent = "Uploaded: indexing starts.";
      form.reset();
      onSent(accepted);
    } catch (err) {
      said.textContent = `Upload refused: ${err.message}`;
    } finally {
      button.disabled = false;
      bar.hidden = true;
    }
  });
  return form;
}

function searchForm() {
  const q = h("input", { type: "search", name: "q", maxlength: "500", placeholder: "words or \"a phrase\"" });
  const results = h("ol", { class: "results", "aria-label": "Search results" });
  const said = h("p", { class: "hint", role: "status" });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Search documents" },
    field("Search your indexed documents", q), h("div", {}, h("button", { type: "submit" }, "Search")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const found = await api(`/api/documents/search?${new URLSearchParams({ q: q.value, limit: "10" })}`);
      results.replaceChildren(...found.results.map((r) => h("li", {},
        h("strong", {}, r.title), ` page ${r.page}`, snippet(r.snippet))));
      said.textContent = `${found.results.length} result${found.results.length === 1 ? "" : "s"}`;
    } catch (err) {
      said.textContent = `Search refused: ${err.message}`;
    }
  });
  return [form, said, results];
}

export function documentsView(main) {
  document.title = "Documents · taskfleet console";
  let docs = [];
  const tbody = h("tbody");
  const status = h("p", { class: "hint", role: "status" });
  const table = h("table", { class: "tasks" },
    h("caption", { class: "visually-hidden" }, "Your documents, newest first; live"),
    h("thead", {}, h("tr", {}, ["Title", "Status", "Indexing", "Size", "Age", "Task"].map((c) => h("th", { scope: "col" }, c)))),
    tbody);
  main.replaceChildren(h("h1", {}, "Documents"), uploadForm((accepted) => reload(accepted.document_id)),
    status, table, h("h2", {}, "Search"), ...searchForm());

  function draw() {
    tbody.replaceChildren(...docs.map(row));
    status.textContent = docs.length ? `${docs.length} document${docs.length === 1 ? "" : "s"}` : "No documents yet: upload one.";
  }

  async function load() {
    try {
      docs = (await api("/api/documents?limit=50")).documents;
    } catch (err) {
      status.textContent = `Could not load documents: ${err.message}`;
      return;
    }
    draw();
  }

  // One document read again: new, or its task just ended (its chunks and status changed).
  async function reload(id) {
    try {
      const doc = await api(`/api/documents/${id}`);
      const at = docs.findIndex((d) => d.id === id);
      if (at >= 0) docs[at] = doc; else docs.unshift(doc);
      draw();
    } catch { /* deleted meanwhile */ }
  }

  const unsubscribe = live.subscribe((event) => {
    if (event.type !== "task.updated" && event.type !== "finished") return;
    const doc = docs.find((d) => d.task_id === event.task_id);
    if (!doc) return;
    if (event.type === "finished") reload(doc.id);
    else draw();
  });
  load();
  return unsubscribe;
}
