"use strict";
/*
 * The Hub REST API of one Hub peer, in memory: sequences, emulated instances, topics, hub log,
 * audit, config/status/entities, and the Hub → Space passthrough. Shapes, texts and status codes
 * follow shared/spec/space-api.md §3.3/§3.5/§5; control messages (SEQUENCE 7006, INSTANCE 7005,
 * TOPIC 7007) and topic behaviour follow shared/spec/hub-protocol.md §5.4 and §6.
 * hub-peer.js serves /api/v1/platform, version, load-check and the echo helpers itself and hands
 * every other request on a manager-opened channel to HubApi.handle().
 */

const os = require("os");
const crypto = require("crypto");
const { Writable } = require("stream");
const { EmulatedInstance } = require("./hub-instance");
const {
    TOPIC_TYPES, NDJSON_TYPES, DEFAULT_TOPIC_TYPE, TOPIC_NAME,
    sendJson, sendEmpty, continueOnce, replyAfterBody, startStream, readBody,
    parseControlBody, endStreamHeader, mediaType, Broadcast, LogFeed, sequenceConfig,
} = require("./hub-model");

const CODE = { INSTANCE: 7005, SEQUENCE: 7006, TOPIC: 7007 };
const LOG_REPLAY_LINES = 100;
const STOP_CAP_MS = 1000;           // _stop ends the instance after min(timeout, this)
const DEFAULT_STOP_TIMEOUT = 7000;

// Audit opCode = 10000 + 1000 × object kind + 100 × method + position of :op (spec §3.5.6).
const AUDIT_KINDS = ["sequence", "instance", "topic"];
const AUDIT_METHODS = { POST: 1, GET: 2, PUT: 3, DELETE: 4 };
const AUDIT_OPS = ["stdout", "stderr", "stdin", "log", "monitoring", "output", "input", "health", "events",
    "event", "once", "_monitoring_rate", "_event", "_stop", "_kill", "instances", "start"];
// Lifecycle audit codes (opState ""): sequence created 0 / deleted 1; instance started 0, ended 2.
const LIFECYCLE = { SEQUENCE_CREATED: 0, SEQUENCE_DELETED: 1, INSTANCE_STARTED: 0, INSTANCE_ENDED: 2 };

function decode(segment) {
    try { return decodeURIComponent(segment); } catch (e) { return segment; }
}

const isPlainObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const startError = (error) => ({ error, result: "error" });

class HubApi {
    // peer: the HubPeer (id, opts, connected, location(), sendControl(), hubRequest()).
    constructor(peer) {
        this.peer = peer;
        this.opts = peer.opts;
        this.sequences = new Map();
        this.instances = new Map();
        this.topics = new Map();
        this.hubLog = new LogFeed(LOG_REPLAY_LINES);
        this.audit = new LogFeed(LOG_REPLAY_LINES);
        this.routes = this.buildRoutes();
    }

    buildRoutes() {
        const routes = [];
        const add = (method, pattern, fn) => routes.push({ method, re: new RegExp(`^/api/v1${pattern}$`), fn });
        const inst = (fn) => (req, res, params, url) => this.withInstance(req, res, params, (i) => fn.call(this, i, req, res, params, url));
        add("GET", "/config", this.getConfig);
        add("GET", "/status", this.getStatus);
        add("GET", "/entities", this.getEntities);
        add("GET", "/log", this.getLog);
        add("GET", "/audit", this.getAudit);
        add("GET", "/sequences", this.listSequences);
        add("POST", "/sequence", this.uploadSequence);
        add("GET", "/sequence/([^/]+)", this.getSequence);
        add("PUT", "/sequence/([^/]+)", this.updateSequence);
        add("DELETE", "/sequence/([^/]+)", this.deleteSequence);
        add("GET", "/sequence/([^/]+)/instances", this.sequenceInstances);
        add("POST", "/sequence/([^/]+)/start", this.startSequence);
        add("GET", "/instances", this.listInstances);
        add("GET", "/instance/([^/]+)", inst(this.getInstance));
        add("GET", "/instance/([^/]+)/health", inst(this.getHealth));
        add("GET", "/instance/([^/]+)/(output|stdout|stderr|log)", inst(this.readInstanceStream));
        add("POST", "/instance/([^/]+)/(input|stdin)", inst(this.writeInstanceInput));
        add("POST", "/instance/([^/]+)/inout", inst(this.inout));
        add("POST", "/instance/([^/]+)/_kill", inst(this.kill));
        add("POST", "/instance/([^/]+)/_stop", inst(this.stop));
        add("POST", "/instance/([^/]+)/_event", inst(this.sendEvent));
        add("POST", "/instance/([^/]+)/_monitoring_rate", inst(this.monitoringRate));
        add("GET", "/instance/([^/]+)/(event|once|events)/([^/]+)", inst(this.getEvent));
        add("GET", "/topics", this.listTopics);
        add("POST", "/topics", this.createTopic);
        add("DELETE", "/topics/([^/]+)", this.deleteTopic);
        add("GET", "/topic/([^/]+)", this.readTopic);
        add("POST", "/topic/([^/]+)", this.writeTopic);
        add("*", "/cpm/api/v1(/.*)?", this.toSpace);
        return routes;
    }

