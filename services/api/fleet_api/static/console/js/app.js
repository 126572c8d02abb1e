// The console's entry: sign-in, the router (#/tasks, #/tasks/ID, #/chat/ID, #/documents,
// #/cameras/ID, #/recovery, #/operators), the live feed and its toasts. Views are plain
// functions that render into <main> and return a cleanup.

import { claims, currentToken, onSessionChange, signInWithCode, signOut } from "./session.js";
import { live } from "./live.js";
import { signInView } from "./signin.js";
import { tasksView } from "./tasks.js";
import { taskView } from "./task.js";
import { chatView } from "./chat.js";
import { recoveryView } from "./recovery.js";
import { operatorsView } from "./operators.js";
import { documentsView } from "./documents.js";
import { camerasView } from "./cameras.js";
import { notifyButton, taskFinished } from "./toast.js";

const main = document.getElementById("main");
let cleanup = () => {};

const routes = [
  [/^#\/tasks\/([0-9a-f-]{36})$/, taskView, "tasks"],
  [/^#\/chat(?:\/(.+))?$/, chatView, "chat"],
  [/^#\/tasks(?:\?.*)?$/, tasksView, "tasks"],
  [/^#\/recovery(?:\?.*)?$/, recoveryView, "recovery"],
  [/^#\/operators$/, operatorsView, "operators"],
  [/^#\/documents$/, documentsView, "documents"],
  [/^#\/cameras(?:\/(.+))?$/, camerasView, "cameras"],
];

function render() {
  cleanup();
  cleanup = () => {};
  const signedIn = Boolean(currentToken());
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("who").hidden = !signedIn;
  document.getElementById("nav-operators").hidden = claims()?.scope !== "admin";
  if (!signedIn) {
    document.title = "Sign in · taskfleet console";
    signInView(main, { error: render.error });
    render.error = undefined;
    return;
  }
  const found = routes.find(([re]) => re.test(location.hash));
  if (!found) {
    location.replace("#/tasks");
    return;
  }
  const [re, view, nav] = found;
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const param = location.hash.match(re)[1];
  cleanup = view(main, param ? decodeURIComponent(param) : undefined) ?? (() => {});
  main.focus();
}

function showWho() {
  const c = claims();
  document.getElementById("who-name").textContent = c ? `${c.sub} (${c.scope ?? "user"})` : "";
  const ask = notifyButton();
  if (ask && !document.getElementById("notify")) {
    ask.id = "notify";
    document.getElementById("sign-out").before(ask);
  }
}

function showLive({ type, state }) {
  if (type !== "state") return;
  const el = document.getElementById("live-state");
  el.textContent = state;
  el.classList.toggle("on", state === "live");
}

function onFinished(event) {
  if (event.type !== "finished") return;
  const me = claims()?.sub;
  if (event.task.user_id === undefined || event.task.user_id === me) taskFinished(event.task);
}

// `#code=...`: a sign-in link. The fragment never reaches a server; it is taken out of the
// address (and history) before anything else, then traded once for the token.
async function redeemLink() {
  const match = location.hash.match(/^#code=([\w-]+)$/);
  if (!match) return;
  history.replaceState(null, "", `${location.pathname}#/tasks`);
  try {
    await signInWithCode(match[1]);
  } catch (err) {
    render.error = `The sign-in link did not work (${err.message}). Links work once, within a minute: paste a token, or ask for a new link.`;
  }
}

onSessionChange((token) => {
  if (token) { showWho(); live.start(); } else live.stop();
  render();
});
document.getElementById("sign-out").addEventListener("click", () => signOut());
// The skip link moves focus without touching the fragment, which is the router's.
document.querySelector(".skip").addEventListener("click", (e) => { e.preventDefault(); main.focus(); });
window.addEventListener("hashchange", render);
live.subscribe(showLive);
live.subscribe(onFinished);

await redeemLink();
if (currentToken()) { showWho(); live.start(); }
render();
