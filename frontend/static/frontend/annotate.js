// Tandem's annotator pages: drafts kept in localStorage, and the comparison screen (polling the
// responses while they generate, keyboard and mouse labelling, submission over the JSON API).
// A response is inserted as the HTML the server rendered from its Markdown and sanitized
// (annotation/rendering.py: the comparison JSON's `html`); every other text from prompts and
// models is set with textContent, never parsed as HTML.

const POLL_MS = 300;
const PENDING_WARN_MS = 60_000;

// --- drafts -------------------------------------------------------------------------------------

const drafts = {
  get(key) {
    try {
      const raw = window.localStorage.getItem(`tandem:${key}`);
      return raw === null ? null : JSON.parse(raw);
    } catch {
      return null; // storage disabled or a corrupt entry: no draft
    }
  },
  set(key, value) {
    try {
      window.localStorage.setItem(`tandem:${key}`, JSON.stringify(value));
    } catch {
      // quota or privacy mode: the draft is a convenience, labelling goes on without it
    }
  },
  clear(key) {
    try {
      window.localStorage.removeItem(`tandem:${key}`);
    } catch {
      // as above
    }
  },
};

// A prompt form's fields saved while typing and restored on return; cleared when it is sent.
// A value the server rendered (a form sent back with an error) wins over the stored draft.
function keepPromptDraft(form, key) {
  if (!form) return;
  const fields = [...form.elements].filter(
    (el) => el.name && el.name !== "csrfmiddlewaretoken" && el.type !== "submit",
  );
  const prompt = form.elements.namedItem("prompt");
  const saved = drafts.get(key);
  if (saved && prompt && !prompt.value.trim()) {
    for (const el of fields) {
      if (!(el.name in saved)) continue;
      if (el.type === "radio") el.checked = el.value === saved[el.name];
      else if (el.type === "checkbox") el.checked = Boolean(saved[el.name]);
      else el.value = saved[el.name];
    }
  }
  const save = () => {
    const value = {};
    for (const el of fields) {
      if (el.type === "radio") {
        if (el.checked) value[el.name] = el.value;
      } else if (el.type === "checkbox") value[el.name] = el.checked;
      else value[el.name] = el.value;
    }
    if (prompt && prompt.value.trim()) drafts.set(key, value);
    else drafts.clear(key);
  };
  form.addEventListener("input", save);
  form.addEventListener("change", save);
  form.addEventListener("submit", () => drafts.clear(key));
  if (prompt) {
    prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
  }
}

// --- the comparison screen ----------------------------------------------------------------------