    // path: the normalised pathname (no duplicate or trailing "/"); url: the parsed URL.
    handle(req, res, path, url) {
        if (req.method === "OPTIONS") return this.options(req, res);
        for (const route of this.routes) {
            if (route.method !== "*" && route.method !== req.method) continue;
            const m = route.re.exec(path);
            if (m) return route.fn.call(this, req, res, m.slice(1).map((s) => (s === undefined ? s : decode(s))), url);
        }
        return replyAfterBody(req, res, 404, { error: "Not Found" });
    }

    options(req, res) {
        req.resume();
        res.writeHead(200, {
            "Access-Control-Allow-Headers": "*",
            "Access-Control-Allow-Methods": "DELETE, POST, GET, OPTIONS",
        });
        res.end();
    }

    control(code, payload) {
        this.peer.sendControl(code, payload);
    }

    /* ---- hub log and audit ------------------------------------------------------------- */

    log(msg, level = "INFO") {
        this.hubLog.push(`${JSON.stringify({ level, msg, ts: Date.now(), from: "Host" })}\n`);
    }

    // Called by the peer for every request on a manager-opened channel.
    noteRequest(req, res, path) {
        this.log(`Request ${req.method} ${req.url}`);
        const m = /^\/api\/v1\/(sequence|instance|topic)\/([^/]+)(?:\/([^/]+))?/.exec(path);
        if (!m || !AUDIT_METHODS[req.method]) return;
        const opCode = 10000 + 1000 * AUDIT_KINDS.indexOf(m[1]) + 100 * AUDIT_METHODS[req.method] + (AUDIT_OPS.indexOf(m[3]) + 1);
        const rec = {
            opState: "START", opCode, requestId: crypto.randomUUID(), objectId: decode(m[2]),
            requestorId: req.headers["x-mw-billable"] || "system", rx: 0, tx: 0, receivedAt: Date.now(),
        };
        this.auditPush(rec);
        countBytes(req, res, rec);
        res.once("close", () => this.auditPush({ ...rec, opState: res.statusCode >= 400 ? "ERROR" : "END" }));
    }

    auditPush(rec) {
        this.audit.push(`${JSON.stringify(rec)}\n`);
    }

    auditLifecycle(opCode, objectId) {
        this.auditPush({ opState: "", opCode, requestId: crypto.randomUUID(), objectId, requestorId: "system", rx: 0, tx: 0, receivedAt: Date.now() });
    }

    getLog(req, res) {
        req.resume();
        startStream(res);
        this.hubLog.attach(res);
    }

    getAudit(req, res) {
        req.resume();
        startStream(res);
        this.audit.attach(res);
    }

    /* ---- hub info ----------------------------------------------------------------------- */

    getConfig(req, res) {
        const o = this.opts;
        replyAfterBody(req, res, 200, {
            logLevel: "INFO",
            logColors: false,
            cpmUrl: "",
            cpmId: o.space,
            platform: { api: o.api, apiVersion: o.apiVersion, space: `${o.org}:${o.space}`, hostType: "hub" },
            description: o.description,
            tags: o.tags,
            docker: { prerunner: { image: "", maxMem: 128 }, runner: { image: "", maxMem: 512, exposePortsRange: [30000, 32767], hostIp: "0.0.0.0" } },
            host: {
                hostname: "0.0.0.0", port: 8000, apiBase: "/api/v1", instancesServerPort: 8001,
                infoFilePath: "/tmp/sth-id.json", id: this.peer.id || "",
            },
            instanceRequirements: { freeMem: 256, cpuLoad: 10, freeSpace: 128 },
            safeOperationLimit: 512,
            runtimeAdapter: "process",
            sequencesRoot: `${os.homedir()}/.scramjet_sequences`,
            timings: {
                heartBeatInterval: 10000,
                instanceLifetimeExtensionDelay: o.instanceLifetime,
                instanceAdapterExitDelay: 9000,
            },
        });
    }

