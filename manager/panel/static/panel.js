// The Panel's shared script (no build step): live fragments, search and paging without
// reloads, copy buttons, confirmations, and access keys generated through the API.
// API calls use the session cookie; unsafe ones carry the CSRF token from the page's meta.
"use strict";

const Panel = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  function banner(text) {
    const el = document.getElementById("banner");
    if (!el) return;
    el.textContent = text || "";
    el.hidden = !text;
  }

  // Words for an API answer that is not OK: its {"error"} or {"message"}, else the status.
  async function explain(response) {
    let body = null;
    try { body = await response.clone().json(); } catch (_) { body = null; }
    if (body && (body.error || body.message)) {
      const text = body.error || body.message;
      return text === "Forbidden" ? "Not allowed: your session may have ended; sign in again." : text;
    }
    if (response.status === 503) return "The database or the Hub is unavailable; try again shortly.";
    return `The manager answered ${response.status} ${response.statusText}`;
  }

  // fetch for the JSON API with the session cookie; unsafe methods add the CSRF header.
  function api(url, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    const method = (options.method || "GET").toUpperCase();
    if (!["GET", "HEAD"].includes(method)) headers["x-csrf-token"] = csrf();
    return fetch(url, Object.assign({}, options, { headers, credentials: "same-origin" }));
  }

  // A server-rendered fragment, fetched again every data-every ms (0: only on demand).
  const refreshers = new Map();
  function live(el) {
    let timer = null;
    async function refresh() {
      clearTimeout(timer);
      try {
        const r = await fetch(el.dataset.poll + (el.dataset.params || ""), {
          headers: { "x-panel-fragment": "1" }, credentials: "same-origin", cache: "no-store",
        });
        if (r.status === 401) { banner("Your session has ended. Sign in again."); return; }
        if (r.ok) {
          el.innerHTML = await r.text();
          if (el.dataset.failed) { delete el.dataset.failed; banner(""); }
        } else {
          el.dataset.failed = "1";
          banner(await r.text());
        }
      } catch (_) {
        el.dataset.failed = "1";
        banner("The manager is not answering; retrying…");
      }
      const every = Number(el.dataset.every || 0);
      if (every > 0) timer = setTimeout(refresh, every);
    }
    refreshers.set(el.id, refresh);
    const every = Number(el.dataset.every || 0);
    if (every > 0) timer = setTimeout(refresh, every);
  }
  const refresh = (id) => (refreshers.get(id) || (async () => {}))();

  function copy(button) {
    const text = document.getElementById(button.dataset.copy).textContent;
    const done = () => { const was = button.textContent; button.textContent = "Copied"; setTimeout(() => { button.textContent = was; }, 1500); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => selectText(button));
    } else {
      selectText(button);
    }
  }
  function selectText(button) {
    const range = document.createRange();
    range.selectNodeContents(document.getElementById(button.dataset.copy));
    const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
    button.textContent = "Selected: press Ctrl+C";
  }

  function searchAndPaging() {
    const rows = document.getElementById("hub-rows");
    const form = document.getElementById("hub-search");
    if (!rows || !form) return;
    const input = form.querySelector("input[name=q]");
    const go = (page) => {
      const params = `?q=${encodeURIComponent(input.value.trim())}&page=${page}`;
      rows.dataset.params = params;
      history.replaceState(null, "", params);
      refresh("hub-rows");
    };
    let debounce = null;
    input.addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(() => go(1), 250); });
    form.addEventListener("submit", (ev) => { ev.preventDefault(); go(1); });
    rows.addEventListener("click", (ev) => {
      const link = ev.target.closest("a[data-page]");
      if (link) { ev.preventDefault(); go(link.dataset.page); }
    });
  }

  function generateKeys() {
    const form = document.getElementById("generate-key");
    if (!form) return;
    const message = document.getElementById("key-message");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      message.hidden = true;
      const description = form.querySelector("[name=description]").value;
      let r;
      try {
        r = await api(form.dataset.api, {
          method: "POST", headers: { "content-type": "application/json" },
          body: JSON.stringify({ description }),
        });
      } catch (_) {
        message.textContent = "The manager is not answering."; message.hidden = false; return;
      }
      if (!r.ok) { message.textContent = await explain(r); message.hidden = false; return; }
      const made = await r.json();
      document.getElementById("new-key-value").textContent = made.accessKey;
      document.getElementById("new-key-command").textContent =
        `scramjet-transform-hub --platform-api ${form.dataset.managerUrl} ` +
        `--platform-space ${form.dataset.platformSpace} --platform-api-key ${made.accessKey}`;
      document.getElementById("new-key").hidden = false;
      form.reset();
      await refresh("key-list");
      const table = document.getElementById("key-table");
      if (table) document.getElementById("generate").disabled = Number(table.dataset.count) >= Number(table.dataset.max);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-poll]").forEach(live);
    searchAndPaging();
    generateKeys();
    document.addEventListener("click", (ev) => {
      const button = ev.target.closest("[data-copy]");
      if (button) copy(button);
    });
    document.addEventListener("submit", (ev) => {
      const button = ev.submitter;
      if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) ev.preventDefault();
    });
  });

  return { api, explain, banner, refresh };
})();
