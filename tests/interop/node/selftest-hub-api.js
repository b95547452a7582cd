"use strict";
/*
 * Part of selftest.js: the emulated Hub REST API of hub-peer.js (hub-api.js), exercised over
 * manager-opened BPMux channels of the fake manager, with the control channel open.
 * Expected shapes, texts and codes: shared/spec/space-api.md §3.3/§3.5/§5 and
 * shared/spec/hub-protocol.md §5.4/§6. run(kit) gets the selftest's helpers.
 */

const os = require("os");
const http = require("http");
const zlib = require("zlib");
const { Readable } = require("stream");

const HUB_ID = "hub-r";
const SPACE = "space-1";
const CUSTOM_ID = "11111111-2222-4333-8444-555555555555";

let check;
let until;
let sleep;

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                    */

// A gzip tar built by hand (ustar headers), so the peer's tar walk is tested independently.
function tarGz(files) {
    const blocks = [];
    for (const [name, content] of Object.entries(files)) {
        const data = Buffer.from(content);
        const h = Buffer.alloc(512);
        h.write(name, 0, 100);
        h.write("0000644\0", 100);
        h.write("0000000\0", 108);
        h.write("0000000\0", 116);
        h.write(`${data.length.toString(8).padStart(11, "0")}\0`, 124);
        h.write("00000000000\0", 136);
        h.fill(" ", 148, 156);
        h.write("0", 156);
        h.write("ustar\0", 257);
        h.write("00", 263);
        let sum = 0;
        for (const b of h) sum += b;
        h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
        blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
    }
    blocks.push(Buffer.alloc(1024));
    return zlib.gzipSync(Buffer.concat(blocks));
}

function packageOf(pkg, dir = "") {
    return tarGz({ [`${dir}package.json`]: JSON.stringify(pkg), [`${dir}index.js`]: "module.exports = async function* () {};\n" });
}

function parse(r) {
    try { return JSON.parse(r.body.toString()); } catch (e) { return undefined; }
}

// Every JSON answer: expected status, content-type application/json, ACAO *, and (optionally)
// exactly this body.
function checkJson(name, r, status, body) {
    const ok = r.status === status && r.headers["content-type"] === "application/json" &&
        r.headers["access-control-allow-origin"] === "*" &&
        (body === undefined || r.body.toString() === JSON.stringify(body));
    check(name, ok, `${r.status} ${r.headers["content-type"]} ${r.body.toString().slice(0, 300)}`);
    return parse(r);
}

const json = JSON.stringify;
const CT_JSON = { "Content-Type": "application/json" };

function messagesOf(control, code, pred = () => true) {
    return control.messages.filter((m) => m[0] === code && pred(m[1])).map((m) => m[1]);
}

function waitMessage(control, code, pred, what) {
    return until(() => messagesOf(control, code, pred)[0], 3000, what);
}

// Complete lines only (a stream may have delivered part of the next one).
function lines(text) {
    return text.slice(0, text.lastIndexOf("\n") + 1).split("\n").filter(Boolean);
}

// Resolves true if the stream ended within ms.
async function endsWithin(s, ms) {
    await Promise.race([s.ended, sleep(ms)]);
    return s.done;
}

/* ------------------------------------------------------------------------------------------ */
/* Sequences                                                                                  */