    getStatus(req, res) {
        replyAfterBody(req, res, 200, { cpm: { cpmId: this.opts.space, connected: this.peer.connected } });
    }

    getEntities(req, res) {
        replyAfterBody(req, res, 200, {
            sequences: [...this.sequences.values()],
            instances: [...this.instances.values()],
            topics: this.topicList(),
        });
    }

    // Control-channel snapshot after LOAD and NETWORK_INFO (hub-protocol §5.5 steps 3–5).
    snapshot() {
        return [
            [7004, { sequences: [...this.sequences.values()].map((s) => ({ ...s, status: 0 })) }],
            [7003, { instances: [...this.instances.values()] }],
            ...this.topicList().map((t) => [CODE.TOPIC, { ...t, status: "add" }]),
        ];
    }

    /* ---- sequences ---------------------------------------------------------------------- */

    listSequences(req, res) {
        replyAfterBody(req, res, 200, [...this.sequences.values()]);
    }

    // By id, or (like the HEAD Hub on start) by the optional name alias.
    findSequence(ref) {
        return this.sequences.get(ref) || [...this.sequences.values()].find((s) => s.name === ref);
    }

    // Like the STH (spec §4.2 R1): a start for an unknown id asks the Space's store for
    // s3/undefined/<id>.tar.gz over the tunnel and keeps the package under that id.
    async fetchFromStore(id) {
        if (!this.peer.connected || !/^[A-Za-z0-9_.@+-]+$/.test(id)) return null;
        try {
            const res = await this.peer.hubRequest({
                method: "GET",
                path: `/api/v1/cpm/${this.peer.opts.space}/api/v1/s3/undefined/${id}.tar.gz`,
                headers: { Accept: "*/*", "Content-Type": "application/octet-stream", Host: "/api/v1" },
                writeBody: (out) => out.end(),
            });
            const body = await readBody(res);
            if (res.statusCode !== 200 || !body.length) return null;
            const record = { id, config: sequenceConfig(id, body), instances: [], location: this.peer.location() };
            this.sequences.set(id, record);
            this.control(CODE.SEQUENCE, { id, status: 0, config: record.config });
            return record;
        } catch (e) {
            return null;
        }
    }

    uploadSequence(req, res) {
        readBody(req).then((body) => {
            if (!body.length) return sendJson(res, 422, { error: "Sequence package is empty" });
            const id = crypto.randomUUID();
            const record = { id, config: sequenceConfig(id, body), instances: [], location: this.peer.location() };
            if (req.headers["x-name"]) record.name = String(req.headers["x-name"]);
            this.sequences.set(id, record);
            // The real Hub spells this header "Content-type" (see the capture).
            sendJson(res, 200, { id }, "Content-type");
            this.control(CODE.SEQUENCE, { id, status: 0, config: record.config });
            this.auditLifecycle(LIFECYCLE.SEQUENCE_CREATED, id);
            this.log(`Sequence ${id} stored (${record.config.name}@${record.config.version})`);
        }, () => {});
    }

    getSequence(req, res, [id]) {
        const seq = this.sequences.get(id);
        if (!seq) return replyAfterBody(req, res, 404, { error: `Sequence ${id} not found` });
        replyAfterBody(req, res, 200, seq);
    }

    sequenceInstances(req, res, [id]) {
        const seq = this.sequences.get(id);
        if (!seq) return replyAfterBody(req, res, 404, { error: `Sequence ${id} not found` });
        replyAfterBody(req, res, 200, seq.instances);
    }

    updateSequence(req, res, [id]) {
        const seq = this.sequences.get(id);
        if (!seq) return replyAfterBody(req, res, 404, { error: `Sequence ${id} not found` });
        if (seq.instances.length) return replyAfterBody(req, res, 409, { error: "Can't update sequence with instances" });
        readBody(req).then((body) => {
            if (!body.length) return sendJson(res, 422, { error: "Sequence package is empty" });
            seq.config = sequenceConfig(id, body);
            sendJson(res, 200, { id });
            this.control(CODE.SEQUENCE, { id, status: 0, config: seq.config });
        }, () => {});
    }

