"use strict";
/*
 * Building blocks of the emulated Hub REST API (hub-api.js): HTTP response helpers, request body
 * parsing, broadcast streams, log feeds and the package.json reader for sequence packages.
 * Shapes and texts follow shared/spec/space-api.md §3.3/§3.5/§5 and hub-protocol.md §5.4/§6.
 */

const os = require("os");
const zlib = require("zlib");
const crypto = require("crypto");

const TOPIC_TYPES = new Set(["text/x-ndjson", "application/x-ndjson", "text/plain", "application/octet-stream"]);
const NDJSON_TYPES = new Set(["text/x-ndjson", "application/x-ndjson"]);
const DEFAULT_TOPIC_TYPE = "application/x-ndjson";
// The class includes a backslash, like the STH's own check (spec §1.6 / hub-protocol §5.3).
const TOPIC_NAME = /^[\\a-zA-Z0-9_+-]+$/;

/* ------------------------------------------------------------------------------------------ */
/* HTTP helpers                                                                               */

// Like the STH (see the capture): content-type set lower-case after the CORS header, body
// written then ended, so Node sends it chunked with no Content-Length. The sequence upload
// answer spells the header "Content-type" on the real Hub, hence `headerName`.
function sendJson(res, status, obj, headerName = "content-type") {
    if (res.headersSent || res.destroyed) return;
    res.setHeader(headerName, "application/json");
    res.writeHead(status);
    res.write(JSON.stringify(obj));
    res.end();
}

// A status with an empty body (instance input/stdin answers).
function sendEmpty(res, status) {
    if (res.headersSent || res.destroyed) return;
    res.writeHead(status);
    res.end();
}

// "100 Continue" at most once per request, only if asked for and before the response head.
function continueOnce(req, res) {
    if (!req.headers.expect || res.continued || res.headersSent) return;
    res.continued = true;
    res.writeContinue();
}

// Answer only after the request body is consumed, so the channel's window keeps moving and a
// client that waits for "100 Continue" is not left hanging.
function replyAfterBody(req, res, status, obj) {
    continueOnce(req, res);
    req.resume();
    const send = () => sendJson(res, status, obj);
    if (req.complete) send(); else { req.once("end", send); req.once("close", send); }
}

// Long-lived stream response: head out at once, every write flushed as its own chunk.
// Header order as in the capture: ACAO, content-type, transfer-encoding, Date, Connection.
function startStream(res) {
    res.writeHead(200, { "content-type": "application/octet-stream", "transfer-encoding": "chunked" });
    res.flushHeaders();
}

// Consume a readable completely; resolves with byte count, sha256 and (optionally) the bytes.
function drain(readable, keep) {
    return new Promise((resolve, reject) => {
        const hash = crypto.createHash("sha256");
        const chunks = [];
        let bytes = 0;
        readable.on("data", (c) => { bytes += c.length; hash.update(c); if (keep) chunks.push(c); });
        readable.on("end", () => resolve({ bytes, sha256: hash.digest("hex"), body: keep ? Buffer.concat(chunks) : null }));
        readable.on("error", reject);
        readable.on("aborted", () => reject(new Error("aborted")));
    });
}

function readBody(req) {
    return drain(req, true).then((r) => r.body);
}

// Resolves once `stream` drained or closed.
function waitDrain(stream) {
    return new Promise((resolve) => {
        const done = () => { stream.off("drain", done); stream.off("close", done); resolve(); };
        stream.once("drain", done);
        stream.once("close", done);
    });
}

// Bodies of control posts (start, _kill, _stop, _event): `[code, {...}]` arrays (v0.26),
// plain objects (HEAD), `null` (Py) and empty bodies are all accepted (spec §5.4).
function parseControlBody(buf) {
    const text = buf ? buf.toString("utf8").trim() : "";
    if (!text) return { value: {} };
    let value;
    try { value = JSON.parse(text); } catch (e) { return { error: "Invalid JSON body" }; }
    if (Array.isArray(value)) value = value[1];
    if (value === null || value === undefined) value = {};
    if (typeof value !== "object" || Array.isArray(value)) return { error: "Invalid JSON body" };
    return { value };
}

// x-end-stream: "true" (any case) ends the target; any other value keeps it open; absent →
// the route's default (spec §5.5).
function endStreamHeader(req, fallback) {
    const raw = req.headers["x-end-stream"];
    if (raw === undefined) return fallback;
    return String(raw).trim().toLowerCase() === "true";
}

// Content type without parameters ("text/plain; charset=utf-8" → "text/plain").
function mediaType(raw) {
    if (!raw) return "";
    return String(raw).split(";")[0].trim().toLowerCase();
}

/* ------------------------------------------------------------------------------------------ */
/* Streams                                                                                    */

// One producer, many readers: every chunk goes to every attached reader ("sink": an HTTP
// response or any Writable). While nobody reads, up to `limit` bytes are kept and handed to
// the first reader (like the STH's PassThrough streams); beyond that best-effort writes are
// dropped and awaited writes wait for a reader. limit 0 = nothing kept, writes are dropped.
class Broadcast {
    constructor(limit) {
        this.limit = limit;
        this.readers = new Set();
        this.pending = [];
        this.pendingBytes = 0;
        this.ended = false;
        this.roomWaiters = [];
    }

    attach(sink) {
        if (this.pendingBytes) sink.write(Buffer.concat(this.pending));
        this.pending = [];
        this.pendingBytes = 0;
        if (this.ended) return void sink.end();
        this.readers.add(sink);
        sink.on("close", () => this.readers.delete(sink));
        this.wake();
    }

    hasRoom() {
        return this.ended || this.readers.size > 0 || this.limit === 0 || this.pendingBytes < this.limit;
    }