async function checkSequences(t, control) {
    const pkg = packageOf({ name: "hello-seq", version: "2.3.4", main: "lib/main.js", engines: { node: ">=16" }, description: "d" });
    const up = await t.request("POST", "/api/v1/sequence", pkg, { "Content-Type": "application/octet-stream", Expect: "100-continue" });
    const upBody = checkJson("H9 POST /sequence (gzip tar, Expect: 100-continue) → 200 {id}", up, 200);
    const seqId = upBody && upBody.id;
    check("H9 answer header spelled \"Content-type\" like the real Hub", up.rawHeaders.includes("Content-type"), up.rawHeaders.join());
    const get = await t.request("GET", `/api/v1/sequence/${seqId}`);
    const seq = checkJson("H11 GET /sequence/:id → 200", get, 200);
    const c = (seq && seq.config) || {};
    check("H11 config filled from package.json (name, version, main → entrypointPath, engines)",
        c.name === "hello-seq" && c.version === "2.3.4" && c.entrypointPath === "lib/main.js" && c.engines.node === ">=16" &&
        c.id === seqId && c.language === "js" && c.type === "process" && c.description === "d" && c.packageSize === pkg.length &&
        seq.location === HUB_ID && json(seq.instances) === "[]", json(seq));
    const msg = await waitMessage(control, 7006, (p) => p.id === seqId, "SEQUENCE add");
    check("SEQUENCE (7006) on add: {id, status 0, config}", msg.status === 0 && json(msg.config) === json(c) &&
        json(Object.keys(msg)) === json(["id", "status", "config"]), json(msg));

    const npmStyle = await t.request("POST", "/api/v1/sequence", packageOf({ name: "packed", version: "0.1.0" }, "package/"));
    const npmSeq = parse(await t.request("GET", `/api/v1/sequence/${parse(npmStyle).id}`));
    check("H9 package.json one directory down (npm pack layout) is found", npmSeq.config.name === "packed" &&
        npmSeq.config.entrypointPath === "index.js", json(npmSeq.config));

    checkJson("H9 empty package → 422 JSON error", await t.request("POST", "/api/v1/sequence", ""), 422);
    checkJson("H11 unknown sequence → 404", await t.request("GET", "/api/v1/sequence/nope"), 404, { error: "Sequence nope not found" });
    checkJson("H12 instances of an unknown sequence → 404", await t.request("GET", "/api/v1/sequence/nope/instances"), 404);
    checkJson("H13 DELETE unknown sequence → 404 JSON", await t.request("DELETE", "/api/v1/sequence/nope", undefined, CT_JSON), 404);

    const put = await t.request("PUT", `/api/v1/sequence/${seqId}`, packageOf({ name: "hello-seq", version: "2.3.5" }));
    checkJson("H10 PUT /sequence/:id → 200 {id}", put, 200, { id: seqId });
    const after = parse(await t.request("GET", `/api/v1/sequence/${seqId}`));
    check("H10 PUT replaced the config", after.config.version === "2.3.5" && after.config.id === seqId, json(after.config));
    const list = checkJson("H8 GET /sequences → 200 array", await t.request("GET", "/api/v1/sequences"), 200);
    check("H8 lists both sequences", Array.isArray(list) && list.length === 2 && list[0].id === seqId, json(list));
    return seqId;
}

/* ------------------------------------------------------------------------------------------ */
/* Instances                                                                                  */

async function start(t, seqId, body, headers = CT_JSON) {
    return t.request("POST", `/api/v1/sequence/${seqId}/start`, body, headers);
}

async function checkStart(t, control, seqId) {
    const a = checkJson("H14 start with a `null` body (Py) → 200", await start(t, seqId, "null"), 200);
    check("H14 answer {message, id, result}", a && a.id.length === 36 && a.message === `Sequence ${a.id} starting` &&
        a.result === "success", json(a));
    const msg = await waitMessage(control, 7005, (p) => p.instance.id === a.id, "INSTANCE start");
    check("INSTANCE (7005) on start: no status, runner sequence info", !("status" in msg.instance) &&
        msg.instance.sequence.id === seqId && json(msg.instance.sequence.instances) === "[]" &&
        json(Object.keys(msg.instance)) === json(["id", "sequence"]), json(msg));
    const b = checkJson("H14 start without a body → 200", await start(t, seqId, undefined, {}), 200);
    const v026 = await start(t, seqId, json({ appConfig: { x: 1 }, args: ["a"], limits: {}, instanceId: CUSTOM_ID }));
    checkJson("H14 honours a 36-char instanceId (v0.26 body with limits)", v026, 200,
        { message: `Sequence ${CUSTOM_ID} starting`, id: CUSTOM_ID, result: "success" });
    const dup = checkJson("H14 existing instanceId → 409", await start(t, seqId, json({ instanceId: CUSTOM_ID })), 409);
    check("H14 409 body has error and result:error", dup && dup.result === "error" && typeof dup.error === "string", json(dup));
    const bad = checkJson("H14 instanceId not 36 chars → 422", await start(t, seqId, json({ instanceId: "short" })), 422);
    check("H14 422 body has result:error", bad && bad.result === "error", json(bad));
    checkJson("H14 start with a v0.26 [code, {...}] array body → 200", await start(t, seqId, json([0, { args: [] }])), 200);
    const ids = parse(await t.request("GET", `/api/v1/sequence/${seqId}/instances`));
    check("H12 GET /sequence/:id/instances lists the instance ids", Array.isArray(ids) && ids.includes(a.id) &&
        ids.includes(b.id) && ids.includes(CUSTOM_ID), json(ids));
    const custom = checkJson("I2 GET /instance/:id → 200", await t.request("GET", `/api/v1/instance/${CUSTOM_ID}`), 200);
    check("I2 Instance shape (appConfig, args, provides, sequence object, status running)", custom &&
        json(custom.appConfig) === json({ x: 1 }) && json(custom.args) === json(["a"]) && custom.provides === "" &&
        custom.sequence.id === seqId && custom.sequence.location === HUB_ID && custom.status === "running" &&
        typeof custom.created === "string", json(custom));
    return { a: a.id, b: b.id };
}

