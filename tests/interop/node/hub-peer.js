#!/usr/bin/env node
"use strict";
/*
 * Hub peer: behaves on the wire like an unmodified Scramjet Transform Hub 1.0.1 started with
 * `--platform-api URL --platform-space ORG:SPACE --platform-api-key KEY`, built from the npm
 * packages the STH itself uses (bpmux 8.2.1 for the tunnel, @scramjet/utility for the key proof
 * and URL normalisation). Written from shared/spec/hub-protocol.md, not from the STH sources.
 * The Hub REST API behind the tunnel is emulated in memory by hub-api.js (sequences, instances
 * that tick and echo, topics, logs).
 *
 * stdout: one JSON event per line (for the Python tests). stderr: diagnostics.
 * stdin: one JSON command per line. See README.md for the protocol.
 */

const http = require("http");
const https = require("https");
const fs = require("fs");
const os = require("os");
const readline = require("readline");
const { BPMux } = require("bpmux");
const { generateSTHKey, normalizeUrl } = require("@scramjet/utility");
const { HubApi } = require("./hub-api");
const { sendJson, drain, continueOnce, replyAfterBody } = require("./hub-model");

// Control-channel message codes (spec §5.3).
const CODE = {
    STH_ID: 7000, LOAD: 7001, NETWORK_INFO: 7002, INSTANCES: 7003, SEQUENCES: 7004,
    INSTANCE: 7005, SEQUENCE: 7006, TOPIC: 7007,
    KEY_REVOKED: 9001, LIMIT_EXCEEDED: 9002, ID_DROP: 9003,
};
const ABANDON_CODES = new Set([CODE.KEY_REVOKED, CODE.LIMIT_EXCEEDED, CODE.ID_DROP]);
// The STH subtracts a safe-operation reserve from the free disk space it reports (spec §5.4.1).
const SAFE_OPERATION_RESERVE = 512 * 1024 * 1024;
const PATTERN_MOD = 251;
const MAX_CHUNK = 65536;
// Byte i of every "pattern" stream is i % 251; slices of this buffer give any window of it.
const PATTERN = Buffer.from(Array.from({ length: MAX_CHUNK + PATTERN_MOD }, (_, i) => i % PATTERN_MOD));

/* ------------------------------------------------------------------------------------------ */
/* Output                                                                                     */

// Events still printed under --quiet: summaries and anything a test waits for explicitly.
const QUIET_KEPT = new Set(["ready", "response", "error", "abandoned", "gave_up", "status", "load_sent"]);
let quiet = false;

function emit(event) {
    if (quiet && !QUIET_KEPT.has(event.event)) return;
    // stdout on a pipe is synchronous on Linux, so process.exit() never loses a line.
    process.stdout.write(JSON.stringify(event) + "\n");
}

function diag(...args) {
    process.stderr.write(`[hub-peer] ${args.join(" ")}\n`);
}

/* ------------------------------------------------------------------------------------------ */
/* Command line                                                                               */

const USAGE = `usage: node hub-peer.js --platform-api URL --platform-space ORG:SPACE [--platform-api-key KEY]
        [--id ID] [--description TEXT] [--tags a,b] [--count N] [--reconnection-delay MS]
        [--max-reconnections N] [--load-interval MS] [--platform-api-version v1]
        [--cpm-ssl-ca-path FILE] [--same-proof] [--proofs FILE] [--binary] [--quiet]
        [--tick-ms MS] [--kill-delay-ms MS] [--instance-lifetime MS] [--stream-buffer BYTES]
        [--current-load N]   (report this currentLoad instead of the machine's 1-minute load)
        [--listen PORT]   (peer 0 also serves its Hub API directly on 127.0.0.1:PORT)`;

const VALUE_FLAGS = new Set([
    "--platform-api", "--platform-space", "--platform-api-key", "--platform-api-version", "--id",
    "--description", "-desc", "--tags", "--count", "--reconnection-delay", "--max-reconnections",
    "--load-interval", "--cpm-ssl-ca-path", "--tick-ms", "--kill-delay-ms", "--instance-lifetime",
    "--stream-buffer", "--listen", "--proofs", "--current-load",
]);
const BOOL_FLAGS = new Set(["--quiet", "--binary", "--same-proof"]);

function usageError(message) {
    process.stderr.write(`${message}\n${USAGE}\n`);
    process.exit(2);
}

