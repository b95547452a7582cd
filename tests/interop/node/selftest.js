#!/usr/bin/env node
"use strict";
/*
 * Stand-alone test of hub-peer.js against a tiny fake Space manager written here in Node
 * (net.Server + bpmux), following shared/spec/hub-protocol.md. Needs no Python manager.
 * Prints one line per check and a final "N passed, N failed" line; exit code 0 iff all passed.
 */

const net = require("net");
const http = require("http");
const fs = require("fs");
const path = require("path");
const crypto = require("crypto");
const { spawn } = require("child_process");
const { BPMux } = require("bpmux");

const PEER = path.join(__dirname, "hub-peer.js");
const KEY = "SCP-ak-0123456789abcdef0123456789abcdef";
// Same 16-character prefix as KEY, so the lookup finds KEY and only scrypt can tell them apart.
const WRONG_KEY = "SCP-ak-0123456789abcdef-not-the-real-key";
const CAPTURE = path.resolve(__dirname, "../../../../shared/captures/sth-1.0.1-session.jsonl");
const MiB = 1024 * 1024;

/* ------------------------------------------------------------------------------------------ */
/* Tiny test bookkeeping                                                                      */

let passed = 0;
let failed = 0;
let skipped = 0;

function check(name, ok, detail) {
    if (ok) { passed++; console.log(`ok   ${name}`); }
    else { failed++; console.log(`FAIL ${name}${detail !== undefined ? `: ${detail}` : ""}`); }
}