    deleteSequence(req, res, [id]) {
        const seq = this.sequences.get(id);
        if (!seq) return replyAfterBody(req, res, 404, { error: `The sequence ${id} does not exist.` });
        const force = String(req.headers["x-seq-kill-inst"] || "").trim().toLowerCase() === "true";
        if (seq.instances.length && !force) return replyAfterBody(req, res, 409, { error: "Can't remove- Sequence in use" });
        for (const instanceId of [...seq.instances]) this.endInstance(this.instances.get(instanceId), "killed");
        this.sequences.delete(id);
        replyAfterBody(req, res, 200, { id });
        // On delete `config` carries the whole record (hub-protocol §5.4.6).
        this.control(CODE.SEQUENCE, { id, status: 1, config: seq });
        this.auditLifecycle(LIFECYCLE.SEQUENCE_DELETED, id);
        this.log(`Sequence ${id} removed`);
    }

    /* ---- starting instances ------------------------------------------------------------- */

    startSequence(req, res, [ref]) {
        readBody(req).then(async (body) => {
            const seq = this.findSequence(ref) || (await this.fetchFromStore(ref));
            if (!seq) return sendJson(res, 404, startError(`Sequence ${ref} not found`));
            const parsed = parseControlBody(body);
            if (parsed.error) return sendJson(res, 400, startError(parsed.error));
            const checked = this.startParams(parsed.value);
            if (checked.status) return sendJson(res, checked.status, startError(checked.error));
            const inst = this.createInstance(seq, checked);
            sendJson(res, 200, { message: `Sequence ${inst.id} starting`, id: inst.id, result: "success" });
            this.control(CODE.INSTANCE, { instance: { id: inst.id, sequence: inst.reported } });
            this.connectInstanceTopics(inst);
        }, () => {});
    }

    // Start payload (spec §3.5.7) → instance parameters, or {status, error}.
    startParams(p) {
        let id = crypto.randomUUID();
        if (p.instanceId !== undefined && p.instanceId !== null && p.instanceId !== "") {
            if (typeof p.instanceId !== "string" || p.instanceId.length !== 36) return { status: 422, error: "Invalid instance id" };
            if (this.instances.has(p.instanceId)) return { status: 409, error: `Instance ${p.instanceId} already exists` };
            id = p.instanceId;
        }
        for (const key of ["outputTopic", "inputTopic"]) {
            const t = p[key];
            if (t !== undefined && t !== null && t !== "" && (typeof t !== "string" || !TOPIC_NAME.test(t))) {
                return { status: 400, error: "Topic id incorrect format" };
            }
        }
        return {
            id,
            appConfig: isPlainObject(p.appConfig) ? p.appConfig : {},
            args: Array.isArray(p.args) ? p.args : [],
            outputTopic: p.outputTopic || "",
            inputTopic: p.inputTopic || "",
        };
    }

    createInstance(seq, params) {
        const id = params.id;
        const sequence = { id: seq.id, config: seq.config };
        if (seq.name !== undefined) sequence.name = seq.name;
        sequence.location = seq.location;
        const hooks = {
            output: (chunk) => this.instanceToTopic(params.outputTopic, chunk),
            log: (line) => this.hubLog.push(`${id}: ${line}`),
        };
        const inst = new EmulatedInstance(id, params, sequence, this.opts, hooks);
        // Runner-supplied sequence info as in the capture: instances known before this one.
        inst.reported = { id: seq.id, config: seq.config, instances: [...seq.instances], location: seq.location };
        if (seq.name !== undefined) inst.reported.name = seq.name;
        seq.instances.push(id);
        this.instances.set(id, inst);
        this.auditLifecycle(LIFECYCLE.INSTANCE_STARTED, id);
        this.log(`Instance ${id} started (sequence ${seq.id})`);
        return inst;
    }