function parseIntFlag(raw, name) {
    const n = Number(raw);
    if (!Number.isInteger(n)) usageError(`${name} must be an integer, got ${JSON.stringify(raw)}`);
    return n;
}

function readFlags(argv) {
    const flags = {};
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        if (BOOL_FLAGS.has(arg)) { flags[arg] = true; continue; }
        if (!VALUE_FLAGS.has(arg)) usageError(`unknown argument ${arg}`);
        if (i + 1 >= argv.length) usageError(`${arg} needs a value`);
        flags[arg === "-desc" ? "--description" : arg] = argv[++i];
    }
    return flags;
}

// Tags are split on "," with no trimming; an empty element aborts STH startup (spec §1.1).
function parseTags(raw) {
    if (raw === undefined) return [];
    const tags = raw.split(",");
    if (tags.some((t) => t === "")) usageError(`--tags contains an empty element: ${JSON.stringify(raw)}`);
    return tags;
}

function parseLoad(raw, name) {
    const n = Number(raw);
    if (raw === "" || !Number.isFinite(n) || n < 0) usageError(`${name} must be a number >= 0, got ${JSON.stringify(raw)}`);
    return n;
}

function intOption(f, name, fallback) {
    return f[name] !== undefined ? parseIntFlag(f[name], name) : fallback;
}

function parseArgs(argv) {
    const f = readFlags(argv);
    if (!f["--platform-api"] || !f["--platform-space"]) usageError("--platform-api and --platform-space are required");
    // Further ":"-separated parts are dropped, like the STH does.
    const [org, space] = f["--platform-space"].split(":");
    if (space === undefined) usageError("--platform-space must be ORG:SPACE");
    const opts = {
        api: f["--platform-api"],
        apiVersion: f["--platform-api-version"] || "v1",
        org,
        space,
        key: f["--platform-api-key"],
        id: f["--id"],
        description: f["--description"] !== undefined ? f["--description"] : "",
        tags: parseTags(f["--tags"]),
        count: f["--count"] !== undefined ? parseIntFlag(f["--count"], "--count") : 1,
        reconnectionDelay: intOption(f, "--reconnection-delay", 2000),
        maxReconnections: intOption(f, "--max-reconnections", 100),
        loadInterval: intOption(f, "--load-interval", 5000),
        // Emulated Hub API (hub-api.js).
        tickMs: intOption(f, "--tick-ms", 200),
        killDelay: intOption(f, "--kill-delay-ms", 100),
        instanceLifetime: intOption(f, "--instance-lifetime", 180000),
        streamBuffer: intOption(f, "--stream-buffer", 65536),
        listen: f["--listen"] !== undefined ? parseIntFlag(f["--listen"], "--listen") : undefined,
        caPath: f["--cpm-ssl-ca-path"],
        sameProof: !!f["--same-proof"],
        proofsFile: f["--proofs"],
        binary: !!f["--binary"],
        quiet: !!f["--quiet"],
        currentLoad: f["--current-load"] !== undefined ? parseLoad(f["--current-load"], "--current-load") : undefined,
    };
    if (opts.count < 1) usageError("--count must be >= 1");
    for (const [k, name] of [["tickMs", "--tick-ms"], ["killDelay", "--kill-delay-ms"], ["streamBuffer", "--stream-buffer"]]) {
        if (opts[k] < 0) usageError(`${name} must be >= 0`);
    }
    return opts;
}

/* ------------------------------------------------------------------------------------------ */
/* Tunnel target (spec §1.2)                                                                  */

function tunnelTarget(opts) {
    // Same steps as the STH: strip one trailing "/", normalise with normalize-url v4 (via
    // @scramjet/utility, which is what the STH calls), then append api/<v>/<org>/<space>/.
    const base = normalizeUrl(opts.api.replace(/\/$/, ""), {
        defaultProtocol: opts.caPath ? "https:" : "http:",
    });
    const url = new URL(`${base}/api/${opts.apiVersion}/${opts.org}/${opts.space}/`);
    const tls = url.protocol === "https:" || !!opts.caPath;
    return {
        tls,
        hostname: url.hostname.replace(/^\[|\]$/g, ""),
        port: url.port ? Number(url.port) : (tls ? 443 : 80),
        // Origin-form pathname, used verbatim as the CONNECT request-target.
        path: url.pathname,
    };
}