function skip(name, why) {
    skipped++;
    console.log(`skip ${name}: ${why}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Poll until fn() returns a truthy value; that value is returned, or an Error on time-out.
async function until(fn, ms = 5000, what = "condition") {
    const end = Date.now() + ms;
    for (;;) {
        const v = fn();
        if (v) return v;
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await sleep(10);
    }
}

function patternBuffer(n) {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = i % 251;
    return b;
}

/* ------------------------------------------------------------------------------------------ */
/* Independent key-proof verification (spec §2.2), not using @scramjet/utility                */

function verifyProof(value, keys) {
    if (typeof value !== "string" || value.length <= 144) return null;
    const session = value.slice(0, -128);
    const hash = Buffer.from(value.slice(-128));
    const prefix = value.slice(16, -128);
    for (const key of keys) {
        if (key.slice(0, prefix.length) !== prefix) continue;
        const expect = Buffer.from(crypto.scryptSync(session, key, 96, { N: 16384, r: 8, p: 1 }).toString("base64"));
        if (expect.length === hash.length && crypto.timingSafeEqual(expect, hash)) return key;
    }
    return null;
}

function cnonceOf(authorization) {
    const m = /^Digest cnonce="([^"]*)"$/.exec(authorization || "");
    return m ? m[1] : null;
}

/* ------------------------------------------------------------------------------------------ */
/* The hub peer child process                                                                 */

class PeerProcess {
    constructor(args) {
        this.events = [];
        this.exit = null;
        this.stderr = "";
        this.child = spawn(process.execPath, [PEER, ...args], { stdio: ["pipe", "pipe", "pipe"] });
        let buf = "";
        this.child.stdout.setEncoding("utf8");
        this.child.stdout.on("data", (d) => {
            buf += d;
            const lines = buf.split("\n");
            buf = lines.pop();
            for (const l of lines) if (l.trim()) this.events.push(JSON.parse(l));
        });
        this.child.stderr.on("data", (d) => { this.stderr += d; });
        this.child.on("exit", (code, signal) => { this.exit = { code, signal }; });
    }

    find(pred) { return this.events.find(pred); }
    all(pred) { return this.events.filter(pred); }
    wait(pred, ms, what) { return until(() => this.find(pred), ms, what); }
    send(cmd) { this.child.stdin.write(JSON.stringify(cmd) + "\n"); }
    waitExit(ms = 3000) { return until(() => this.exit, ms, "peer exit"); }
    kill() { if (!this.exit) this.child.kill("SIGKILL"); }
}

/* ------------------------------------------------------------------------------------------ */
/* Fake manager                                                                               */

// Manager-side HTTP server for channels the hub opens (spec §4.2).
function createManagerApi(tunnel) {
    const server = http.createServer((req, res) => {
        tunnel.hubRequests.push({ method: req.method, url: req.url, headers: req.headers, channel: req.socket._chan });
        const hash = crypto.createHash("sha256");
        let bytes = 0;
        req.on("data", (c) => { bytes += c.length; hash.update(c); });
        req.on("end", () => {
            const body = req.url.endsWith("/version")
                ? { service: "fake-manager", version: "0.0.0" }
                : { bytes, sha256: hash.digest("hex") };
            res.writeHead(200, { "Content-Type": "application/json" });
            res.end(JSON.stringify(body));
        });
    });
    server.httpAllowHalfOpen = true;
    return server;
}

class Tunnel {
    constructor(socket, connect) {
        this.socket = socket;
        this.connect = connect;
        this.hubRequests = [];
        this.closed = false;
        socket.on("close", () => { this.closed = true; });
        socket.on("error", () => {});
    }

    start() {
        // high_channels: our channel numbers never collide with the hub's 0, 1, 2... (P6)
        this.mux = new BPMux(this.socket, { high_channels: true });
        this.mux.on("error", (e) => { this.muxError = e; });
        this.api = createManagerApi(this);
        this.mux.on("peer_multiplex", (d) => this.api.emit("connection", d));
    }

    // Full-duplex never-ending POST /api/v1/platform (spec §5.1, P9).
    openControl() {
        const channel = this.mux.multiplex();
        const req = http.request({
            method: "POST", path: "/api/v1/platform", createConnection: () => channel,
            headers: { Host: "hub", "Content-Type": "application/x-ndjson", "Transfer-Encoding": "chunked" },
        });
        const control = { req, channel, res: null, messages: [], raw: "" };
        req.on("error", () => {});
        req.on("response", (res) => {
            control.res = res;
            res.setEncoding("utf8");
            let buf = "";
            res.on("data", (d) => {
                control.raw += d;
                buf += d;
                const lines = buf.split(/\r?\n/);
                buf = lines.pop();
                for (const l of lines) if (l) control.messages.push(JSON.parse(l));
            });
            res.on("error", () => {});
        });
        req.flushHeaders();
        control.send = (code, payload) => req.write(JSON.stringify([code, payload]) + "\n");
        return control;
    }

    // One request on a new channel, Connection: close; resolves with status, headers, body.
    request(method, reqPath, body, extraHeaders) {
        return new Promise((resolve, reject) => {
            const channel = this.mux.multiplex();
            const req = http.request({
                method, path: reqPath, createConnection: () => channel,
                headers: { Host: "hub", Connection: "close", ...(extraHeaders || {}) },
            });
            req.on("error", reject);
            req.on("response", (res) => {
                const chunks = [];
                const times = [];
                res.on("data", (c) => { chunks.push(c); times.push(Date.now()); });
                res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks), times, channel: channel._chan }));
                res.on("error", reject);
            });
            if (body) req.end(body); else req.end();
        });
    }

    // A request whose response is read as it streams: resolves at the response head with
    // {status, headers, rawHeaders, chunks, times, text(), done, ended (promise), close()}.
    // body undefined → no body; a string/Buffer → sent and ended.
    stream(method, reqPath, headers, body) {
        return new Promise((resolve, reject) => {
            const channel = this.mux.multiplex();
            const req = http.request({
                method, path: reqPath, createConnection: () => channel,
                headers: { Host: "hub", Connection: "close", ...(headers || {}) },
            });
            req.on("error", reject);
            req.on("response", (res) => {
                const s = { status: res.statusCode, headers: res.headers, rawHeaders: res.rawHeaders, chunks: [], times: [], done: false };
                s.text = () => Buffer.concat(s.chunks).toString();
                s.ended = new Promise((r) => { res.on("end", () => { s.done = true; r(); }); res.on("close", r); });
                s.close = () => { req.destroy(); channel.destroy(); };
                res.on("data", (c) => { s.chunks.push(c); s.times.push(Date.now()); });
                res.on("error", () => {});
                req.off("error", reject);
                req.on("error", () => {});
                resolve(s);
            });
            if (body === undefined) req.end(); else req.end(body);
        });
    }

    close() { this.socket.destroy(); }
}

class FakeManager {
    // keys: access keys accepted (an empty list accepts any CONNECT without running scrypt,
    // for load checks). policy(connect, index) → "accept" | "forbid" | a status code number
    // (answer it, then close).
    constructor(keys, policy) {
        this.keys = keys;
        this.policy = policy || (() => "accept");
        this.connects = [];
        this.tunnels = [];
        this.server = net.createServer((s) => this.onSocket(s));
    }

    listen() {
        return new Promise((r) => this.server.listen(0, "127.0.0.1", () => r(this.server.address().port)));
    }

    onSocket(socket) {
        let buf = Buffer.alloc(0);
        const onData = (d) => {
            buf = Buffer.concat([buf, d]);
            const end = buf.indexOf("\r\n\r\n");
            if (end < 0) return;
            socket.off("data", onData);
            socket.pause();
            this.onConnect(socket, buf.subarray(0, end + 4).toString("latin1"), buf.subarray(end + 4));
        };
        socket.on("data", onData);
        socket.on("error", () => {});
    }

    onConnect(socket, head, rest) {
        const [requestLine, ...lines] = head.slice(0, -4).split("\r\n");
        const headers = lines.map((l) => { const i = l.indexOf(":"); return [l.slice(0, i), l.slice(i + 1).trim()]; });
        const get = (name) => (headers.find(([n]) => n.toLowerCase() === name) || [])[1];
        const connect = { head, requestLine, headers, get, rest, time: Date.now() };
        connect.key = this.keys.length ? verifyProof(cnonceOf(get("authorization")), this.keys) : null;
        this.connects.push(connect);
        let decision = this.policy(connect, this.connects.length - 1);
        if (decision === "accept" && !connect.key && this.keys.length) decision = "forbid";
        if (decision === "forbid") return void socket.end("HTTP/1.1 403 Forbidden\r\n\r\n");
        if (typeof decision === "number") return void socket.end(`HTTP/1.1 ${decision} Nope\r\n\r\n`);
        const tunnel = new Tunnel(socket, connect);
        this.tunnels.push(tunnel);
        socket.setNoDelay(true);
        socket.write("HTTP/1.1 200 OK\r\n\r\n");
        // Let the hub read the head alone before the first frame (spec §1.8, P3).
        setTimeout(() => { socket.resume(); tunnel.start(); tunnel.ready = true; }, 250);
    }

    close() {
        for (const t of this.tunnels) t.close();
        this.server.close();
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Tests                                                                                      */

function testProofVectors() {
    const c = require("crypto");
    const { generateSTHKey } = require("@scramjet/utility");
    check("generateSTHKey is exported by @scramjet/utility", typeof generateSTHKey === "function");
    const withRandom = (hex, fn) => {
        const orig = c.randomBytes;
        c.randomBytes = () => Buffer.from(hex, "hex");
        try { return fn(); } finally { c.randomBytes = orig; }
    };
    const v1 = withRandom("000102030405060708090a0b", () => generateSTHKey(KEY));
    check("proof: spec §2.3 vector 1 reproduced by generateSTHKey",
        v1 === "AAECAwQFBgcICQoLSCP-ak-012345678LiKUsBv4jWizVpF5ECamLFNvHByp3aN6yL4NNTTbCACt6OeXq6oSLnmpPCbFvUEZOVOq32lOF8YRKYrDmJtXqmSuYMn6uF4d6Hug1FAoapnU5z17WY56H879RnVFNmKt", v1);
    const v2 = withRandom("ffeeddccbbaa998877665544", () => generateSTHKey("shortkey"));
    check("proof: spec §2.3 vector 2 reproduced by generateSTHKey",
        v2 === "/+7dzLuqmYh3ZlVEshortkeyGh2LYNwCkYhbuhWRd5kuEbd6JTivXFSHNj2R/Y0eTaQocVGY3c801CndvYrWxmo59OeiUY+Hrl3Lgzu9EeOu5+m4AHt5bait2iVx8urfvqWhWeaO58XJc+b9ZiO/tCfr", v2);
    const live = generateSTHKey(KEY);
    check("proof: structure = 16 random + first 16 key chars + 128 base64 chars",
        live.length === 160 && /^[A-Za-z0-9+/]{16}SCP-ak-012345678[A-Za-z0-9+/]{128}$/.test(live), live);
    check("proof: random proof verifies with independent scrypt (spec §2.2)", verifyProof(live, [KEY]) === KEY);
    check("proof: wrong key with the same prefix is rejected", verifyProof(live, [WRONG_KEY]) === null);
    check("proof: two proofs differ (fresh random bytes)", generateSTHKey(KEY) !== live);
}

function testCaptureProof() {
    if (!fs.existsSync(CAPTURE)) return skip("proof: captured STH 1.0.1 proof", `${CAPTURE} not found`);
    let head = "";
    for (const line of fs.readFileSync(CAPTURE, "utf8").split("\n")) {
        if (!line.trim()) continue;
        const rec = JSON.parse(line);
        if (rec.dir !== "hub->manager") continue;
        head += Buffer.from(rec.hex, "hex").toString("latin1");
        if (head.includes("\r\n\r\n")) break;
    }
    const m = /\r\nAuthorization: (.*)\r\n/.exec(head);
    check("proof: captured STH 1.0.1 proof verifies with independent scrypt",
        !!m && verifyProof(cnonceOf(m[1]), [KEY]) === KEY);
}

function baseArgs(port, extra) {
    return ["--platform-api", `http://127.0.0.1:${port}/`, "--platform-space", "org-1:space-1", ...extra];
}

// CONNECT bytes exactly as spec §1.3 (proof and port vary).
function checkConnectHead(connect, port, stdId) {
    const proof = cnonceOf(connect.get("authorization"));
    const expected = "CONNECT /api/v1/org-1/space-1/ HTTP/1.1\r\n" +
        "x-sth-description: My hub\r\n" +
        "x-sth-tags: [\"a\",\"b\"]\r\n" +
        "x-manager-id: space-1\r\n" +
        `x-sth-id: ${stdId}\r\n` +
        "x-org-id: org-1\r\n" +
        `Authorization: Digest cnonce="${proof}"\r\n` +
        `Host: 127.0.0.1:${port}\r\n` +
        "Connection: close\r\n\r\n";
    check(`CONNECT head bytes are exactly as spec §1.3 (x-sth-id "${stdId}")`, connect.head === expected, JSON.stringify(connect.head));
    check("CONNECT proof verifies on the manager side", connect.key === KEY);
    check("nothing follows the CONNECT head before our 200", connect.rest.length === 0);
}

async function checkControlSnapshot(control, tag) {
    await until(() => control.messages.length >= 4, 5000, "control snapshot");
    const codes = control.messages.slice(0, 4).map((m) => m[0]);
    check(`${tag}: snapshot order LOAD, NETWORK_INFO, SEQUENCES, INSTANCES`, JSON.stringify(codes) === "[7001,7002,7004,7003]", JSON.stringify(codes));
    const load = control.messages[0][1];
    check(`${tag}: LOAD payload shape`, load.msgCode === 7001 && typeof load.avgLoad === "number" &&
        typeof load.currentLoad === "number" && load.memFree > 0 && load.memUsed > 0 &&
        Array.isArray(load.fsSize) && load.fsSize.length === 1 && load.fsSize[0].fs === "/", JSON.stringify(load));
    const net0 = control.messages[1][1];
    check(`${tag}: NETWORK_INFO lists lo with CIDR subnet`, Array.isArray(net0) &&
        net0.some((i) => i.iface === "lo" && i.ip4 === "127.0.0.1" && i.ip4subnet === "127.0.0.1/8" && i.dhcp === false), JSON.stringify(net0));
    const h = control.res.headers;
    check(`${tag}: control response head (200, chunked, ACAO *, no content-type)`, control.res.statusCode === 200 &&
        h["transfer-encoding"] === "chunked" && h["access-control-allow-origin"] === "*" && !("content-type" in h), JSON.stringify(h));
    check(`${tag}: control lines end with \\n`, control.raw.endsWith("\n") && !control.raw.includes("\r\n"));
    return control.messages.slice(0, 4);
}

async function checkHubApi(tunnel, control) {
    const ver = await tunnel.request("GET", "/api/v1/version");
    check("GET /api/v1/version", ver.status === 200 &&
        ver.body.toString() === JSON.stringify({ service: "@scramjet/host", apiVersion: "v1", version: "1.0.1", build: "interop-peer" }) &&
        ver.headers["content-type"] === "application/json" && ver.headers["access-control-allow-origin"] === "*", ver.body.toString());
    check("manager channels are in the high range", ver.channel >= 2 ** 31, ver.channel);
    const names = [];
    for (let i = 0; i < ver.rawHeaders.length; i += 2) names.push(ver.rawHeaders[i]);
    check("JSON response head like the capture (chunked, same header order)",
        names.join() === "Access-Control-Allow-Origin,content-type,Date,Connection,Transfer-Encoding", names.join());

    const lc = await tunnel.request("GET", "/api/v1/load-check");
    const lcBody = JSON.parse(lc.body);
    check("GET /api/v1/load-check", lc.status === 200 && typeof lcBody.avgLoad === "number" && lcBody.fsSize.length === 1);

    const big = await tunnel.request("GET", "/api/v1/echo/bytes/1048576");
    check("GET /api/v1/echo/bytes/1048576: 1 MiB of the i % 251 pattern", big.status === 200 &&
        big.body.length === MiB && big.body.equals(patternBuffer(MiB)), big.body.length);

    const up = patternBuffer(MiB);
    const count = await tunnel.request("POST", "/api/v1/echo/count", up);
    const countBody = JSON.parse(count.body);
    check("POST /api/v1/echo/count: 1 MiB counted and hashed", count.status === 200 && countBody.bytes === MiB &&
        countBody.sha256 === crypto.createHash("sha256").update(up).digest("hex"), count.body.toString());

    const t0 = Date.now();
    const stream = await tunnel.request("GET", "/api/v1/echo/stream?interval=100&count=5");
    check("GET /api/v1/echo/stream: 5 ticks", stream.body.toString() === "tick 0\ntick 1\ntick 2\ntick 3\ntick 4\n", stream.body.toString());
    check("GET /api/v1/echo/stream: ticks arrive as produced", stream.times.length >= 4 && stream.times[0] - t0 < 300 &&
        stream.times[stream.times.length - 1] - stream.times[0] >= 250, JSON.stringify(stream.times.map((t) => t - t0)));

    const nf = await tunnel.request("GET", "/api/v1/nope");
    check("unknown path → 404 {\"error\":\"Not Found\"}", nf.status === 404 && nf.body.toString() === "{\"error\":\"Not Found\"}");

    const pkg = crypto.randomBytes(1000);
    const seqRes = await tunnel.request("POST", "/api/v1/sequence", pkg, { "Content-Type": "application/octet-stream" });
    const seqId = JSON.parse(seqRes.body).id;
    check("POST /api/v1/sequence → 200 {id}", seqRes.status === 200 && /^[0-9a-f-]{36}$/.test(seqId), seqRes.body.toString());
    const seqMsg = await until(() => control.messages.find((m) => m[0] === 7006), 3000, "SEQUENCE message");
    check("SEQUENCE (7006) reported on the control channel", seqMsg[1].id === seqId && seqMsg[1].status === 0 &&
        seqMsg[1].config.packageSize === 1000 && seqMsg[1].config.id === seqId, JSON.stringify(seqMsg));
    const list = JSON.parse((await tunnel.request("GET", "/api/v1/sequences")).body);
    check("GET /api/v1/sequences lists it with location = assigned id", list.length === 1 && list[0].id === seqId && list[0].location === "hub-x", JSON.stringify(list));

    const start = await tunnel.request("POST", `/api/v1/sequence/${seqId}/start`, JSON.stringify({ appConfig: {}, args: [] }), { "Content-Type": "application/json" });
    const startBody = JSON.parse(start.body);
    check("POST /api/v1/sequence/:id/start → 200 (message names the instance id, like STH 1.0.1)",
        start.status === 200 && startBody.result === "success" && startBody.id !== seqId &&
        startBody.message === `Sequence ${startBody.id} starting`, start.body.toString());
    const instMsg = await until(() => control.messages.find((m) => m[0] === 7005), 3000, "INSTANCE message");
    check("INSTANCE (7005) reported on the control channel", instMsg[1].instance.id === startBody.id &&
        instMsg[1].instance.sequence.id === seqId && !("status" in instMsg[1].instance) &&
        Object.keys(instMsg[1].instance.sequence).join() === "id,config,instances,location", JSON.stringify(instMsg));
    const missing = await tunnel.request("POST", "/api/v1/sequence/nope/start", "{}");
    check("start of an unknown sequence → 404", missing.status === 404 &&
        missing.body.toString() === JSON.stringify({ error: "Sequence nope not found", result: "error" }), missing.body.toString());
    const inst = JSON.parse((await tunnel.request("GET", "/api/v1/instances")).body);
    check("GET /api/v1/instances lists the running instance", inst.length === 1 && inst[0].status === "running");
    return { seqId, instanceId: startBody.id };
}

async function checkHubInitiated(peer, tunnel) {
    peer.send({ cmd: "request", req: 1, peer: 0, method: "GET", path: "/api/v1/cpm/space-1/api/v1/version", headers: {} });
    const r1 = await peer.wait((e) => e.event === "response" && e.req === 1, 5000, "response 1");
    check("hub-initiated GET: response event", r1.status === 200 && JSON.parse(r1.body).service === "fake-manager", JSON.stringify(r1));
    const seen = tunnel.hubRequests[0];
    check("hub-initiated GET: low channel number, Connection: close", seen && seen.channel < 2 ** 31 &&
        seen.headers.connection === "close" && seen.url === "/api/v1/cpm/space-1/api/v1/version", JSON.stringify(seen));

    peer.send({ cmd: "upload", req: 2, peer: 0, path: "/api/v1/cpm/space-1/api/v1/count", bytes: MiB });
    const r2 = await peer.wait((e) => e.event === "response" && e.req === 2, 10000, "response 2");
    const body2 = JSON.parse(r2.body);
    check("hub-initiated upload of 1 MiB", r2.status === 200 && body2.bytes === MiB &&
        body2.sha256 === crypto.createHash("sha256").update(patternBuffer(MiB)).digest("hex"), r2.body);

    peer.send({ cmd: "request", req: 3, path: "/api/v1/cpm/space-1/api/v1/version", binary: true });
    const r3 = await peer.wait((e) => e.event === "response" && e.req === 3, 5000, "response 3");
    check("hub-initiated GET with binary: body is base64", JSON.parse(Buffer.from(r3.body, "base64")).service === "fake-manager");
}

async function statusOf(peer) {
    const before = peer.all((e) => e.event === "status").length;
    peer.send({ cmd: "status" });
    await until(() => peer.all((e) => e.event === "status").length > before, 3000, "status");
    return peer.all((e) => e.event === "status")[before].peers;
}

async function testFullSession() {
    const mgr = new FakeManager([KEY]);
    const port = await mgr.listen();
    const peer = new PeerProcess(baseArgs(port, ["--platform-api-key", KEY, "--description", "My hub", "--tags", "a,b",
        "--load-interval", "300", "--reconnection-delay", "200"]));
    try {
        const t1 = await until(() => mgr.tunnels[0] && mgr.tunnels[0].ready && mgr.tunnels[0], 5000, "tunnel");
        checkConnectHead(mgr.connects[0], port, "");
        const conn = await peer.wait((e) => e.event === "connected", 3000, "connected event");
        check("peer event: connected with status 200 and empty id", conn.status === 200 && conn.id === "" && conn.peer === 0);
        await peer.wait((e) => e.event === "ready", 3000, "ready");
        check("peer event: ready", peer.find((e) => e.event === "ready").peers === 1);

        const control = t1.openControl();
        await checkControlSnapshot(control, "control 1");
        check("peer event: control_opened", !!(await peer.wait((e) => e.event === "control_opened", 2000)));

        control.send(7000, { id: "hub-x" });
        const sid = await peer.wait((e) => e.event === "sth_id", 3000, "sth_id");
        const msg = peer.find((e) => e.event === "message" && e.code === 7000);
        check("STH_ID: peer prints message and sth_id events", sid.id === "hub-x" && msg && msg.payload.id === "hub-x");
        control.req.write("not json\r\n\r\n[8000,{}]\n");   // ignored lines must not break the stream
        await until(() => control.messages.filter((m) => m[0] === 7001).length >= 2, 2000, "periodic LOAD");
        check("LOAD repeats every --load-interval", true);

        const second = t1.openControl();
        await sleep(700);
        check("a second control request is never answered", second.res === null);

        await checkHubApi(t1, control);
        await checkHubInitiated(peer, t1);
        const st = await statusOf(peer);
        check("status command", st.length === 1 && st[0].id === "hub-x" && st[0].connected && !st[0].abandoned && st[0].controlOpen, JSON.stringify(st));

        // Drop the tunnel: the hub must reconnect with its new id and the same proof.
        t1.close();
        await peer.wait((e) => e.event === "disconnected", 3000, "disconnected");
        const t2 = await until(() => mgr.tunnels[1] && mgr.tunnels[1].ready && mgr.tunnels[1], 5000, "second tunnel");
        const gap = mgr.connects[1].time - mgr.connects[0].time;
        checkConnectHead(mgr.connects[1], port, "hub-x");
        check("reconnect reuses the same proof value", mgr.connects[1].get("authorization") === mgr.connects[0].get("authorization"));
        check("reconnect waited for --reconnection-delay", gap >= 200, gap);
        const control2 = t2.openControl();
        const snap = await checkControlSnapshot(control2, "control 2");
        check("control slot was freed by the tunnel close; snapshots carry state",
            snap[2][1].sequences.length === 1 && snap[2][1].sequences[0].status === 0 && snap[3][1].instances.length === 1, JSON.stringify(snap.slice(2)));

        control2.send(9001, {});
        const ab = await peer.wait((e) => e.event === "abandoned", 3000, "abandoned");
        check("KEY_REVOKED: peer prints abandoned reason 9001", ab.reason === "9001");
        t2.close();
        await until(() => peer.all((e) => e.event === "disconnected").length >= 2, 3000, "second disconnect");
        await sleep(1000);
        check("no reconnect after KEY_REVOKED", mgr.connects.length === 2, mgr.connects.length);
        const st2 = await statusOf(peer);
        check("status after revoke: abandoned, not connected, no control", st2[0].abandoned && !st2[0].connected && !st2[0].controlOpen, JSON.stringify(st2));
        check("no BPMux errors on the manager side", !t1.muxError && !t2.muxError, String(t1.muxError || t2.muxError));
        peer.send({ cmd: "exit" });
        const ex = await peer.waitExit();
        check("exit command → exit code 0", ex.code === 0, JSON.stringify(ex));
    } finally {
        peer.kill();
        mgr.close();
    }
}

async function testWrongKey() {
    const mgr = new FakeManager([KEY]);
    const port = await mgr.listen();
    const peer = new PeerProcess(baseArgs(port, ["--platform-api-key", WRONG_KEY, "--reconnection-delay", "100"]));
    try {
        const ab = await peer.wait((e) => e.event === "abandoned", 5000, "abandoned");
        check("wrong key: peer prints abandoned reason 403", ab.reason === "403");
        check("wrong key: connected event carried status 403", !!peer.find((e) => e.event === "connected" && e.status === 403));
        await sleep(800);
        check("wrong key: no reconnect after 403", mgr.connects.length === 1, mgr.connects.length);
        check("wrong key: manager saw the proof fail", mgr.connects[0].key === null);
        peer.child.kill("SIGTERM");
        const ex = await peer.waitExit();
        check("SIGTERM → exit code 0", ex.code === 0, JSON.stringify(ex));
    } finally {
        peer.kill();
        mgr.close();
    }
}

async function testTemporaryRefusal() {
    // Two 503s then accept, with --max-reconnections 1: only works because every HTTP response
    // resets the failure counter (spec §1.7).
    const mgr = new FakeManager([KEY], (c, i) => (i < 2 ? 503 : "accept"));
    const port = await mgr.listen();
    const peer = new PeerProcess(baseArgs(port, ["--platform-api-key", KEY, "--reconnection-delay", "50", "--max-reconnections", "1"]));
    try {
        await until(() => mgr.tunnels[0] && mgr.tunnels[0].ready, 5000, "accepted tunnel");
        check("non-403 refusals are retried; responses reset the counter", mgr.connects.length === 3 &&
            peer.all((e) => e.event === "connected").map((e) => e.status).join() === "503,503,200");
        check("no abandon / give-up on 503", !peer.find((e) => e.event === "abandoned" || e.event === "gave_up"));
    } finally {
        peer.kill();
        mgr.close();
    }
}

async function testGiveUp() {
    const probe = net.createServer();
    const port = await new Promise((r) => probe.listen(0, "127.0.0.1", () => r(probe.address().port)));
    await new Promise((r) => probe.close(r));
    const peer = new PeerProcess(baseArgs(port, ["--platform-api-key", KEY, "--reconnection-delay", "50", "--max-reconnections", "2"]));
    try {
        const ready = await peer.wait((e) => e.event === "ready", 3000, "ready");
        check("refused first attempt: ready reports it as failed", ready.failed === 1 && ready.connected === 0, JSON.stringify(ready));
        await peer.wait((e) => e.event === "gave_up", 3000, "gave_up");
        await sleep(300);
        check("gives up after --max-reconnections consecutive failures (1 + 2 attempts)",
            peer.all((e) => e.event === "connecting").length === 3, peer.all((e) => e.event === "connecting").length);
    } finally {
        peer.kill();
    }
}

async function testCount() {
    const mgr = new FakeManager([KEY]);
    const port = await mgr.listen();
    const peer = new PeerProcess(baseArgs(port, ["--platform-api-key", KEY, "--id", "multi", "--count", "3", "--quiet"]));
    try {
        const ready = await peer.wait((e) => e.event === "ready", 5000, "ready");
        check("--count 3: ready with 3 connected", ready.peers === 3 && ready.connected === 3, JSON.stringify(ready));
        const ids = mgr.connects.map((c) => c.get("x-sth-id")).sort().join();
        check("--count 3: ids multi-0..2", ids === "multi-0,multi-1,multi-2", ids);
        const proofs = new Set(mgr.connects.map((c) => c.get("authorization")));
        check("--count 3: each peer has its own valid proof", proofs.size === 3 && mgr.connects.every((c) => c.key === KEY));
        check("--quiet: no per-peer lines", !peer.find((e) => e.event === "connecting" || e.event === "connected"));
        const st = await statusOf(peer);
        check("--count 3: status lists 3 connected peers", st.length === 3 && st.every((p) => p.connected), JSON.stringify(st));
        peer.child.stdin.end();
        const ex = await peer.waitExit();
        check("stdin EOF → exit code 0", ex.code === 0, JSON.stringify(ex));
    } finally {
        peer.kill();
        mgr.close();
    }
}

// The emulated Hub REST API (hub-api.js): selftest-hub-api.js, run with this file's helpers.
function testHubRestApi() {
    return require("./selftest-hub-api").run({ check, until, sleep, FakeManager, PeerProcess, baseArgs, KEY });
}

async function main() {
    const scenarios = [testProofVectors, testCaptureProof, testFullSession, testHubRestApi, testWrongKey, testTemporaryRefusal,
        testGiveUp, testCount];
    for (const scenario of scenarios) {
        try {
            await scenario();
        } catch (e) {
            check(`${scenario.name} completed`, false, e.stack);
        }
    }
    console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
    process.exit(failed ? 1 : 0);
}

if (require.main === module) main();
module.exports = { FakeManager, PeerProcess, verifyProof, until, sleep };
