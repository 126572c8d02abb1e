// The sign-in page: paste a token (`taskfleet token USER`, or the one `taskfleet up` prints).

import { h, field } from "./dom.js";
import { signInWithToken } from "./session.js";

export function signInView(main, { error } = {}) {
  const input = h("textarea", { id: "token", name: "token", required: true, autocomplete: "off",
    spellcheck: "false", "aria-describedby": "token-hint" });
  const status = h("p", { class: "error", role: "alert", id: "signin-error" }, error ?? "");
  const form = h("form", { class: "card signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    field("Bearer token", input),
    h("p", { class: "hint", id: "token-hint" },
      "Paste a token from ", h("code", {}, "taskfleet token USER"), " or the one ",
      h("code", {}, "taskfleet up"), " printed. ",
      "It stays in this tab only, and goes when the tab closes."),
    status,
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    status.textContent = "";
    try {
      await signInWithToken(input.value);
    } catch (err) {
      status.textContent = `Not signed in: ${err.message}`;
      input.focus();
    }
  });
  main.replaceChildren(form);
  input.focus();
}