    // outputTopic/inputTopic → local topics and TOPIC announcements (hub-protocol §5.4.7).
    connectInstanceTopics(inst) {
        if (inst.provides) {
            const t = this.ensureTopic(inst.provides, DEFAULT_TOPIC_TYPE);
            t.localProvider = inst.id;
            const base = { provides: t.name, topicName: t.name, contentType: t.contentType, status: "add" };
            this.control(CODE.TOPIC, base);
            this.control(CODE.TOPIC, { localProvider: inst.id, ...base });
        }
        if (inst.requires) {
            const t = this.ensureTopic(inst.requires, DEFAULT_TOPIC_TYPE);
            const msg = { requires: t.name, topicName: t.name, contentType: t.contentType, status: "add" };
            this.control(CODE.TOPIC, msg);
            this.control(CODE.TOPIC, msg);
            inst.inputSink = new Writable({ write: (chunk, enc, cb) => { inst.echo("input", chunk); cb(); } });
            t.broadcast.attach(inst.inputSink);
        }
    }

    instanceToTopic(name, chunk) {
        const topic = name && this.topics.get(name);
        if (topic) topic.broadcast.write(chunk);
    }

    /* ---- instances ---------------------------------------------------------------------- */

    listInstances(req, res) {
        replyAfterBody(req, res, 200, [...this.instances.values()]);
    }

    withInstance(req, res, [id], fn) {
        const inst = this.instances.get(id);
        if (!inst) return replyAfterBody(req, res, 404, { error: `Instance ${id} not found` });
        return fn(inst);
    }

    getInstance(inst, req, res) {
        replyAfterBody(req, res, 200, inst);
    }

    getHealth(inst, req, res) {
        replyAfterBody(req, res, 200, inst.health());
    }

    readInstanceStream(inst, req, res, [, name]) {
        req.resume();
        startStream(res);
        inst.streams[name].attach(res);
    }

    // Checks shared by input and inout; returns false after answering an error.
    acceptsInput(inst, req, res) {
        if (inst.requires) return void replyAfterBody(req, res, 405, { error: "Input provided in other way" });
        const type = mediaType(req.headers["content-type"]);
        if (!type && !inst.inputType) return void replyAfterBody(req, res, 406, { error: "Content-Type must be defined" });
        if (!inst.inputType) inst.inputType = type;
        return true;
    }

    // input → output, stdin → stdout. x-end-stream defaults to true on these routes:
    // 200 when the target ended with this body, 202 when it stays open; empty body.
    writeInstanceInput(inst, req, res, [, target]) {
        if (target === "input" && !this.acceptsInput(inst, req, res)) return;
        const end = endStreamHeader(req, true);
        req.on("data", (chunk) => inst.echo(target, chunk));
        req.on("end", () => {
            if (end) inst[`${target}Ended`] = true;
            sendEmpty(res, end ? 200 : 202);
        });
    }

    // Full duplex: the response streams the output while the request body feeds the input.
    inout(inst, req, res) {
        if (!this.acceptsInput(inst, req, res)) return;
        startStream(res);
        inst.streams.output.attach(res);
        req.on("data", (chunk) => inst.echo("input", chunk));
        req.resume();
    }

    // Control posts answer with a parsed body, or 400 for unparsable JSON.
    withControlBody(req, res, fn) {
        readBody(req).then((body) => {
            const parsed = parseControlBody(body);
            if (parsed.error) return sendJson(res, 400, { error: parsed.error });
            fn(parsed.value);
        }, () => {});
    }

    kill(inst, req, res) {
        this.withControlBody(req, res, (p) => {
            if (!inst.running) return sendJson(res, 400, { error: "Instance not running" });
            if (p.removeImmediately === true) inst.removeImmediately = true;
            inst.status = "killing";
            sendJson(res, 202, inst);
            inst.scheduleEnd(this.opts.killDelay, () => this.endInstance(inst, "killed"));
        });
    }

    stop(inst, req, res) {
        this.withControlBody(req, res, (p) => {
            const timeout = p.timeout === undefined ? DEFAULT_STOP_TIMEOUT : p.timeout;
            if (typeof timeout !== "number" || !Number.isFinite(timeout) || timeout < 0) return sendJson(res, 400, { error: "Invalid timeout format" });
            if (p.canCallKeepalive !== undefined && typeof p.canCallKeepalive !== "boolean") return sendJson(res, 400, { error: "Invalid canCallKeepalive format" });
            if (!inst.running) return sendJson(res, 400, { error: "Instance not running" });
            if (inst.status !== "killing") inst.status = "stopping";
            sendJson(res, 202, inst);
            inst.scheduleEnd(Math.min(timeout, STOP_CAP_MS), () => this.endInstance(inst, "stopped"));
        });
    }