async function checkInstanceErrors(t, id) {
    checkJson("I2 unknown instance → 404", await t.request("GET", "/api/v1/instance/nope"), 404, { error: "Instance nope not found" });
    checkJson("I11 output of an unknown instance → 404 JSON (before streaming)", await t.request("GET", "/api/v1/instance/nope/output"), 404,
        { error: "Instance nope not found" });
    checkJson("unknown instance operation → 404 Not Found", await t.request("GET", `/api/v1/instance/${id}/bogus`), 404, { error: "Not Found" });
    const h = checkJson("I3 GET …/health → 200", await t.request("GET", `/api/v1/instance/${id}/health`), 200);
    check("I3 health says healthy", h && h.healthy === true && typeof h.memoryUsage === "number", json(h));
    checkJson("I13 input without content-type → 406", await t.request("POST", `/api/v1/instance/${id}/input`, "x"), 406,
        { error: "Content-Type must be defined" });
}

async function checkInstanceStreams(t, id) {
    const t0 = Date.now();
    const out = await t.stream("GET", `/api/v1/instance/${id}/output`);
    const stdout = await t.stream("GET", `/api/v1/instance/${id}/stdout`);
    const log = await t.stream("GET", `/api/v1/instance/${id}/log`);
    const names = [];
    for (let i = 0; i < out.rawHeaders.length; i += 2) names.push(out.rawHeaders[i]);
    check("I11 output: 200 application/octet-stream, head at once, header order as captured", out.status === 200 &&
        out.headers["content-type"] === "application/octet-stream" && Date.now() - t0 < 1000 &&
        names.join() === "Access-Control-Allow-Origin,content-type,transfer-encoding,Date,Connection", names.join());
    // The first chunk carries the ticks buffered since the start; wait for 3 live ones after it.
    await until(() => out.times.length >= 4 && lines(out.text()).length >= 6, 3000, "live output ticks");
    const ticks = lines(out.text()).map((l) => JSON.parse(l).tick);
    check("I11 output: NDJSON {\"tick\":n} from tick 0 (buffered until the first reader), consecutive",
        ticks.every((n, i) => n === i), out.text());
    check("I11 output: ticks arrive as they are produced (one chunk per tick)",
        out.times[out.times.length - 1] - out.times[0] >= 200, json(out.times.map((x) => x - t0)));
    check("I10 stdout: \"tick n\" text lines", /^tick 0\ntick 1\n/.test(stdout.text()), stdout.text());
    check("I12 log: JSON log lines", lines(log.text()).length > 0 && JSON.parse(lines(log.text())[0]).msg === "tick 0", log.text());

    const input = await t.request("POST", `/api/v1/instance/${id}/input`, "hello-input\n", { "Content-Type": "text/plain", "x-end-stream": "false" });
    check("I13 input with x-end-stream: false → 202, empty body", input.status === 202 && input.body.length === 0, `${input.status} ${input.body}`);
    await until(() => out.text().includes("hello-input\n"), 2000, "input echoed to output");
    check("I13 input is echoed to output", true);
    const py = await t.request("POST", `/api/v1/instance/${id}/input?parse=stream`, "\"py\"", { "Content-Type": "text/plain", "x-end-stream": "True" });
    check("I13 x-end-stream: True (Py spelling) → 200", py.status === 200 && py.body.length === 0, py.status);
    const stdin = await t.request("POST", `/api/v1/instance/${id}/stdin`, "hello-stdin\n", { "Content-Type": "application/octet-stream", Expect: "100-continue" });
    check("I14 stdin without x-end-stream → 200 (ends by default)", stdin.status === 200 && stdin.body.length === 0, stdin.status);
    await until(() => stdout.text().includes("hello-stdin\n"), 2000, "stdin echoed to stdout");
    check("I14 stdin is echoed to stdout", true);
    check("I10/I11 streams stay open while the instance runs", !out.done && !stdout.done && !log.done);
    return { out, stdout, log };
}

