// A Hub's page: acts on the Hub through the Space API's Hub proxy (/api/v1/space/S/api/v1/
// sth/H/api/v1/...), streams an Instance's output or log and the Space's audit into the page.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const app = document.getElementById("hub-app");
  if (!app) return;
  const hubApi = app.dataset.hubApi;
  const spaceApi = app.dataset.spaceApi;
  const hubId = app.dataset.hub;
  const message = document.getElementById("hub-message");
  const out = document.getElementById("stream-out");
  const label = document.getElementById("watch-label");
  const kind = document.getElementById("watch-kind");
  let watching = null; // { id, controller }

  function say(text) { message.textContent = text || ""; message.hidden = !text; }

  async function call(url, options, what) {
    say("");
    let r;
    try { r = await Panel.api(url, options); } catch (_) { say(`${what}: the manager is not answering.`); return null; }
    if (!r.ok) { say(`${what}: ${await Panel.explain(r)}`); return null; }
    const text = await r.text();
    try { return text ? JSON.parse(text) : {}; } catch (_) { return {}; }
  }
  const json = (body) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const idOf = (answer) => answer && (answer.id || answer._id || (answer.instance && answer.instance.id));

  async function watch(id) {
    if (watching) watching.controller.abort();
    const controller = new AbortController();
    watching = { id, controller };
    const stream = kind.value;
    out.textContent = "";
    label.textContent = `Instance ${id}: ${kind.value}`;
    let r;
    try {
      r = await Panel.api(`${hubApi}/instance/${encodeURIComponent(id)}/${stream}`, { signal: controller.signal });
    } catch (_) { return; }
    if (!r.ok) { say(`Watching ${id}: ${await Panel.explain(r)}`); return; }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    // The Hub sends output as NDJSON: a Sequence's strings arrive JSON-quoted; show them as text.
    let pending = "";
    const readable = (text) => {
      if (stream !== "output") return text;
      const lines = (pending + text).split("\n");
      pending = lines.pop();
      return lines.map((line) => {
        try { const v = JSON.parse(line); if (typeof v === "string") return v.replace(/\n$/, "") + "\n"; } catch (_) { /* as is */ }
        return line + "\n";
      }).join("");
    };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        out.textContent += readable(decoder.decode(value, { stream: true }));
        if (out.textContent.length > 200000) out.textContent = out.textContent.slice(-100000);
        out.scrollTop = out.scrollHeight;
      }
      label.textContent = `Instance ${id}: ${stream} (ended)`;
    } catch (_) { /* aborted */ }
  }

  async function start(seqId) {
    const answer = await call(`${hubApi}/sequence/${encodeURIComponent(seqId)}/start`, json({ appConfig: {}, args: [] }), `Starting ${seqId}`);
    const id = idOf(answer);
    if (id) { Panel.refresh("hub-state"); watch(id); }
  }

  const actions = {
    start: (id) => start(id),
    remove: async (id) => {
      if (!window.confirm(`Remove Sequence ${id} from this Hub?`)) return;
      await call(`${hubApi}/sequence/${encodeURIComponent(id)}`, { method: "DELETE" }, `Removing ${id}`);
      Panel.refresh("hub-state");
    },
    watch: (id) => watch(id),
    stop: async (id) => {
      await call(`${hubApi}/instance/${encodeURIComponent(id)}/_stop`, json({ timeout: 7000, canCallKeepalive: false }), `Stopping ${id}`);
      Panel.refresh("hub-state");
    },
    kill: async (id) => {
      if (!window.confirm(`Kill Instance ${id}?`)) return;
      await call(`${hubApi}/instance/${encodeURIComponent(id)}/_kill`, json({}), `Killing ${id}`);
      Panel.refresh("hub-state");
    },
    "start-stored": async (id) => {
      const answer = await call(`${spaceApi}/sequence/${encodeURIComponent(id)}/start`, json({ hub: hubId, appConfig: {}, args: [] }), `Starting ${id}`);
      const inst = idOf(answer);
      if (inst) { Panel.refresh("hub-state"); watch(inst); }
    },
    "delete-stored": async (id) => {
      if (!window.confirm(`Delete ${id} from the Space store?`)) return;
      await call(`${spaceApi}/s3/${encodeURIComponent(id)}`, { method: "DELETE" }, `Deleting ${id}`);
      Panel.refresh("store-list");
    },
  };

  app.addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (button && actions[button.dataset.action]) actions[button.dataset.action](button.dataset.id);
  });
  kind.addEventListener("change", () => { if (watching) watch(watching.id); });
  document.getElementById("watch-stop").addEventListener("click", () => {
    if (watching) { watching.controller.abort(); label.textContent = `Stopped watching ${watching.id}.`; watching = null; }
  });

  document.getElementById("seq-send").addEventListener("click", async () => {
    const file = document.getElementById("seq-file").files[0];
    if (!file) { say("Pick a Sequence package (.tar.gz) first."); return; }
    const answer = await call(`${hubApi}/sequence`, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: file }, `Sending ${file.name}`);
    const id = idOf(answer);
    if (!id) return;
    Panel.refresh("hub-state");
    if (document.getElementById("seq-start-after").checked) start(id);
  });

  document.getElementById("store-upload").addEventListener("click", async () => {
    const file = document.getElementById("store-file").files[0];
    if (!file) { say("Pick a Sequence package (.tar.gz) first."); return; }
    const id = document.getElementById("store-id").value.trim();
    const url = id ? `${spaceApi}/s3/${encodeURIComponent(id)}` : `${spaceApi}/s3`;
    const answer = await call(url, { method: "PUT", headers: { "content-type": "application/octet-stream" }, body: file }, `Uploading ${file.name}`);
    if (answer) Panel.refresh("store-list");
  });

  // The Space's audit: history first, then records as they are written (NDJSON).
  async function audit() {
    const rows = document.getElementById("audit-rows");
    const names = { 14000: "Hub connected", 14001: "Hub disconnected", 14002: "Hub deleted", 15000: "key created", 15001: "key revoked", 15100: "operation" };
    const add = (rec) => {
      const tr = document.createElement("tr");
      const when = new Date(rec.receivedAt).toISOString().replace("T", " ").slice(0, 19) + " UTC";
      const what = names[rec.opCode] ? `${rec.opCode} ${names[rec.opCode]}` : String(rec.opCode);
      for (const text of [when, what, rec.hostId || "", rec.objectId || "", rec.requestorId || ""]) {
        const td = document.createElement("td"); td.textContent = text; tr.appendChild(td);
      }
      rows.prepend(tr);
      while (rows.children.length > 50) rows.lastChild.remove();
    };
    for (;;) {
      try {
        const r = await Panel.api(`${spaceApi}/audit`);
        if (r.ok) {
          const reader = r.body.getReader();
          const decoder = new TextDecoder();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += decoder.decode(value, { stream: true });
            let nl;
            while ((nl = buffer.indexOf("\n")) >= 0) {
              const line = buffer.slice(0, nl).trim();
              buffer = buffer.slice(nl + 1);
              if (line) { try { add(JSON.parse(line)); } catch (_) { /* not a record */ } }
            }
          }
        }
      } catch (_) { /* reconnect below */ }
      rows.textContent = "";
      await new Promise((res) => setTimeout(res, 3000));
    }
  }
  audit();
});