    sendEvent(inst, req, res) {
        this.withControlBody(req, res, (p) => {
            if (typeof p.eventName !== "string" || !p.eventName) return sendJson(res, 400, { error: "Invalid format, eventName missing." });
            // The Py client misspells the key as "messagee".
            inst.emitEvent(p.eventName, "message" in p ? p.message : p.messagee);
            sendJson(res, 200, { accepted: "OK" });
        });
    }

    monitoringRate(inst, req, res) {
        this.withControlBody(req, res, () => sendJson(res, 202, { accepted: true }));
    }

    // event: last message (waits for the first); once: the next one; events: stream of lines.
    getEvent(inst, req, res, [, kind, name]) {
        req.resume();
        const answer = (message) => sendJson(res, 200, message === undefined ? {} : message);
        if (kind === "events") {
            startStream(res);
            return inst.attachEventStream(name, res);
        }
        const last = kind === "event" ? inst.lastEvent(name) : null;
        if (last) return answer(last.message);
        inst.nextEvent(name, res, answer);
    }

    // The instance's streams end, its sequence forgets it, INSTANCE "gone" goes out; the record
    // stays listed as completed for --instance-lifetime unless removeImmediately.
    endInstance(inst, reason) {
        if (!inst || !inst.running) return;
        inst.finish(reason, 0);
        if (inst.inputSink) inst.inputSink.destroy();
        const seq = this.sequences.get(inst.sequence.id);
        if (seq) seq.instances = seq.instances.filter((i) => i !== inst.id);
        this.control(CODE.INSTANCE, { instance: { id: inst.id, status: "gone", sequence: inst.reported } });
        this.auditLifecycle(LIFECYCLE.INSTANCE_ENDED, inst.id);
        this.log(`Instance ${inst.id} ended (${reason})`);
        const forget = () => { if (this.instances.get(inst.id) === inst) this.instances.delete(inst.id); };
        if (inst.removeImmediately) forget();
        else if (this.opts.instanceLifetime >= 0) setTimeout(forget, this.opts.instanceLifetime).unref();
    }

    /* ---- topics ------------------------------------------------------------------------- */

    makeTopic(name, contentType) {
        const topic = { name, contentType, localProvider: "", broadcast: new Broadcast(this.opts.streamBuffer), queue: Promise.resolve() };
        this.topics.set(name, topic);
        return topic;
    }

    ensureTopic(name, contentType) {
        return this.topics.get(name) || this.makeTopic(name, contentType);
    }

    topicList() {
        return [...this.topics.values()].map((t) => ({
            contentType: t.contentType, localProvider: t.localProvider, topic: t.name, topicName: t.name,
        }));
    }

    listTopics(req, res) {
        replyAfterBody(req, res, 200, this.topicList());
    }

    createTopic(req, res) {
        this.withControlBody(req, res, (p) => {
            const id = p.id;
            const type = p["content-type"];
            let error = null;
            if (id === undefined || id === null || id === "") error = "Missing body param: id";
            else if (!type) error = "Missing body param: content-type";
            else if (!TOPIC_TYPES.has(type)) error = "Unsupported content-type";
            else if (typeof id !== "string" || !TOPIC_NAME.test(id)) error = "Topic id incorrect format";
            else if (this.topics.has(id)) error = "Topic with given id already exist";
            if (error) return sendJson(res, 400, { error });
            this.makeTopic(id, type);
            sendJson(res, 200, { id, origin: { type: "hub", id: os.hostname() }, state: "flowing", contentType: type });
            this.control(CODE.TOPIC, { contentType: type, topicName: id, status: "add" });
        });
    }

    deleteTopic(req, res, [name]) {
        if (!TOPIC_NAME.test(name)) return replyAfterBody(req, res, 400, { error: "Topic id incorrect format" });
        const topic = this.topics.get(name);
        if (!topic) return replyAfterBody(req, res, 404, { error: `Topic ${name} not found` });
        this.topics.delete(name);
        topic.broadcast.end();
        replyAfterBody(req, res, 200, { message: `Topic ${name} removed` });
        this.control(CODE.TOPIC, { topicName: name, status: "remove" });
    }