async function checkEvents(t, id) {
    const once = t.request("GET", `/api/v1/instance/${id}/once/ev`);
    const events = await t.stream("GET", `/api/v1/instance/${id}/events/ev`);
    await sleep(100);
    const sent = await t.request("POST", `/api/v1/instance/${id}/_event`, json([5001, { eventName: "ev", message: "m1" }]), CT_JSON);
    checkJson("I6 POST _event [5001, {...}] → 200 {accepted:OK}", sent, 200, { accepted: "OK" });
    checkJson("I8 GET once/:name answers the next event", await once, 200, "m1");
    await t.request("POST", `/api/v1/instance/${id}/_event`, json({ eventName: "ev", message: { a: 1 } }), CT_JSON);
    checkJson("I7 GET event/:name → the last message", await t.request("GET", `/api/v1/instance/${id}/event/ev`), 200, { a: 1 });
    await until(() => lines(events.text()).length >= 2, 2000, "event stream lines");
    check("I9 events/:name streams one JSON value per line", events.text() === "\"m1\"\n{\"a\":1}\n", events.text());
    await t.request("POST", `/api/v1/instance/${id}/_event`, json({ eventName: "py", messagee: "typo" }), CT_JSON);
    checkJson("I6 Py's \"messagee\" key is accepted", await t.request("GET", `/api/v1/instance/${id}/event/py`), 200, "typo");
    checkJson("I6 missing eventName → 400", await t.request("POST", `/api/v1/instance/${id}/_event`, "{}", CT_JSON), 400,
        { error: "Invalid format, eventName missing." });
    return events;
}

async function checkKill(t, control, seqId, id, streams) {
    checkJson("H13 DELETE a sequence with running instances → 409", await t.request("DELETE", `/api/v1/sequence/${seqId}`, undefined, CT_JSON),
        409, { error: "Can't remove- Sequence in use" });
    const kill = await t.request("POST", `/api/v1/instance/${id}/_kill`, json([4002, { removeImmediately: false }]), CT_JSON);
    const killed = checkJson("I5 _kill [4002, {...}] → 202 Instance", kill, 202);
    check("I5 answer is the Instance with status killing", killed && killed.id === id && killed.status === "killing", json(killed));
    const ended = await Promise.all(Object.values(streams).map((s) => endsWithin(s, 2000)));
    check("I5 kill ends output, stdout, log and event streams", ended.every(Boolean), json(ended));
    const gone = await waitMessage(control, 7005, (p) => p.instance.id === id && p.instance.status === "gone", "INSTANCE gone");
    check("INSTANCE (7005) gone: {id, status: gone, sequence}", gone.instance.sequence.id === seqId &&
        json(Object.keys(gone.instance)) === json(["id", "status", "sequence"]), json(gone));
    const info = parse(await t.request("GET", `/api/v1/instance/${id}`));
    check("I2 a killed instance stays listed as completed", info.status === "completed" && typeof info.ended === "string", json(info));
    const ids = parse(await t.request("GET", `/api/v1/sequence/${seqId}/instances`));
    check("H12 the sequence forgets the ended instance", !ids.includes(id), json(ids));
    checkJson("I5 _kill of an ended instance → 400", await t.request("POST", `/api/v1/instance/${id}/_kill`, "{}", CT_JSON), 400,
        { error: "Instance not running" });
    const late = await t.stream("GET", `/api/v1/instance/${id}/output`);
    check("I11 output of an ended instance: 200, ends at once", late.status === 200 && await endsWithin(late, 1000));
}

async function checkStopAndRemove(t, control, seqId, id) {
    checkJson("I4 _stop with a bad timeout → 400", await t.request("POST", `/api/v1/instance/${id}/_stop`, json({ timeout: "x" }), CT_JSON), 400,
        { error: "Invalid timeout format" });
    const t0 = Date.now();
    const stop = await t.request("POST", `/api/v1/instance/${id}/_stop`, json([4001, { timeout: 300, canCallKeepalive: true }]), CT_JSON);
    const stopping = checkJson("I4 _stop [4001, {...}] → 202 Instance", stop, 202);
    check("I4 status stopping", stopping && stopping.status === "stopping", json(stopping));
    await waitMessage(control, 7005, (p) => p.instance.id === id && p.instance.status === "gone", "INSTANCE gone after stop");
    const took = Date.now() - t0;
    check("I4 the instance ends after the stop timeout (300 ms)", took >= 250 && took < 1500, took);

    const c = checkJson("H14 start (object body) → 200", await start(t, seqId, json({ appConfig: {} })), 200);
    const kill = await t.request("POST", `/api/v1/instance/${c.id}/_kill`, json({ removeImmediately: true }), CT_JSON);
    checkJson("I5 _kill {removeImmediately: true} (HEAD) → 202", kill, 202);
    await waitMessage(control, 7005, (p) => p.instance.id === c.id && p.instance.status === "gone", "INSTANCE gone (removeImmediately)");
    checkJson("I2 removeImmediately: the instance is gone → 404", await t.request("GET", `/api/v1/instance/${c.id}`), 404,
        { error: `Instance ${c.id} not found` });
    const restarted = await start(t, seqId, json({ instanceId: c.id }));
    checkJson("H14 the removed id can be reused (HEAD inst restart)", restarted, 200);
}

