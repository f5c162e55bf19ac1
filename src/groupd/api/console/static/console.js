// groupd console: the few things that need the browser. No inline script anywhere
// (the Content-Security-Policy forbids it); every page works as plain HTML without this.
"use strict";

document.documentElement.classList.add("js");

async function fetchFragment(url) {
  const response = await fetch(url, { headers: { Accept: "text/html" }, credentials: "same-origin" });
  const template = document.createElement("template");
  template.innerHTML = await response.text();
  if (!response.ok) {
    // The console's error page says what went wrong in its alert.
    const alert = template.content.querySelector("[role=alert]");
    throw new Error(alert ? alert.textContent.trim() : `${response.status}`);
  }
  return template.content;
}

function nameOf(toggle) {
  return toggle.parentElement.querySelector("a").textContent;
}

async function toggleNode(toggle) {
  const item = toggle.parentElement;
  let list = item.querySelector(":scope > ul");
  const expanded = toggle.getAttribute("aria-expanded") === "true";
  if (expanded) {
    if (list) list.hidden = true;
    toggle.setAttribute("aria-expanded", "false");
    toggle.setAttribute("aria-label", `Expand ${nameOf(toggle)}`);
    toggle.firstElementChild.textContent = "▸";
    return;
  }
  if (!list) {
    toggle.setAttribute("aria-busy", "true");
    try {
      list = document.createElement("ul");
      list.setAttribute("role", "list");
      list.append(await fetchFragment(toggle.dataset.children));
      item.append(list);
    } catch (error) {
      toggle.removeAttribute("aria-busy");
      return;
    }
    toggle.removeAttribute("aria-busy");
  }
  list.hidden = false;
  toggle.setAttribute("aria-expanded", "true");
  toggle.setAttribute("aria-label", `Collapse ${nameOf(toggle)}`);
  toggle.firstElementChild.textContent = "▾";
}

async function loadMore(button) {
  const item = button.closest("li");
  button.disabled = true;
  try {
    const fragment = await fetchFragment(button.dataset.more);
    const first = fragment.firstElementChild;
    item.replaceWith(fragment);
    if (first) first.querySelector("a, button")?.focus();
  } catch (error) {
    button.disabled = false;
  }
}

document.addEventListener("click", (event) => {
  const toggle = event.target.closest("button.toggle");
  if (toggle) {
    toggleNode(toggle);
    return;
  }
  const more = event.target.closest("button.load-more");
  if (more) loadMore(more);
});

// The delete's page: "Delete subtree" is enabled once the impact is shown, nothing blocks
// the delete, and the typed name matches (the server checks the name too).
function setUpDeleteForm() {
  const form = document.getElementById("delete-form");
  if (!form) return;
  const region = document.getElementById("impact-region");
  const typed = document.getElementById("confirm-name");
  const button = document.getElementById("delete-subtree");
  const hint = document.getElementById("delete-hint");
  const update = () => {
    const shown = region.querySelector("[data-blocked]");
    const blocked = shown !== null && shown.dataset.blocked === "true";
    const counting = region.getAttribute("aria-busy") === "true";
    const ready = shown !== null && !blocked && !counting;
    button.disabled = !ready || typed.value !== form.dataset.expected;
    if (blocked) hint.textContent = "The delete would be refused (see above).";
    else if (!ready) hint.textContent = "Enabled once the count is shown.";
    else hint.textContent = button.disabled ? "Type the name to enable it." : "";
  };
  typed.addEventListener("input", update);
  region.addEventListener("fragment-change", update);
  update();
  const release = document.getElementById("release-units");
  release.addEventListener("change", () => {
    const query = release.checked ? "?release=true" : "";
    // A reload keeps the choice; the count comes again with the new caption.
    window.history.replaceState(null, "", release.dataset.pageUrl + query);
    region.dataset.fragment = release.dataset.impactUrl + query;
    loadFragment(region);
  });
}

function setUpAutoSubmit() {
  for (const input of document.querySelectorAll("[data-autosubmit]")) {
    input.addEventListener("change", () => input.form.submit());
  }
}

function formatCount(n) {
  return Number(n).toLocaleString("en-US");
}

function setUpProgress() {
  const section = document.getElementById("operation");
  if (!section || section.dataset.done === "true") return;
  const state = document.getElementById("op-state");
  const tick = async () => {
    let data;
    try {
      const response = await fetch(section.dataset.progress, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`${response.status}`);
      data = await response.json();
    } catch (error) {
      window.setTimeout(tick, 2000);
      return;
    }
    state.textContent = data.state;
    state.className = `state-${data.state}`;
    for (const kind of data.kinds) {
      const row = section.querySelector(`tr[data-kind="${kind.kind}"]`);
      if (!row) continue;
      const bar = row.querySelector("progress");
      if (kind.total) {
        bar.max = kind.total;
        bar.value = kind.done;
      } else if (data.done) {
        bar.max = 1;
        bar.value = 1;
      }
      row.querySelector(".done").textContent = formatCount(kind.done);
      row.querySelector(".total").textContent =
        kind.total === null ? "counting…" : formatCount(kind.total);
    }
    if (data.done) {
      section.dataset.done = "true";
      const ended = document.createElement("span");
      ended.id = "op-ended";
      ended.textContent = " — ended";
      state.after(ended);
      document.getElementById("op-finished").textContent = "just now";
      // The page as the server renders an ended operation: its outcome and links (the
      // bin entry of a delete, the group a restore brought back, a refusal's conflicts).
      window.location.reload();
      return;
    }
    window.setTimeout(tick, 500);
  };
  window.setTimeout(tick, 300);
}

// A section whose content is an aggregate over a whole subtree: the page comes first,
// the count in its own request (docs/decisions/0042, 0043). The holder is a live region.
async function loadFragment(holder) {
  const say = (text) => {
    const line = document.createElement("p");
    line.textContent = text;
    holder.replaceChildren(line);
  };
  const changed = () => holder.dispatchEvent(new Event("fragment-change"));
  holder.setAttribute("aria-busy", "true");
  say(holder.dataset.counting || "Counting…");
  changed();
  const url = holder.dataset.fragment;
  let content = null;
  let failure = "";
  try {
    content = await fetchFragment(url);
  } catch (error) {
    failure = error.message;
  }
  if (holder.dataset.fragment !== url) return; // a newer request took its place
  if (content) holder.replaceChildren(content);
  else say(`Could not count it (${failure}); reload the page to try again.`);
  holder.removeAttribute("aria-busy");
  changed();
}

function loadFragments() {
  for (const holder of document.querySelectorAll("[data-fragment]")) loadFragment(holder);
}

setUpDeleteForm();
loadFragments();
setUpAutoSubmit();
setUpProgress();