    // Common checks of GET/POST /topic/:t; returns the topic, or null after answering an error.
    topicFor(req, res, name, type) {
        let error = null;
        if (!TOPIC_TYPES.has(type)) error = [400, "Unsupported content-type"];
        else if (!TOPIC_NAME.test(name)) error = [400, "Topic id incorrect format"];
        else if (this.topics.has(name) && this.topics.get(name).contentType !== type) {
            error = [415, `Acceptable Content-Type for ${name} is ${this.topics.get(name).contentType}`];
        }
        if (error) return void replyAfterBody(req, res, error[0], { error: error[1] });
        return this.ensureTopic(name, type);
    }

    // 200 application/octet-stream at once, then every byte written to the topic; never ends
    // unless the topic is deleted. Without a `cpm` header the Hub announces `requires`.
    readTopic(req, res, [name]) {
        const accept = req.headers.accept;
        if (accept && !/\*\/\*|application\/octet-stream/.test(accept)) {
            return replyAfterBody(req, res, 415, { error: "Unsupported Media Type" });
        }
        const type = mediaType(req.headers["content-type"]) || DEFAULT_TOPIC_TYPE;
        const topic = this.topicFor(req, res, name, type);
        if (!topic) return;
        req.resume();
        startStream(res);
        topic.broadcast.attach(res);
        if (!req.headers.cpm) this.control(CODE.TOPIC, { requires: name, contentType: type, topicName: name, status: "add" });
    }

    // Uploads are consumed one at a time per topic; the answer (200 {}) comes when the body ended.
    writeTopic(req, res, [name]) {
        const type = mediaType(req.headers["content-type"]);
        const topic = this.topicFor(req, res, name, type);
        if (!topic) return;
        if (!req.headers.cpm) this.control(CODE.TOPIC, { provides: name, contentType: type, topicName: name, status: "add" });
        topic.queue = topic.queue.then(() => consumeUpload(topic, req, res));
    }

    /* ---- Hub → Space passthrough (spec §3.3.4, hub-protocol R2) ------------------------ */

    toSpace(req, res, [rest], url) {
        const path = `/api/v1/cpm/${this.opts.space}/api/v1${rest || ""}${url.search}`;
        const headers = { ...req.headers };
        for (const h of ["connection", "keep-alive", "expect"]) delete headers[h];
        if (!headers.host) headers.host = "scramjet-space";
        this.peer.hubRequest({ method: req.method, path, headers, writeBody: (out) => req.pipe(out) }).then((up) => {
            res.writeHead(up.statusCode, up.statusMessage, up.headers);
            up.pipe(res);
        }, (e) => replyAfterBody(req, res, 503, { error: `Space not reachable: ${e.message}` }));
    }
}

// Feed one upload into a topic with back-pressure; NDJSON topics get a trailing "\n" when the
// source ends without one (hub-protocol §6).
function consumeUpload(topic, req, res) {
    return new Promise((resolve) => {
        if (req.destroyed) return resolve();
        continueOnce(req, res);
        let last = null;
        req.on("data", (chunk) => {
            last = chunk[chunk.length - 1];
            req.pause();
            topic.broadcast.writeAwait(chunk).then(() => req.resume());
        });
        req.on("end", async () => {
            if (NDJSON_TYPES.has(topic.contentType) && last !== null && last !== 0x0a) {
                await topic.broadcast.writeAwait(Buffer.from("\n"));
            }
            sendJson(res, 200, {});
            resolve();
        });
        req.on("close", () => { if (!req.readableEnded) resolve(); });   // aborted upload
        req.on("error", resolve);
        req.resume();
    });
}

// Request/response byte counts for an audit record, without touching the streams' flow.
function countBytes(req, res, rec) {
    const push = req.push;
    req.push = function countedPush(chunk, enc) {
        if (chunk) rec.rx += chunk.length;
        return push.call(this, chunk, enc);
    };
    const write = res.write;
    res.write = function countedWrite(chunk, ...rest) {
        if (chunk && typeof chunk !== "function") rec.tx += Buffer.byteLength(chunk);
        return write.call(this, chunk, ...rest);
    };
    const end = res.end;
    res.end = function countedEnd(chunk, ...rest) {
        if (chunk && typeof chunk !== "function") rec.tx += Buffer.byteLength(chunk);
        return end.call(this, chunk, ...rest);
    };
}

module.exports = { HubApi };