async function checkForcedDelete(t, control, seqId) {
    const d = parse(await start(t, seqId, "{}"));
    const del = await t.request("DELETE", `/api/v1/sequence/${seqId}`, undefined, { ...CT_JSON, "x-seq-kill-inst": "true" });
    checkJson("H13 DELETE with x-seq-kill-inst: true → 200 {id}", del, 200, { id: seqId });
    const msg = await waitMessage(control, 7006, (p) => p.id === seqId && p.status === 1, "SEQUENCE delete");
    check("SEQUENCE (7006) on delete: status 1, config = the whole record", msg.config.id === seqId &&
        msg.config.config && msg.config.config.id === seqId && msg.config.location === HUB_ID, json(msg));
    check("H13 forced delete ended its instances (INSTANCE gone)",
        !!messagesOf(control, 7005, (p) => p.instance.id === d.id && p.instance.status === "gone")[0]);
    checkJson("H11 deleted sequence → 404", await t.request("GET", `/api/v1/sequence/${seqId}`), 404);
    const all = checkJson("I1 GET /instances → 200 array", await t.request("GET", "/api/v1/instances"), 200);
    check("I1 ended instances are listed as completed", all.length >= 5 && all.every((i) => i.status === "completed"), json(all.map((i) => i.status)));
}

async function checkInstances(t, control, seqId) {
    const { a, b } = await checkStart(t, control, seqId);
    await checkInstanceErrors(t, a);
    const streams = await checkInstanceStreams(t, a);
    streams.events = await checkEvents(t, a);
    await checkKill(t, control, seqId, a, streams);
    await checkStopAndRemove(t, control, seqId, b);
    await checkForcedDelete(t, control, seqId);
}

/* ------------------------------------------------------------------------------------------ */
/* Topics                                                                                     */

async function checkTopicCreate(t, control) {
    const created = await t.request("POST", "/api/v1/topics", json({ id: "names", "content-type": "text/plain" }), CT_JSON);
    checkJson("T2 POST /topics → 200", created, 200,
        { id: "names", origin: { type: "hub", id: os.hostname() }, state: "flowing", contentType: "text/plain" });
    const msg = await waitMessage(control, 7007, (p) => p.topicName === "names", "TOPIC create");
    check("TOPIC (7007) on create", json(msg) === json({ contentType: "text/plain", topicName: "names", status: "add" }), json(msg));
    const errors = [
        [{ id: "names", "content-type": "text/plain" }, "Topic with given id already exist"],
        [{ "content-type": "text/plain" }, "Missing body param: id"],
        [{ id: "x" }, "Missing body param: content-type"],
        [{ id: "x", "content-type": "application/json" }, "Unsupported content-type"],
        [{ id: "bad name", "content-type": "text/plain" }, "Topic id incorrect format"],
    ];
    for (const [body, error] of errors) {
        checkJson(`T2 400 "${error}"`, await t.request("POST", "/api/v1/topics", json(body), CT_JSON), 400, { error });
    }
}

async function checkTopicData(t, control) {
    checkJson("T4 GET with the default type on a text/plain topic → 415",
        await t.request("GET", "/api/v1/topic/names"), 415, { error: "Acceptable Content-Type for names is text/plain" });
    const before = messagesOf(control, 7007).length;
    const r1 = await t.stream("GET", "/api/v1/topic/names", { "Content-Type": "text/plain" });
    const r2 = await t.stream("GET", "/api/v1/topic/names", { "Content-Type": "text/plain", cpm: SPACE });
    check("T4 GET → 200 application/octet-stream, head at once", r1.status === 200 && r1.headers["content-type"] === "application/octet-stream");
    const post = await t.request("POST", "/api/v1/topic/names", "hello topic", { "Content-Type": "text/plain", Expect: "100-continue" });
    checkJson("T3 POST /topic/:t → 200 {} when the upload ended", post, 200, {});
    await until(() => r1.text() === "hello topic" && r2.text() === "hello topic", 2000, "topic broadcast");
    check("T3/T4 data reaches every reader (broadcast), text/plain unchanged", true);
    await t.request("POST", "/api/v1/topic/names", "+cpm", { "Content-Type": "text/plain", cpm: SPACE });
    await until(() => r1.text().endsWith("+cpm"), 2000, "second upload");
    await sleep(100);
    const announced = messagesOf(control, 7007).slice(before);
    check("TOPIC announcements: requires for the GET, provides for the POST, none with a cpm header", json(announced) === json([
        { requires: "names", contentType: "text/plain", topicName: "names", status: "add" },
        { provides: "names", contentType: "text/plain", topicName: "names", status: "add" },
    ]), json(announced));
    checkJson("T3 POST with another type → 415", await t.request("POST", "/api/v1/topic/names", "x", { "Content-Type": "application/x-ndjson" }),
        415, { error: "Acceptable Content-Type for names is text/plain" });
    checkJson("T3 POST with an unsupported type → 400", await t.request("POST", "/api/v1/topic/names", "x", CT_JSON),
        400, { error: "Unsupported content-type" });
    checkJson("T3 POST without a type → 400", await t.request("POST", "/api/v1/topic/names", "x"), 400, { error: "Unsupported content-type" });
    checkJson("T3 POST to a bad topic name → 400", await t.request("POST", "/api/v1/topic/bad%20name", "x", { "Content-Type": "text/plain" }),
        400, { error: "Topic id incorrect format" });
    await sleep(300);
    check("T4 topic GETs never end on their own", !r1.done && !r2.done);
    return [r1, r2];
}

