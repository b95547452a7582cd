"use strict";
/*
 * One emulated Instance of the Hub peer (no process behind it). While running it ticks every
 * `tickMs`: `{"tick":n}\n` on output (NDJSON), `tick n\n` on stdout and a JSON log line on log.
 * Input is echoed to output and stdin to stdout, so tests can observe what they sent. Events
 * sent with _event come back as events of the same name (event/once/events routes).
 * Lifecycle bookkeeping (control messages, sequence records) belongs to hub-api.js.
 */

const { Broadcast } = require("./hub-model");

const STREAMS = ["output", "stdout", "stderr", "log"];

class EmulatedInstance {
    // params: the start payload (already validated); sequence: {id, config, name?, location};
    // hooks: { output(buf), log(line) } called for every output chunk / log line.
    constructor(id, params, sequence, opts, hooks) {
        const now = new Date().toISOString();
        this.id = id;
        this.appConfig = params.appConfig;
        this.args = params.args;
        this.provides = params.outputTopic || "";
        this.requires = params.inputTopic || undefined;
        this.sequence = sequence;
        this.created = now;
        this.started = now;
        this.ended = undefined;
        this.status = "running";
        this.terminated = undefined;
        this.hooks = hooks;
        this.opts = opts;
        this.streams = {};
        for (const name of STREAMS) this.streams[name] = new Broadcast(opts.streamBuffer);
        this.events = new Map();
        this.inputType = undefined;
        this.removeImmediately = false;
        this.ticks = 0;
        this.tickTimer = opts.tickMs > 0 ? setInterval(() => this.tick(), opts.tickMs) : null;
        this.endTimer = null;
        this.endAt = Infinity;
    }

    // The Instance object of GET /instance/:id (spec §3.5.5; key order and absent fields as in
    // the capture).
    toJSON() {
        const o = { id: this.id, appConfig: this.appConfig, args: this.args, provides: this.provides };
        if (this.requires !== undefined) o.requires = this.requires;
        o.sequence = this.sequence;
        o.created = this.created;
        o.started = this.started;
        if (this.ended !== undefined) o.ended = this.ended;
        o.status = this.status;
        if (this.terminated !== undefined) o.terminated = this.terminated;
        return o;
    }

    get running() {
        return this.ended === undefined;
    }

    health() {
        const mem = process.memoryUsage();
        return {
            healthy: this.running,
            cpuTotalUsage: Math.round(process.cpuUsage().user / 1000),
            memoryUsage: mem.rss,
            memoryMaxUsage: mem.rss,
            networkRx: 0,
            networkTx: 0,
        };
    }

    /* ---- data ------------------------------------------------------------------------- */

    tick() {
        const n = this.ticks++;
        this.emitOutput(Buffer.from(`${JSON.stringify({ tick: n })}\n`));
        this.streams.stdout.write(Buffer.from(`tick ${n}\n`));
        this.logLine(`tick ${n}`);
    }

    emitOutput(chunk) {
        this.streams.output.write(chunk);
        this.hooks.output(chunk);
    }

    logLine(msg) {
        const line = `${JSON.stringify({ level: "INFO", msg, ts: Date.now(), from: "Sequence" })}\n`;
        this.streams.log.write(Buffer.from(line));
        this.hooks.log(line);
    }

    // input → output, stdin → stdout.
    echo(target, chunk) {
        if (!this.running) return;
        if (target === "input") this.emitOutput(chunk); else this.streams.stdout.write(chunk);
    }

    /* ---- events ----------------------------------------------------------------------- */

    eventState(name) {
        let ev = this.events.get(name);
        if (!ev) {
            ev = { has: false, last: undefined, waiters: new Set(), streams: new Set() };
            this.events.set(name, ev);
        }
        return ev;
    }

    // An event sent to the instance comes straight back under the same name.
    emitEvent(name, message) {
        const ev = this.eventState(name);
        ev.has = true;
        ev.last = message;
        const waiters = [...ev.waiters];
        ev.waiters.clear();
        for (const w of waiters) w(message);
        const line = `${JSON.stringify(message === undefined ? {} : message)}\n`;
        for (const s of ev.streams) s.write(line);
    }

    // onEvent(name, res, cb): cb(message) on the next event; removed when res closes.
    nextEvent(name, res, cb) {
        const ev = this.eventState(name);
        ev.waiters.add(cb);
        res.on("close", () => ev.waiters.delete(cb));
    }

    lastEvent(name) {
        const ev = this.events.get(name);
        return ev && ev.has ? { message: ev.last } : null;
    }

    attachEventStream(name, res) {
        const ev = this.eventState(name);
        if (!this.running) return void res.end();
        ev.streams.add(res);
        res.on("close", () => ev.streams.delete(res));
    }

    /* ---- end -------------------------------------------------------------------------- */

    // Run `fn` after `ms` unless an earlier end is already scheduled.
    scheduleEnd(ms, fn) {
        const at = Date.now() + ms;
        if (at >= this.endAt) return;
        clearTimeout(this.endTimer);
        this.endAt = at;
        this.endTimer = setTimeout(fn, ms);
    }

    finish(reason, exitcode) {
        clearInterval(this.tickTimer);
        clearTimeout(this.endTimer);
        this.tickTimer = null;
        this.ended = new Date().toISOString();
        this.status = "completed";
        this.terminated = { exitcode, reason };
        for (const name of STREAMS) this.streams[name].end();
        for (const ev of this.events.values()) {
            for (const s of ev.streams) s.end();
            ev.streams.clear();
        }
    }
}

module.exports = { EmulatedInstance, STREAMS };