    // Best effort (instance ticks): returns false when the chunk was dropped.
    write(chunk) {
        if (this.ended) return false;
        if (this.readers.size === 0) return this.keep(chunk);
        for (const r of this.readers) if (!r.destroyed && !r.writableEnded) r.write(chunk);
        return true;
    }

    // With back-pressure (topic uploads): waits for room, then until every reader drained.
    async writeAwait(chunk) {
        while (!this.hasRoom()) await new Promise((r) => this.roomWaiters.push(r));
        if (this.ended) return;
        if (this.readers.size === 0) return void this.keep(chunk);
        const waits = [];
        for (const r of this.readers) {
            if (r.destroyed || r.writableEnded) continue;
            if (!r.write(chunk) && !r.destroyed) waits.push(waitDrain(r));
        }
        await Promise.all(waits);
    }

    keep(chunk) {
        if (this.limit === 0 || this.pendingBytes >= this.limit) return false;
        this.pending.push(chunk);
        this.pendingBytes += chunk.length;
        return true;
    }

    wake() {
        const waiters = this.roomWaiters;
        this.roomWaiters = [];
        for (const w of waiters) w();
    }

    end() {
        if (this.ended) return;
        this.ended = true;
        for (const r of this.readers) if (!r.writableEnded) r.end();
        this.readers.clear();
        this.wake();
    }
}

// Hub log / audit: a replay buffer of the last `keep` lines, then live lines; never ends.
class LogFeed {
    constructor(keep) {
        this.keep = keep;
        this.lines = [];
        this.readers = new Set();
    }

    push(line) {
        this.lines.push(line);
        if (this.lines.length > this.keep) this.lines.shift();
        for (const r of this.readers) if (!r.destroyed && !r.writableEnded) r.write(line);
    }

    attach(res) {
        if (this.lines.length) res.write(this.lines.join(""));
        this.readers.add(res);
        res.on("close", () => this.readers.delete(res));
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Sequence packages                                                                          */

function cString(buf, start, len) {
    const end = buf.indexOf(0, start);
    return buf.toString("utf8", start, end >= 0 && end < start + len ? end : start + len);
}

function paxPath(data) {
    for (const rec of data.toString("utf8").split("\n")) {
        const m = /^\d+ path=(.*)$/.exec(rec);
        if (m) return m[1];
    }
    return null;
}

// Minimal tar walk: ustar names with prefix, GNU long names ("L"), pax "path" records ("x").
function* tarEntries(tar) {
    let off = 0;
    let longName = null;
    while (off + 512 <= tar.length) {
        const h = tar.subarray(off, off + 512);
        if (h.every((b) => b === 0)) return;
        let name = cString(h, 0, 100);
        const prefix = cString(h, 257, 6).startsWith("ustar") ? cString(h, 345, 155) : "";
        if (prefix) name = `${prefix}/${name}`;
        const size = parseInt(cString(h, 124, 12).trim() || "0", 8) || 0;
        const type = String.fromCharCode(h[156] || 48);
        const data = tar.subarray(off + 512, off + 512 + size);
        off += 512 + Math.ceil(size / 512) * 512;
        if (type === "L") { longName = cString(data, 0, data.length); continue; }
        if (type === "x") { longName = paxPath(data) || longName; continue; }
        if (type === "g") continue;
        if (longName !== null) { name = longName; longName = null; }
        if (type === "0" || type === "7") yield { name, data };
    }
}

// package.json of a gzip tar package: at the root, or one directory down (npm pack's
// "package/"); null when the body is not gzip, not a tar, or has no parsable package.json.
function readPackageJson(body) {
    if (body.length < 2 || body[0] !== 0x1f || body[1] !== 0x8b) return null;
    let tar;
    try { tar = zlib.gunzipSync(body, { finishFlush: zlib.constants.Z_SYNC_FLUSH }); } catch (e) { return null; }
    let best = null;
    for (const { name, data } of tarEntries(tar)) {
        const parts = name.replace(/^(\.\/)+/, "").split("/").filter(Boolean);
        if (parts[parts.length - 1] !== "package.json" || parts.length > 2) continue;
        if (!best || parts.length < best.depth) best = { depth: parts.length, data };
    }
    if (!best) return null;
    try {
        const pkg = JSON.parse(best.data.toString("utf8"));
        return pkg && typeof pkg === "object" && !Array.isArray(pkg) ? pkg : null;
    } catch (e) {
        return null;
    }
}

const str = (v, fallback) => (typeof v === "string" && v ? v : fallback);

// The Hub's SequenceConfig (key order as in the capture), filled from package.json if found.
function sequenceConfig(id, body) {
    const pkg = readPackageJson(body) || {};
    const engines = pkg.engines && typeof pkg.engines === "object" ? { ...pkg.engines } : {};
    const config = {
        type: "process",
        engines,
        entrypointPath: str(pkg.main, "index.js"),
        version: str(pkg.version, "1.0.0"),
        name: str(pkg.name, "interop-seq"),
        id,
        sequenceDir: `${os.homedir()}/.scramjet_sequences/${id}`,
        language: engines.python3 ? "py" : "js",
    };
    for (const key of ["description", "author", "keywords", "repository"]) {
        if (pkg[key] !== undefined) config[key] = pkg[key];
    }
    config.packageSize = body.length;
    return config;
}

module.exports = {
    TOPIC_TYPES, NDJSON_TYPES, DEFAULT_TOPIC_TYPE, TOPIC_NAME,
    sendJson, sendEmpty, continueOnce, replyAfterBody, startStream, drain, readBody, waitDrain,
    parseControlBody, endStreamHeader, mediaType,
    Broadcast, LogFeed, readPackageJson, sequenceConfig,
};