/* ------------------------------------------------------------------------------------------ */
/* System measurements for LOAD / load-check / NETWORK_INFO                                   */

function diskEntry(path) {
    try {
        const st = fs.statfsSync(path);
        const size = st.blocks * st.bsize;
        const free = st.bavail * st.bsize;
        const used = size - st.bfree * st.bsize;
        return { fs: path, available: free - SAFE_OPERATION_RESERVE, size, used, use: size ? used / size : 0 };
    } catch (e) {
        return { fs: path, available: 0, size: 0, used: 0, use: 0 };
    }
}

// `currentLoad` given (--current-load, the "load" command): reported instead of the 1-minute
// load average, so tests can make one Hub busier than another.
function loadCheck(currentLoad) {
    const [one, , fifteen] = os.loadavg();
    const memFree = os.freemem();
    return {
        avgLoad: fifteen,
        currentLoad: currentLoad !== undefined ? currentLoad : one,
        memFree,
        memUsed: os.totalmem() - memFree,
        fsSize: [diskEntry("/")],
    };
}

function loadMessage(currentLoad) {
    return { msgCode: CODE.LOAD, ...loadCheck(currentLoad) };
}

// One entry per interface: first IPv4 and first IPv6 address, subnets in CIDR (spec §5.4.2).
function networkInfo() {
    const result = [];
    for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
        if (!addrs || !addrs.length) continue;
        const v4 = addrs.find((a) => a.family === "IPv4" || a.family === 4);
        const v6 = addrs.find((a) => a.family === "IPv6" || a.family === 6);
        result.push({
            iface: name,
            ifaceName: name,
            mac: addrs[0].mac,
            dhcp: false,
            ip4: v4 ? v4.address : "",
            ip4subnet: v4 ? v4.cidr : "",
            ip6: v6 ? v6.address : "",
            ip6subnet: v6 ? v6.cidr : "",
        });
    }
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* Streams helpers                                                                            */

// Write `total` pattern bytes honouring back-pressure; calls done(err) when all were queued.
function writePattern(stream, total, done) {
    let pos = 0;
    let finished = false;
    const finish = (err) => { if (!finished) { finished = true; stream.off("close", onClose); done(err); } };
    const onClose = () => { if (pos < total) finish(new Error("stream closed early")); };
    stream.on("close", onClose);
    const pump = () => {
        while (pos < total) {
            if (stream.destroyed) return finish(new Error("stream destroyed"));
            const len = Math.min(MAX_CHUNK, total - pos);
            const off = pos % PATTERN_MOD;
            pos += len;
            if (!stream.write(PATTERN.subarray(off, off + len))) return void stream.once("drain", pump);
        }
        finish();
    };
    pump();
}

/* ------------------------------------------------------------------------------------------ */
/* One hub peer                                                                               */

class HubPeer {
    constructor(index, opts, id) {
        this.index = index;
        this.opts = opts;
        this.id = id;
        this.currentLoad = opts.currentLoad;  // undefined: the machine's own load average
        this.proof = null;          // computed once, reused on every reconnect (spec §2.1)
        this.target = tunnelTarget(opts);
        this.connected = false;
        this.abandoned = false;
        this.gaveUp = false;
        this.isReconnecting = false;
        this.attempts = 0;          // consecutive reconnect attempts without any HTTP response
        this.mux = null;            // BPMux of the newest tunnel (used for hub-initiated requests)
        this.control = null;        // the single control slot (spec §5.1)
        this.api = new HubApi(this);  // sequences, instances, topics, logs (in memory)
        this.server = this.createApiServer();
        this.firstOutcome = null;   // resolved when the first CONNECT attempt got an outcome
        this.firstOutcomePromise = new Promise((r) => { this.firstOutcome = r; });
    }

    event(name, extra) {
        emit({ event: name, peer: this.index, ...extra });
    }

    settleFirst(ok) {
        if (this.firstOutcome) { this.firstOutcome(ok); this.firstOutcome = null; }
    }

    /* ---- tunnel ---------------------------------------------------------------------- */

    start(sharedProof) {
        if (this.opts.key !== undefined) this.proof = sharedProof || generateSTHKey(this.opts.key);
        this.connect();
    }