async function checkNdjsonTopics(t) {
    const nd = await t.stream("GET", "/api/v1/topic/nd");
    await t.request("POST", "/api/v1/topic/nd", "{\"a\":1}", { "Content-Type": "application/x-ndjson" });
    await until(() => nd.text().length >= 8, 2000, "ndjson data");
    check("T3 NDJSON topics get a trailing newline", nd.text() === "{\"a\":1}\n", json(nd.text()));
    const early = await t.request("POST", "/api/v1/topic/early", "{\"b\":2}\n", { "Content-Type": "application/x-ndjson" });
    checkJson("T3 POST with no reader yet → 200 {}", early, 200, {});
    const late = await t.stream("GET", "/api/v1/topic/early", { "Content-Type": "application/x-ndjson", Accept: "*/*" });
    await until(() => late.text().length > 0, 2000, "buffered topic data");
    check("T4 data sent before the first reader is kept for it", late.text() === "{\"b\":2}\n", late.text());
    checkJson("T4 unacceptable Accept → 415", await t.request("GET", "/api/v1/topic/early", undefined, { Accept: "application/json" }), 415);
    const list = checkJson("T1 GET /topics → 200", await t.request("GET", "/api/v1/topics"), 200);
    check("T1 shape {contentType, localProvider, topic, topicName}", json(list[0]) ===
        json({ contentType: "text/plain", localProvider: "", topic: "names", topicName: "names" }) && list.length === 3, json(list));
    nd.close();
    late.close();
}

async function checkTopicDelete(t, control, readers) {
    checkJson("T5 DELETE /topics/:t → 200", await t.request("DELETE", "/api/v1/topics/names", undefined, CT_JSON), 200,
        { message: "Topic names removed" });
    const ended = await Promise.all(readers.map((r) => endsWithin(r, 2000)));
    check("T5 deleting a topic ends its GET streams", ended.every(Boolean), json(ended));
    const msg = await waitMessage(control, 7007, (p) => p.status === "remove", "TOPIC remove");
    check("TOPIC (7007) on delete", json(msg) === json({ topicName: "names", status: "remove" }), json(msg));
    checkJson("T5 unknown topic → 404", await t.request("DELETE", "/api/v1/topics/names", undefined, CT_JSON), 404,
        { error: "Topic names not found" });
    checkJson("T5 bad name → 400", await t.request("DELETE", "/api/v1/topics/bad%20name", undefined, CT_JSON), 400);
}

