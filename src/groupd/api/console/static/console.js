// groupd console: the few things that need the browser. No inline script anywhere
// (the Content-Security-Policy forbids it); every page works as plain HTML without this.
"use strict";

document.documentElement.classList.add("js");

async function fetchFragment(url) {
  const response = await fetch(url, { headers: { Accept: "text/html" }, credentials: "same-origin" });
  if (!response.ok) {
    throw new Error(`${response.status}`);
  }
  const template = document.createElement("template");
  template.innerHTML = await response.text();
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

function setUpDeleteForm() {
  const form = document.getElementById("delete-form");
  if (!form) return;
  const typed = document.getElementById("confirm-name");
  const button = document.getElementById("delete-subtree");
  const update = () => {
    button.disabled = typed.value !== form.dataset.expected;
  };
  typed.addEventListener("input", update);
  update();
  const release = document.getElementById("release-units");
  release.addEventListener("change", () => {
    const url = release.dataset.releaseUrl + (release.checked ? "?release=true" : "");
    window.location.assign(url);
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

async function loadFragments() {
  for (const holder of document.querySelectorAll("[data-fragment]")) {
    holder.setAttribute("aria-busy", "true");
    holder.querySelector("p").textContent = "Counting…";
    try {
      holder.replaceChildren(await fetchFragment(holder.dataset.fragment));
    } catch (error) {
      holder.querySelector("p").textContent = "Could not count it; reload the page to try again.";
    }
    holder.removeAttribute("aria-busy");
  }
}

setUpDeleteForm();
loadFragments();
setUpAutoSubmit();
setUpProgress();