    // Header order matters for byte-exact interop (spec §1.3).
    connectHeaders() {
        const h = {
            "x-sth-description": this.opts.description,
            "x-sth-tags": JSON.stringify(this.opts.tags),
            "x-manager-id": this.opts.space,
            "x-sth-id": this.id || "",
        };
        if (this.opts.org) h["x-org-id"] = this.opts.org;
        if (this.proof !== null) h.Authorization = `Digest cnonce="${this.proof}"`;
        return h;
    }

    requestOptions() {
        const t = this.target;
        const o = {
            method: "CONNECT",
            host: t.hostname,
            port: t.port,
            path: t.path,
            headers: this.connectHeaders(),
            // A fresh non-keep-alive agent: this is what puts "Connection: close" on the CONNECT.
            agent: false,
        };
        if (t.tls) {
            o.servername = t.hostname;
            if (this.opts.caPath) o.ca = [fs.readFileSync(this.opts.caPath)];
        }
        return o;
    }

    connect() {
        this.isReconnecting = false;
        if (this.abandoned) return;
        this.event("connecting", { id: this.id || "" });
        let req;
        try {
            req = (this.target.tls ? https : http).request(this.requestOptions());
        } catch (e) {
            // e.g. a header value Node refuses to send: the STH just keeps retrying.
            this.onConnectFailed(e);
            return;
        }
        req.on("connect", (res, socket, head) => this.onTunnel(res, socket, head));
        req.on("error", (e) => this.onConnectFailed(e));
        req.end();
    }

    onConnectFailed(err) {
        this.event("error", { message: `connect failed: ${err.message}` });
        this.settleFirst(false);
        this.reconnect();
    }

    // Any parseable response counts as "tunnel established", whatever the status (spec §1.5).
    onTunnel(res, socket, head) {
        const status = res.statusCode;
        // Bytes that came with the response head are discarded, exactly like the STH (P3).
        if (head && head.length) diag(`peer ${this.index}: discarding ${head.length} head bytes`);
        const mux = new BPMux(socket);
        this.mux = mux;
        mux.on("peer_multiplex", (duplex) => this.server.emit("connection", duplex));
        let muxFailed = false;
        mux.on("error", (e) => {
            this.event("error", { message: `bpmux: ${e.message}` });
            // Like the STH: reconnect once per tunnel on a mux error, WITHOUT closing the socket (P8).
            if (!muxFailed) { muxFailed = true; this.reconnect(); }
        });
        socket.on("error", (e) => diag(`peer ${this.index}: socket error ${e.message}`));
        socket.once("close", () => this.onTunnelClose(mux, status));
        this.connected = true;
        this.attempts = 0;
        this.event("connected", { status, id: this.id || "" });
        this.settleFirst(true);
    }

    onTunnelClose(mux, status) {
        // Closing ANY tunnel of this hub frees the control slot (spec §5.1).
        this.releaseControl();
        if (this.mux === mux) this.mux = null;
        this.connected = false;
        this.event("disconnected", { status });
        if (status === 403 && !this.abandoned) {
            this.abandoned = true;
            this.event("abandoned", { reason: "403" });
        }
        this.reconnect();
    }

    reconnect() {
        if (this.abandoned || this.gaveUp || this.isReconnecting) return;
        this.attempts++;
        const max = this.opts.maxReconnections;
        if (max !== -1 && this.attempts > max) {
            this.gaveUp = true;
            this.event("gave_up", { attempts: this.attempts - 1 });
            return;
        }
        this.isReconnecting = true;
        setTimeout(() => this.connect(), this.opts.reconnectionDelay);
    }

    /* ---- control channel (spec §5) --------------------------------------------------- */

    openControl(req, res) {
        if (this.control) {
            // The STH decides "conflict" but never writes it: the request just hangs.
            diag(`peer ${this.index}: second control request left unanswered`);
            return;
        }
        res.setHeader("Access-Control-Allow-Origin", "*");
        const control = { req, res, chain: Promise.resolve(), timer: null };
        this.control = control;
        this.event("control_opened");
        this.readControl(req);
        // No writeHead: the head goes out with the first message, as on the STH.
        this.sendControl(CODE.LOAD, loadMessage(this.currentLoad));
        this.sendControl(CODE.NETWORK_INFO, networkInfo());
        for (const [code, payload] of this.api.snapshot()) this.sendControl(code, payload);
        control.timer = setInterval(() => this.sendControl(CODE.LOAD, loadMessage(this.currentLoad)), this.opts.loadInterval);
    }

