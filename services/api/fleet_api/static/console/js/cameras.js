// The cameras page (#/cameras/ID): a camera's capture settings and its latest analysed frames
// with their motion scores (GET /api/cameras/{id}/analyses), a frame uploaded from a file, and
// the list read again when one of its analyses ends (the feed says so: no polling).

import { h, age, field } from "./dom.js";
import { ApiFailure, api, currentToken } from "./session.js";
import { live } from "./live.js";

const ID = /^[A-Za-z0-9_.:@-]{1,128}$/;  // the API's ID_PATTERN (core/wire.py)

function pct(x) {
  return x === null || x === undefined ? "—" : `${(x * 100).toFixed(1)}%`;
}

function frame(a) {
  const when = new Date(a.received_at).toLocaleString();
  return h("li", { class: "frame", "data-frame": a.frame_id },
    h("img", { src: a.thumbnail, alt: `frame of ${when}`, width: "160" }),
    h("dl", { class: "facts" },
      h("dt", {}, "Motion"), h("dd", {}, pct(a.motion), a.motion_detected ? h("strong", { class: "motion" }, " motion") : ""),
      h("dt", {}, "Brightness"), h("dd", {}, pct(a.brightness)),
      h("dt", {}, "Sharpness"), h("dd", {}, a.sharpness.toFixed(1)),
      h("dt", {}, "Received"), h("dd", {}, h("time", { datetime: a.received_at, title: when }, `${age(a.received_at)} ago`), ` (${a.source})`),
      h("dt", {}, "Task"), h("dd", {}, h("a", { href: `#/tasks/${a.task_id}`, class: "mono" }, String(a.task_id).slice(0, 8)))));
}

async function sendFrame(camera, file) {
  const res = await fetch(`/api/cameras/${encodeURIComponent(camera)}/frames`, {
    method: "POST", body: file, cache: "no-store",
    headers: { Authorization: `Bearer ${currentToken()}`, "Content-Type": file.type || "image/jpeg",
      "Idempotency-Key": crypto.randomUUID() },
  });
  const body = await res.json().catch(() => null);
  if (res.status !== 202) throw new ApiFailure(res.status, body?.error);
  return body;
}

function chooser() {
  const id = h("input", { type: "text", name: "camera", required: true, maxlength: "128", placeholder: "e.g. door" });
  const said = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "filters", "aria-label": "Open a camera" },
    field("Camera id", id, "Letters, digits and _ . : @ -"), h("div", {}, h("button", { type: "submit" }, "Open")), said);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const wanted = id.value.trim();
    if (ID.test(wanted)) location.hash = `#/cameras/${encodeURIComponent(wanted)}`;
    else said.textContent = "A camera id is letters, digits and _ . : @ - (up to 128).";
  });
  return form;
}

export function camerasView(main, camera) {
  document.title = `${camera ? `Camera ${camera}` : "Cameras"} · taskfleet console`;
  if (!camera || !ID.test(camera)) {
    main.replaceChildren(h("h1", {}, "Cameras"), h("p", {}, "A camera is named by its id: the one frames are uploaded to."), chooser());
    return () => {};
  }
  const settings = h("p", { class: "hint" });
  const said = h("p", { class: "hint", role: "status" });
  const frames = h("ul", { class: "frames", "aria-label": "Latest frames, newest first" });
  const file = h("input", { type: "file", name: "frame", accept: "image/jpeg,image/png", required: true });
  const upload = h("form", { class: "filters", "aria-label": "Upload a frame" },
    field("Frame (JPEG or PNG)", file), h("div", {}, h("button", { type: "submit" }, "Analyse")));
  const pending = new Set();  // the tasks of frames sent from here, not yet analysed
  main.replaceChildren(h("h1", {}, `Camera ${camera}`), settings, upload, said, h("h2", {}, "Latest frames"), frames,
    h("h2", {}, "Another camera"), chooser());

  upload.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!file.files.length) return;
    said.textContent = "Sending the frame…";
    try {
      const accepted = await sendFrame(camera, file.files[0]);
      pending.add(accepted.task_id);
      said.textContent = "Frame accepted: analysing.";
      upload.reset();
    } catch (err) {
      said.textContent = `Frame refused: ${err.message}`;
    }
  });

  async function load() {
    try {
      const page = await api(`/api/cameras/${encodeURIComponent(camera)}/analyses?limit=12`);
      frames.replaceChildren(...page.analyses.map(frame));
      if (!page.analyses.length) said.textContent ||= "No analysed frames yet.";
    } catch (err) {
      // A camera exists from its first frame (or its capture settings): none yet is no error.
      said.textContent = err.status === 404 ? "No analysed frames yet." : `Could not load frames: ${err.message}`;
    }
    try {
      const c = await api(`/api/cameras/${encodeURIComponent(camera)}`);
      settings.textContent = c.snapshot_url && c.enabled ? `Captures every ${c.interval_s} s.` : "No periodic capture: frames come from uploads.";
    } catch (err) {
      settings.textContent = err.status === 404 ? "No periodic capture: frames come from uploads." : `Could not load the camera: ${err.message}`;
    }
  }

  const unsubscribe = live.subscribe((event) => {
    if (event.type !== "finished") return;
    const t = event.task;
    const ours = pending.delete(event.task_id);
    if (ours || (t.type === "camera_analysis" && t.status === "completed")) {
      if (ours) said.textContent = t.status === "completed" ? "Frame analysed." : `Analysis ${t.status}.`;
      load();
    }
  });
  load();
  return unsubscribe;
}