async function checkInstanceTopics(t, control) {
    const seqId = parse(await t.request("POST", "/api/v1/sequence", packageOf({ name: "topics" }))).id;
    const started = parse(await start(t, seqId, json({ outputTopic: "ticks", inputTopic: "feed" })));
    const id = started.id;
    const info = parse(await t.request("GET", `/api/v1/instance/${id}`));
    check("H14 outputTopic/inputTopic → provides/requires", info.provides === "ticks" && info.requires === "feed", json(info));
    await until(() => messagesOf(control, 7007, (p) => p.topicName === "feed").length >= 2, 2000, "requires announcements");
    const ticksMsgs = messagesOf(control, 7007, (p) => p.topicName === "ticks");
    check("TOPIC provides by an instance: plain, then with localProvider", json(ticksMsgs) === json([
        { provides: "ticks", topicName: "ticks", contentType: "application/x-ndjson", status: "add" },
        { localProvider: id, provides: "ticks", topicName: "ticks", contentType: "application/x-ndjson", status: "add" },
    ]), json(ticksMsgs));
    const feedMsgs = messagesOf(control, 7007, (p) => p.topicName === "feed");
    check("TOPIC requires by an instance: sent twice", feedMsgs.length === 2 && json(feedMsgs[0]) === json(feedMsgs[1]) &&
        json(feedMsgs[0]) === json({ requires: "feed", topicName: "feed", contentType: "application/x-ndjson", status: "add" }), json(feedMsgs));
    const ticks = await t.stream("GET", "/api/v1/topic/ticks", { cpm: SPACE });
    const out = await t.stream("GET", `/api/v1/instance/${id}/output`);
    await until(() => lines(ticks.text()).length >= 2, 3000, "ticks in the output topic");
    check("instance output lines are written to its outputTopic", lines(ticks.text()).every((l) => "tick" in JSON.parse(l)), ticks.text());
    await t.request("POST", "/api/v1/topic/feed", "{\"fed\":1}", { "Content-Type": "application/x-ndjson", cpm: SPACE });
    await until(() => out.text().includes("{\"fed\":1}\n"), 2000, "topic data fed to the instance input");
    check("inputTopic data reaches the instance input (echoed to output)", true);
    checkJson("I13 input of an instance fed by a topic → 405",
        await t.request("POST", `/api/v1/instance/${id}/input`, "x", { "Content-Type": "text/plain" }), 405, { error: "Input provided in other way" });
    ticks.close();
    out.close();
}

/* ------------------------------------------------------------------------------------------ */
/* Hub-level routes                                                                           */

async function checkHub(t) {
    const log = await t.stream("GET", "/api/v1/log");
    check("H6 GET /log → 200 application/octet-stream stream", log.status === 200 && log.headers["content-type"] === "application/octet-stream");
    await until(() => log.text().includes("\n"), 2000, "log replay");
    // Hub lines are JSON; instance log lines come prefixed with "<instanceId>: ".
    const replay = lines(log.text()).map((l) => JSON.parse(l.replace(/^[0-9a-f-]{36}: /, "")));
    const host = replay.find((r) => r.from === "Host");
    check("H6 log replays JSON lines {level, msg, ts, from} and prefixed instance lines", !!host && host.level === "INFO" &&
        typeof host.msg === "string" && typeof host.ts === "number" && replay.some((r) => r.from === "Sequence"), log.text().slice(0, 300));
    await t.request("GET", "/api/v1/version?marker=live-line");
    await until(() => log.text().includes("marker=live-line"), 2000, "live log line");
    check("H6 new log lines arrive live", true);
    await sleep(200);
    check("H6 the log stream does not end", !log.done);
    log.close();

    const config = checkJson("H3 GET /config → 200", await t.request("GET", "/api/v1/config"), 200);
    check("H3 config has host.id and apiBase", config.host.id === HUB_ID && config.host.apiBase === "/api/v1", json(config.host));
    checkJson("H4 GET /status", await t.request("GET", "/api/v1/status"), 200, { cpm: { cpmId: SPACE, connected: true } });
    const ent = checkJson("H5 GET /entities → 200", await t.request("GET", "/api/v1/entities"), 200);
    check("H5 entities list sequences and instances", Array.isArray(ent.sequences) && Array.isArray(ent.instances), json(Object.keys(ent)));
    const audit = await t.stream("GET", "/api/v1/audit");
    await until(() => audit.text().includes("\n"), 2000, "audit replay");
    const recs = lines(audit.text()).map((l) => JSON.parse(l));
    check("H7 audit records with STH opCodes (POST start = 10117)", recs.some((r) => r.opCode === 10117 && r.opState === "END") &&
        recs.every((r) => typeof r.requestId === "string" && r.requestorId === "system"), json(recs.slice(-3)));
    audit.close();
    checkJson("unknown route → 404 Not Found", await t.request("GET", "/api/v1/nothing/here"), 404, { error: "Not Found" });
    checkJson("unknown method on a known path → 404 Not Found", await t.request("PATCH", "/api/v1/sequences"), 404, { error: "Not Found" });
    checkJson("duplicate slashes are collapsed", await t.request("GET", "//api/v1//status/"), 200);
    const opt = await t.request("OPTIONS", "/api/v1/sequences");
    check("OPTIONS → CORS answer", opt.status === 200 && opt.headers["access-control-allow-methods"] === "DELETE, POST, GET, OPTIONS");
}