    readControl(req) {
        let buffered = "";
        req.setEncoding("utf8");
        req.on("data", (text) => {
            buffered += text;
            const lines = buffered.split(/\r?\n/);
            buffered = lines.pop();
            for (const line of lines) this.onControlLine(line);
        });
        req.on("error", (e) => diag(`peer ${this.index}: control request error ${e.message}`));
    }

    onControlLine(line) {
        if (!line.trim()) return;
        let msg;
        try { msg = JSON.parse(line); } catch (e) {
            diag(`peer ${this.index}: unparsable control line ${JSON.stringify(line)}`);
            return;
        }
        if (!Array.isArray(msg)) return;
        const [code, payload] = msg;
        this.event("message", { code, payload });
        if (code === CODE.STH_ID && payload && typeof payload.id === "string") {
            this.id = payload.id;
            this.event("sth_id", { id: this.id });
        } else if (ABANDON_CODES.has(code) && !this.abandoned) {
            this.abandoned = true;
            this.event("abandoned", { reason: String(code) });
        }
    }

    // Messages are written one after another, each awaiting the previous write (back-pressure).
    sendControl(code, payload) {
        const control = this.control;
        if (!control) return Promise.resolve();  // no queueing while no control channel (P15)
        const line = JSON.stringify([code, payload]) + "\n";
        control.chain = control.chain.then(() => writeAwaited(control.res, line));
        return control.chain;
    }

    releaseControl() {
        const control = this.control;
        if (!control) return;
        this.control = null;
        clearInterval(control.timer);
        if (!control.res.destroyed) control.res.end();
    }

    /* ---- API server (spec §4.1) ------------------------------------------------------ */

    createApiServer() {
        const server = http.createServer({ requestTimeout: 0 });
        // STH settings: no timeouts, half-open channels allowed.
        server.timeout = 0;
        server.requestTimeout = 0;
        server.httpAllowHalfOpen = true;
        server.on("request", (req, res) => this.route(req, res));
        // Routed ourselves so a topic upload gets "100 Continue" only when the topic consumes it.
        server.on("checkContinue", (req, res) => this.route(req, res));
        server.on("clientError", (err, socket) => {
            diag(`peer ${this.index}: client error ${err.message}`);
            if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
            else socket.destroy();
        });
        return server;
    }

    location() {
        return this.id || "STH";
    }

    // Peer-level routes (control channel, version, load-check, echo test helpers) are served
    // here; everything else goes to the emulated Hub API (hub-api.js).
    route(req, res) {
        res.setHeader("Access-Control-Allow-Origin", "*");
        // Collapse duplicate "/" (clients normalise URLs, proxies may not) before parsing.
        const url = new URL(req.url.replace(/^\/{2,}/, "/"), "http://hub");
        const p = url.pathname.replace(/\/{2,}/g, "/").replace(/\/+$/, "");
        const m = req.method;
        let match;
        try {
            this.api.noteRequest(req, res, p);
            if (!(m === "POST" && p.startsWith("/api/v1/topic/"))) continueOnce(req, res);
            if (m === "POST" && p === "/api/v1/platform") return this.openControl(req, res);
            if (m === "GET" && p === "/api/v1/version") return replyAfterBody(req, res, 200, versionInfo());
            if (m === "GET" && p === "/api/v1/load-check") return replyAfterBody(req, res, 200, loadCheck(this.currentLoad));
            if (m === "GET" && (match = p.match(/^\/api\/v1\/echo\/bytes\/(\d+)$/))) return this.echoBytes(req, res, Number(match[1]));
            if (m === "POST" && p === "/api/v1/echo/count") return this.echoCount(req, res);
            if (m === "GET" && p === "/api/v1/echo/stream") return this.echoStream(req, res, url.searchParams);
            if (p === "/api/v1/echo/headers") return this.echoHeaders(req, res, url);
            return this.api.handle(req, res, p, url);
        } catch (e) {
            diag(`peer ${this.index}: handler error ${e.stack}`);
            if (!res.headersSent) sendJson(res, 500, { error: e.message });
        }
    }