function csrfToken() {
  const cookie = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  if (cookie) return decodeURIComponent(cookie.slice("csrftoken=".length));
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

function comparisonScreen(root) {
  const id = root.dataset.id;
  const queueMode = root.dataset.queueMode === "1";
  const draftKey = `label:${id}`;
  const $ = (selector) => root.querySelector(selector);
  const status = $("#generation-status");
  const failedBox = $("#generation-failed");
  const errorBox = $("#generation-error");
  const retryButton = $("#retry-generation");
  const retryError = $("#retry-error");
  const missingBox = $("#label-missing");
  const labelError = $("#label-error");
  const submitButton = $("#submit-label");
  const editButton = $("#edit-button");
  const editPanel = $("#edit-panel");
  const editText = $("#edit-text");
  const rationale = $("#rationale");
  const labelling = $("#labelling");
  const done = $("#done");
  const continueForm = document.getElementById("continue-form");
  const choiceButtons = [...root.querySelectorAll("button[data-field]")];
  const texts = { left: $("#text-left"), right: $("#text-right") };
  const sideStates = { left: $("#state-left"), right: $("#state-right") };
  const writingBars = { left: $("#writing-left"), right: $("#writing-right") };
  const cutOffBadges = { left: $("#cut-off-left"), right: $("#cut-off-right") };
  const shownHtml = { left: null, right: null }; // what each side shows, to skip a re-render

  const state = {
    chosen: null,
    strength: null,
    safety: null,
    edit: null, // the edited chosen response, or null when not edited
    rationale: "",
    readyAt: null, // performance.now() when both responses were complete
    spentBefore: 0, // time spent on this item before the page was last closed
    ready: false,
    submitting: false,
    finished: false, // labelled (now or earlier)
    data: null,
  };

  // Restore a draft: label choices, edit and rationale, and the time already spent.
  const saved = drafts.get(draftKey);
  if (saved) {
    for (const field of ["chosen", "strength", "safety", "edit", "rationale"]) {
      if (saved[field] !== undefined) state[field] = saved[field];
    }
    state.spentBefore = Number(saved.spent) || 0;
    rationale.value = state.rationale || "";
  }

  function spentMs() {
    if (state.readyAt === null) return state.spentBefore;
    return state.spentBefore + Math.round(performance.now() - state.readyAt);
  }

  function saveDraft() {
    if (state.finished) return;
    const { chosen, strength, safety, edit } = state;
    drafts.set(draftKey, {
      chosen,
      strength,
      safety,
      edit,
      rationale: rationale.value,
      spent: spentMs(),
    });
  }

  // The keys of a group of choice buttons, as the page (hence the server) defines them.
  function keysOf(field) {
    return choiceButtons
      .filter((button) => button.dataset.field === field)
      .map((button) => button.dataset.key.toUpperCase());
  }

  // A choice's wording ("chosen is safe, the other is not"), as the page defines it.
  function wordingOf(field, value) {
    return choiceButtons.find(
      (button) => button.dataset.field === field && button.dataset.value === value,
    ).dataset.label;
  }

  function missing() {
    const needed = [];
    const hint = (field) => {
      const keys = keysOf(field);
      return `${keys.slice(0, -1).join(", ")} or ${keys.at(-1)}`;
    };
    if (!state.chosen) needed.push(`which response is better (${hint("chosen")})`);
    if (!state.strength) needed.push(`how much better (${hint("strength")})`);
    if (!state.safety) needed.push(`the safety label (${hint("safety")})`);
    return needed;
  }

  function showMissing() {
    const needed = missing();
    missingBox.textContent = needed.length
      ? `Still needed: ${needed.join("; ")}.`
      : "Ready to submit: press Enter.";
    submitButton.disabled = !state.ready || state.submitting || needed.length > 0;
  }

  function chosenText() {
    return state.chosen && state.data ? state.data[state.chosen].text : "";
  }

  function render() {
    for (const button of choiceButtons) {
      const field = button.dataset.field;
      button.setAttribute("aria-pressed", String(state[field] === button.dataset.value));
      button.disabled = !state.ready || state.finished;
    }
    for (const side of ["left", "right"]) {
      $(`#response-${side}`).classList.toggle("chosen", state.chosen === side);
    }
    editButton.disabled = !state.ready || state.finished || !state.chosen;
    if (state.edit !== null && state.ready && !state.finished) {
      editPanel.hidden = false;
      if (editText.value !== state.edit) editText.value = state.edit;
      editPanel.querySelector("label").firstChild.textContent =
        `Your edit of the chosen (${state.chosen}) response `;
    } else {
      editPanel.hidden = true;
    }
    if (state.ready && !state.finished) showMissing();
  }

  function choose(field, value) {
    if (!state.ready || state.finished) {
      missingBox.textContent = state.finished
        ? "This comparison is already labelled."
        : "The responses are still being generated.";
      return;
    }
    if (field === "chosen" && state.chosen !== value && state.edit !== null) {
      // An edit belongs to the response it started from.
      state.edit = null;
      editText.value = "";
    }
    state[field] = value;
    saveDraft();
    render();
  }

  function startEdit() {
    if (!state.ready || state.finished) return;
    if (!state.chosen) {
      missingBox.textContent = "Choose a response (1 or 2) before editing it.";
      return;
    }
    if (state.edit === null) state.edit = chosenText();
    saveDraft();
    render();
    editText.focus();
  }

  async function submit() {
    if (state.submitting || state.finished) return;
    if (!state.ready) {
      missingBox.textContent = "The responses are still being generated.";
      return;
    }
    const needed = missing();
    if (needed.length) {
      showMissing();
      missingBox.classList.add("flash");
      setTimeout(() => missingBox.classList.remove("flash"), 600);
      return;
    }
    state.submitting = true;
    submitButton.disabled = true;
    submitButton.setAttribute("aria-busy", "true");
    labelError.hidden = true;
    const edited =
      state.edit !== null && state.edit.trim() !== chosenText().trim() ? state.edit : "";
    const body = {
      chosen: state.chosen,
      strength: state.strength,
      safety: state.safety,
      time_spent_ms: Math.max(1, spentMs()),
      edited_response: edited,
      rationale: rationale.value,
    };
    let response;
    let payload = {};
    try {
      response = await fetch(root.dataset.labelUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          "X-CSRFToken": csrfToken(),
        },
        body: JSON.stringify(body),
      });
      payload = await response.json().catch(() => ({}));
    } catch {
      fail("The label could not be sent (network problem). Your choices are kept: try again.");
      return;
    }
    if (response.status === 201) {
      finish("Label saved.", body, edited);
    } else if (response.status === 409 && payload.label) {
      finish("You had already labelled this comparison: your first label is kept.", null, "");
    } else {
      fail(describeError(payload, response.status));
    }
  }

  function describeError(payload, code, what = "the label") {
    if (payload && typeof payload.detail === "string") return payload.detail;
    if (payload && typeof payload === "object") {
      const parts = Object.entries(payload).map(
        ([field, errors]) => `${field}: ${[].concat(errors).join(" ")}`,
      );
      if (parts.length) return parts.join("; ");
    }
    if (code === 403) return "Not allowed: your session may have ended. Log in again.";
    return `The server refused ${what} (HTTP ${code}).`;
  }

  function fail(message) {
    state.submitting = false;
    submitButton.removeAttribute("aria-busy");
    labelError.textContent = message;
    labelError.hidden = false;
    showMissing();
  }

  function finish(message, body, edited) {
    state.submitting = false;
    state.finished = true;
    drafts.clear(draftKey);
    submitButton.removeAttribute("aria-busy");
    submitButton.disabled = true;
    labelling.hidden = true;
    done.hidden = false;
    const summary = $("#done-summary");
    summary.textContent = body
      ? `${message} You chose the ${body.chosen} response (${wordingOf("strength", body.strength)}, ` +
        `${wordingOf("safety", body.safety)})${edited ? ", edited" : ""}.`
      : message;
    render();
    if (queueMode) {
      summary.textContent += " Loading the next item…";
      document.getElementById("queue-form").requestSubmit();
      return;
    }
    showContinue(true);
  }

  function showContinue(focus) {
    if (!continueForm) return;
    continueForm.hidden = false;
    if (focus) continueForm.elements.namedItem("prompt").focus();
  }

  // Where one side stands, as [phase, wording]: waiting, generating (tokens so far of its
  // budget), complete, cut off by the length limit or the model's context, or unfinished.
  function sideState(data, side) {
    const { num_tokens: tokens, max_new_tokens: budget, finish_reason: reason } = data[side];
    const counted = `${tokens} token${tokens === 1 ? "" : "s"}`;
    if (data[side].cut_off) {
      const limit = reason === "context" ? "the model's context is full" : "the length limit";
      return ["cut-off", `Cut off at ${counted}: ${limit} stopped it.`];
    }
    if (data[side].finished) return ["complete", `Complete (${counted}).`];
    if (data.status === "failed") return ["unfinished", "Not finished."];
    if (data.status === "generating" && (tokens > 0 || data[side].text)) {
      return ["generating", tokens > 0 ? `Generating… ${tokens} of ${budget} tokens` : "Generating…"];
    }
    return ["waiting", "Waiting…"];
  }

  function showResponses(data) {
    for (const side of ["left", "right"]) {
      const shown = data[side];
      // Sanitized by the server: the only HTML this page inserts.
      if (shownHtml[side] !== shown.html) {
        texts[side].innerHTML = shown.html;
        shownHtml[side] = shown.html;
      }
      const [phase, wording] = sideState(data, side);
      sideStates[side].textContent = wording;
      // The bar shows while the model writes this side.
      writingBars[side].hidden = phase !== "generating";
      writingBars[side].max = Math.max(1, shown.max_new_tokens);
      writingBars[side].value = shown.num_tokens;
      cutOffBadges[side].hidden = phase !== "cut-off";
      cutOffBadges[side].title = phase === "cut-off" ? wording : "";
    }
  }

  let pendingSince = performance.now();
  let pollFailures = 0;

  function onData(data) {
    state.data = data;
    showResponses(data);
    failedBox.hidden = data.status !== "failed";
    if (data.status === "pending") {
      const waited = performance.now() - pendingSince;
      status.textContent =
        waited > PENDING_WARN_MS
          ? "Still waiting for a worker… (none seems to be running: tell an administrator)"
          : "Waiting for a worker to start generating…";
    } else if (data.status === "generating") {
      const doneSides = ["left", "right"].filter((s) => data[s].finished).length;
      status.textContent = `Generating the responses… (${doneSides} of 2 complete)`;
    } else if (data.status === "ready") {
      root.querySelector(".responses").setAttribute("aria-busy", "false");
      if (!state.ready) {
        state.ready = true;
        state.readyAt = performance.now();
      }
      if (data.label) {
        state.finished = true;
        drafts.clear(draftKey);
        labelling.hidden = true;
        done.hidden = false;
        $("#done-summary").textContent =
          `You labelled this comparison: ${data.label.chosen} response, ` +
          `${wordingOf("strength", data.label.strength)}, ${wordingOf("safety", data.label.safety)}.`;
        status.textContent = "Labelled.";
        if (data.can_continue) showContinue(false);
        else if (continueForm) continueForm.remove();
        if (queueMode) document.getElementById("queue-next").hidden = false;
      } else {
        status.textContent = "Both responses are ready: choose the better one.";
      }
    } else if (data.status === "failed") {
      root.querySelector(".responses").setAttribute("aria-busy", "false");
      status.textContent = "Generation failed.";
      errorBox.textContent =
        `The responses could not be generated (${data.error || "unknown error"}). ` +
        "Generate them again, or skip this comparison with the reason “a response is broken or empty”.";
      retryButton.disabled = false;
      labelling.hidden = true;
    }
    render();
    return data.status === "pending" || data.status === "generating";
  }

  // A failed pair is sampled again: the server queues it, and polling resumes from "waiting".
  async function retry() {
    retryButton.disabled = true;
    retryButton.setAttribute("aria-busy", "true");
    retryError.hidden = true;
    let response;
    let payload = {};
    try {
      response = await fetch(root.dataset.retryUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
      });
      payload = await response.json().catch(() => ({}));
    } catch {
      payload = { detail: "The request could not be sent (network problem): try again." };
    }
    retryButton.removeAttribute("aria-busy");
    if (response && response.status === 202) {
      labelling.hidden = false;
      root.querySelector(".responses").setAttribute("aria-busy", "true");
      pendingSince = performance.now();
      if (onData(payload)) setTimeout(poll, POLL_MS);
      return;
    }
    retryError.textContent = describeError(payload, response ? response.status : 0, "the retry");
    retryError.hidden = false;
    retryButton.disabled = false;
    // Someone else retried it (another tab): follow it from where it is now.
    if (response && response.status === 409) poll();
  }

  async function poll() {
    let again = true;
    try {
      const response = await fetch(root.dataset.apiUrl, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
        cache: "no-store",
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      again = onData(await response.json());
      pollFailures = 0;
    } catch (error) {
      pollFailures += 1;
      status.textContent = `Cannot reach the server (${error.message}); retrying…`;
    }
    if (again) setTimeout(poll, pollFailures ? Math.min(5000, POLL_MS * 2 ** pollFailures) : POLL_MS);
  }

  // Mouse.
  for (const button of choiceButtons) {
    button.addEventListener("click", () => choose(button.dataset.field, button.dataset.value));
  }
  editButton.addEventListener("click", startEdit);
  retryButton.addEventListener("click", retry);
  submitButton.addEventListener("click", submit);
  editText.addEventListener("input", () => {
    state.edit = editText.value;
    saveDraft();
  });
  $("#edit-discard").addEventListener("click", () => {
    state.edit = null;
    editText.value = "";
    saveDraft();
    render();
  });
  rationale.addEventListener("input", saveDraft);
  $("#skip-form").addEventListener("submit", () => drafts.clear(draftKey));
  window.addEventListener("pagehide", saveDraft);

  // Keyboard.
  const keys = new Map();
  for (const button of choiceButtons) keys.set(button.dataset.key, button);
  keys.set("ArrowLeft", root.querySelector('button[data-value="left"]'));
  keys.set("ArrowRight", root.querySelector('button[data-value="right"]'));

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing =
      target instanceof HTMLElement &&
      (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
    if (typing) {
      if (event.key === "Escape" && target !== document.body) {
        target.blur();
        event.preventDefault();
      } else if (
        event.key === "Enter" &&
        (event.ctrlKey || event.metaKey) &&
        (target === editText || target === rationale)
      ) {
        event.preventDefault();
        submit();
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === "Enter") {
      // Enter on a focused link or action button activates it, as everywhere else; on a
      // choice button (focused by a click) it submits, like anywhere else on the screen.
      const control = target instanceof HTMLElement && target.closest("button, a, summary");
      if (control && !control.dataset.field) return;
      event.preventDefault();
      submit();
    } else if (key === "e") {
      event.preventDefault();
      startEdit();
    } else if (key === "k") {
      event.preventDefault();
      const panel = $("#skip-panel");
      panel.open = true;
      panel.querySelector("select").focus();
    } else if (keys.has(key)) {
      event.preventDefault();
      const button = keys.get(key);
      choose(button.dataset.field, button.dataset.value);
    }
  });

  render();
  poll();
}

// --- start --------------------------------------------------------------------------------------

const page = document.body.dataset.page;
if (page === "home") {
  keepPromptDraft(document.getElementById("new-dialogue-form"), "prompt:new");
} else if (page === "comparison") {
  const root = document.getElementById("comparison");
  comparisonScreen(root);
  const continueForm = document.getElementById("continue-form");
  if (continueForm) {
    const dialogue = continueForm.action.match(/dialogues\/(\d+)\//)[1];
    keepPromptDraft(continueForm, `prompt:dialogue:${dialogue}`);
  }
}