// A local HTTP proxy onto new tunnel channels (what a manager does for .../sth/<hub>/api/v1),
// so the real @scramjet/api-client 0.26.1 can be pointed at the peer.
function proxyTo(t) {
    const server = http.createServer((req, res) => {
        const channel = t.mux.multiplex();
        const up = http.request({ method: req.method, path: req.url, headers: { ...req.headers, connection: "close" }, createConnection: () => channel });
        up.on("response", (ur) => { res.writeHead(ur.statusCode, ur.headers); res.flushHeaders(); ur.pipe(res); });
        up.on("error", () => res.destroy());
        res.on("close", () => { if (!res.writableFinished) channel.destroy(); });
        req.pipe(up);
    });
    server.on("checkContinue", (req, res) => server.emit("request", req, res));
    return new Promise((r) => server.listen(0, "127.0.0.1", () => r(server)));
}

function collect(readable) {
    const c = { text: "", ended: false };
    readable.on("data", (d) => { c.text += d; });
    readable.on("end", () => { c.ended = true; });
    return c;
}

async function checkRealClient(t) {
    const { HostClient } = require("@scramjet/api-client");
    const server = await proxyTo(t);
    try {
        const host = new HostClient(`http://127.0.0.1:${server.address().port}/api/v1`);
        const seq = await host.sendSequence(Readable.from([packageOf({ name: "via-client", version: "9.9.9" })]));
        check("api-client: sendSequence + getInfo", (await seq.getInfo()).config.name === "via-client");
        const inst = await seq.start({ appConfig: {}, args: [] });
        const out = collect(await inst.getStream("output"));
        await inst.sendInput(Readable.from(["client-input\n"]), {}, { type: "text/plain", end: true });
        await until(() => out.text.includes("client-input\n") && out.text.includes("{\"tick\":1}"), 3000, "client output");
        check("api-client: output stream and sendInput", true);
        await inst.sendEvent("ev", "x");
        check("api-client: sendEvent + getEvent", (await inst.getEvent("ev")) === "x");
        check("api-client: kill → killing", (await inst.kill()).status === "killing");
        await until(() => out.ended, 3000, "client output end");
        check("api-client: the output stream ends after the kill", true);
        const reader = collect(await host.getNamedData("client-topic", { headers: { "content-type": "text/plain" } }));
        await host.sendNamedData("client-topic", Readable.from(["via topic"]), {}, "text/plain", true);
        await until(() => reader.text === "via topic", 3000, "client topic data");
        check("api-client: sendNamedData → getNamedData", true);
        check("api-client: deleteSequence", (await host.deleteSequence(seq.id)).id === seq.id);
        const err = await host.getSequence(seq.id).then(() => null, (e) => e);
        check("api-client: deleted sequence → NOT_FOUND", err && err.code === "NOT_FOUND", err && err.code);
    } finally {
        server.close();
    }
}

// After a reconnect the new control channel's snapshot carries one TOPIC per topic.
async function checkTopicSnapshot(mgr, t) {
    t.close();
    const t2 = await until(() => mgr.tunnels[1] && mgr.tunnels[1].ready && mgr.tunnels[1], 5000, "second tunnel");
    const control = t2.openControl();
    const topics = parse(await t2.request("GET", "/api/v1/topics"));
    await until(() => messagesOf(control, 7007).length >= topics.length, 3000, "topic snapshot");
    const snap = messagesOf(control, 7007);
    check("TOPIC snapshot on control open: one {contentType, localProvider, topic, topicName, status} per topic",
        snap.length === topics.length && snap.every((m, i) => json(m) === json({ ...topics[i], status: "add" })), json(snap));
    check("INSTANCES snapshot lists running and completed instances", messagesOf(control, 7003)[0].instances.length >= 6);
}

/* ------------------------------------------------------------------------------------------ */

async function run(kit) {
    ({ check, until, sleep } = kit);
    const mgr = new kit.FakeManager([kit.KEY]);
    const port = await mgr.listen();
    const peer = new kit.PeerProcess(kit.baseArgs(port, ["--platform-api-key", kit.KEY, "--id", HUB_ID, "--tick-ms", "100",
        "--reconnection-delay", "100", "--quiet"]));
    try {
        const t = await until(() => mgr.tunnels[0] && mgr.tunnels[0].ready && mgr.tunnels[0], 5000, "tunnel");
        const control = t.openControl();
        await until(() => control.messages.length >= 4, 5000, "control snapshot");
        const seqId = await checkSequences(t, control);
        await checkInstances(t, control, seqId);
        await checkTopicCreate(t, control);
        const readers = await checkTopicData(t, control);
        await checkNdjsonTopics(t);
        await checkTopicDelete(t, control, readers);
        await checkInstanceTopics(t, control);
        await checkHub(t);
        await checkRealClient(t);
        await checkTopicSnapshot(mgr, t);
        check("hub API: no BPMux errors on the manager side", !t.muxError, String(t.muxError));
    } finally {
        peer.kill();
        mgr.close();
    }
}

module.exports = { run, tarGz };