    echoBytes(req, res, n) {
        req.resume();
        res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": n });
        writePattern(res, n, (err) => {
            if (err) diag(`peer ${this.index}: echo/bytes aborted: ${err.message}`);
            else res.end();
        });
    }

    // What reached the Hub: the proxy tests check which headers were (not) forwarded. The
    // response also carries a header listed in Connection, which the proxy must drop.
    echoHeaders(req, res, url) {
        this.requestsSeen = (this.requestsSeen || 0) + 1;
        drain(req, false).then(({ bytes }) => {
            res.setHeader("Connection", "keep-alive, x-hop");
            res.setHeader("x-hop", "must not reach the client");
            res.setHeader("Keep-Alive", "timeout=5");
            sendJson(res, 200, { method: req.method, url: url.pathname + url.search, headers: req.headers,
                rawHeaders: req.rawHeaders, bytes, seen: this.requestsSeen });
        }, () => {});
    }

    echoCount(req, res) {
        drain(req, false).then(({ bytes, sha256 }) => sendJson(res, 200, { bytes, sha256 }),
            (e) => diag(`peer ${this.index}: echo/count failed ${e.message}`));
    }

    echoStream(req, res, params) {
        req.resume();
        const interval = Number(params.get("interval") || 100);
        const count = Number(params.get("count") || 10);
        res.writeHead(200, { "Content-Type": "text/plain" });
        let i = 0;
        const timer = setInterval(() => {
            if (i >= count) { clearInterval(timer); res.end(); return; }
            res.write(`tick ${i++}\n`);
        }, interval);
        res.on("close", () => clearInterval(timer));
    }

    /* ---- hub-initiated requests (spec §4.2) ------------------------------------------ */

    // Like the STH's agent: one new channel per request, Connection: close, END after the response.
    hubRequest({ method, path, headers, writeBody }) {
        return new Promise((resolve, reject) => {
            if (!this.mux) return reject(new Error("not connected"));
            const channel = this.mux.multiplex();
            const hdrs = { Connection: "close", ...(headers || {}) };
            const req = http.request({
                method: method || "GET",
                path,
                // Host value is meaningless to the manager (P11); this is what the STH's R2/R3 show.
                host: "scramjet-space",
                headers: hdrs,
                createConnection: () => channel,
            });
            req.on("response", resolve);
            req.on("error", reject);
            writeBody(req);
        });
    }
}

function versionInfo() {
    return { service: "@scramjet/host", apiVersion: "v1", version: "1.0.1", build: "interop-peer" };
}

// Resolve when the data is handed to the stream, or once it drained when it was buffered.
function writeAwaited(stream, data) {
    return new Promise((resolve) => {
        if (stream.destroyed || stream.writableEnded) return resolve();
        if (stream.write(data)) return resolve();
        const done = () => { stream.off("drain", done); stream.off("close", done); resolve(); };
        stream.once("drain", done);
        stream.once("close", done);
    });
}

/* ------------------------------------------------------------------------------------------ */
/* stdin commands                                                                             */

function peerFor(peers, cmd) {
    const i = cmd.peer === undefined ? 0 : cmd.peer;
    const peer = peers[i];
    if (!peer) throw new Error(`no peer ${i}`);
    return peer;
}

function bodyWriter(cmd) {
    if (cmd.bodyBase64 !== undefined) return (req) => req.end(Buffer.from(cmd.bodyBase64, "base64"));
    if (cmd.body !== undefined && cmd.body !== null) return (req) => req.end(String(cmd.body));
    return (req) => req.end();
}

async function runRequest(peers, cmd, opts, writeBody, method, extraHeaders) {
    const peer = peerFor(peers, cmd);
    const binary = cmd.binary !== undefined ? !!cmd.binary : opts.binary;
    const out = { event: "response", req: cmd.req, peer: peer.index };
    try {
        const res = await peer.hubRequest({
            method, path: cmd.path, headers: { ...extraHeaders, ...(cmd.headers || {}) }, writeBody,
        });
        const got = await drain(res, !cmd.discard);
        Object.assign(out, { status: res.statusCode, headers: res.headers, bytes: got.bytes, sha256: got.sha256 });
        if (!cmd.discard) out.body = got.body.toString(binary ? "base64" : "utf8");
    } catch (e) {
        Object.assign(out, { status: 0, headers: {}, body: "", error: e.message });
    }
    emit(out);
}

function uploadCommand(peers, cmd, opts) {
    const n = Number(cmd.bytes || 0);
    const headers = cmd.chunked ? {} : { "Content-Length": String(n) };
    const writeBody = (req) => writePattern(req, n, (err) => { if (!err) req.end(); });
    return runRequest(peers, cmd, opts, writeBody, cmd.method || "POST", headers);
}

// Report `currentLoad` from now on, starting with a LOAD message at once.
function loadCommand(peers, cmd) {
    const peer = peerFor(peers, cmd);
    const value = Number(cmd.currentLoad);
    if (!Number.isFinite(value) || value < 0) throw new Error(`bad currentLoad ${JSON.stringify(cmd.currentLoad)}`);
    peer.currentLoad = value;
    peer.sendControl(CODE.LOAD, loadMessage(value)).then(
        () => emit({ event: "load_sent", peer: peer.index, currentLoad: value, control: !!peer.control }),
        (e) => emit({ event: "error", peer: peer.index, message: `LOAD not sent: ${e.message}` }),
    );
}

function statusCommand(peers) {
    emit({
        event: "status",
        peers: peers.map((p) => ({
            peer: p.index, id: p.id || "", connected: p.connected, abandoned: p.abandoned,
            gaveUp: p.gaveUp, controlOpen: !!p.control,
        })),
    });
}

function handleCommand(peers, opts, line) {
    if (!line.trim()) return;
    let cmd;
    try { cmd = JSON.parse(line); } catch (e) {
        emit({ event: "error", message: `bad command: ${e.message}` });
        return;
    }
    try {
        switch (cmd.cmd) {
            case "request":
                return void runRequest(peers, cmd, opts, bodyWriter(cmd), cmd.method || "GET", {});
            case "upload":
                return void uploadCommand(peers, cmd, opts);
            case "load":
                return loadCommand(peers, cmd);
            case "status":
                return statusCommand(peers);
            case "exit":
                return process.exit(0);
            default:
                emit({ event: "error", message: `unknown command ${JSON.stringify(cmd.cmd)}` });
        }
    } catch (e) {
        emit({ event: "error", req: cmd.req, message: e.message });
    }
}

/* ------------------------------------------------------------------------------------------ */
/* main                                                                                       */

function peerId(opts, i) {
    if (opts.id === undefined) return "";
    return opts.count > 1 ? `${opts.id}-${i}` : opts.id;
}

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    quiet = opts.quiet;
    process.on("SIGTERM", () => process.exit(0));
    process.on("SIGINT", () => process.exit(0));

    const peers = [];
    for (let i = 0; i < opts.count; i++) peers.push(new HubPeer(i, opts, peerId(opts, i)));

    if (opts.listen !== undefined) {
        // Benchmarks compare the tunnel against this direct path to the very same server.
        peers[0].server.listen(opts.listen, "127.0.0.1", () => emit({ event: "listening", port: opts.listen }));
    }

    const rl = readline.createInterface({ input: process.stdin });
    rl.on("line", (line) => handleCommand(peers, opts, line));
    rl.on("close", () => process.exit(0));

    const sharedProof = opts.sameProof && opts.key !== undefined ? generateSTHKey(opts.key) : null;
    // Proofs made beforehand (a JSON array of strings), dealt round-robin: distinct proofs like
    // real Hubs send, without each peer spending its own scrypt run at start.
    const proofPool = opts.proofsFile !== undefined ? JSON.parse(fs.readFileSync(opts.proofsFile, "utf8")) : null;
    if (proofPool && (!Array.isArray(proofPool) || !proofPool.length)) usageError("--proofs must hold a non-empty JSON array");
    // Start peers one at a time, yielding between them: each proof is ~50 ms of scrypt, and the
    // peers already connected must keep serving their tunnels meanwhile.
    for (const peer of peers) {
        peer.start(proofPool ? proofPool[peer.index % proofPool.length] : sharedProof);
        await new Promise((r) => setImmediate(r));
    }
    const outcomes = await Promise.all(peers.map((p) => p.firstOutcomePromise));
    const connected = outcomes.filter(Boolean).length;
    emit({ event: "ready", peers: peers.length, connected, failed: peers.length - connected });
}

main().catch((e) => {
    diag(e.stack);
    process.exit(1);
});
