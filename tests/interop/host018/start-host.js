#!/usr/bin/env node
"use strict";
/*
 * Starts the real Scramjet Transform Hub host of release 0.18.7
 * (npm @scramjet/host@0.18.7) with the "process" runtime adapter: no Docker,
 * no Kubernetes, not connected to any manager (no cpmUrl).
 *
 *   node start-host.js --port 8000 [--host 127.0.0.1] [--id ID]
 *                      [--sequences-root DIR] [--instances-port N]
 *                      [--log-level TRACE|DEBUG|INFO|WARN|ERROR]
 *                      [--python3 /path/to/python3.10]
 *
 * stdout: exactly one JSON line {"event":"listening","port":N,...} once
 *         GET <apiBase>/version answers; nothing else.
 * stderr: the Hub's own log (it writes to process.stdout; we redirect that).
 * SIGTERM/SIGINT: kills the instances, closes the servers, exits 0.
 */
const fs = require("fs");
const net = require("net");
const os = require("os");
const path = require("path");
const http = require("http");
const { parseArgs } = require("util");

// The 0.18.7 Host pipes its pretty log into process.stdout (and, with
// DEVELOPMENT set, the instances' stdio). Keep the real stdout (fd 1) for our
// one JSON line and hand every other writer stderr.
function emit(obj) {
    fs.writeSync(1, `${JSON.stringify(obj)}\n`);
}
// The Host's pretty printer always adds ANSI colours: strip them.
const { Writable } = require("stream");
const ANSI = /\x1b\[[0-9;]*m/g;
const logSink = new Writable({
    decodeStrings: false,
    write(chunk, _enc, cb) {
        const text = String(chunk).replace(ANSI, "");
        if (process.stderr.write(text)) cb();
        else process.stderr.once("drain", cb);
    },
});
logSink.fd = 2;
logSink.isTTY = false;
Object.defineProperty(process, "stdout", {
    configurable: true,
    enumerable: true,
    get: () => logSink,
});

function log(...args) {
    process.stderr.write(`${new Date().toISOString()} [start-host] ${args.join(" ")}\n`);
}

function freePort(host) {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.on("error", reject);
        srv.listen(0, host, () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

function getJSON(host, port, urlPath, timeoutMs = 2000) {
    return new Promise((resolve, reject) => {
        const req = http.get({ host, port, path: urlPath, timeout: timeoutMs, agent: false }, (res) => {
            let body = "";
            res.setEncoding("utf8");
            res.on("data", (d) => { body += d; });
            res.on("end", () => {
                if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
                try { resolve(JSON.parse(body)); } catch (e) { reject(e); }
            });
        });
        req.on("timeout", () => req.destroy(new Error("timeout")));
        req.on("error", reject);
    });
}

async function main() {
    const { values } = parseArgs({
        options: {
            port: { type: "string", default: "8000" },
            host: { type: "string", default: "127.0.0.1" },
            id: { type: "string" },
            "sequences-root": { type: "string" },
            "instances-port": { type: "string" },
            "log-level": { type: "string", default: "TRACE" },
            python3: { type: "string" },
            help: { type: "boolean", short: "h" },
        },
        strict: true,
    });
    if (values.help) {
        process.stderr.write("usage: node start-host.js --port 8000 [--host 127.0.0.1] [--id ID] " +
            "[--sequences-root DIR] [--instances-port N] [--log-level LEVEL] [--python3 PATH]\n");
        return;
    }

    const hostname = values.host;
    let port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad --port ${values.port}`);
    // sth-config's merge() drops a 0 (it would fall back to 8000): pick one.
    if (port === 0) port = await freePort(hostname);

    // Runners connect back to this TCP port on 127.0.0.1 (8 sockets each).
    // The 0.18.7 SocketServer binds it on all interfaces; there is no option.
    const instancesServerPort = values["instances-port"]
        ? Number(values["instances-port"])
        : await freePort();

    let sequencesRoot = values["sequences-root"];
    let ownSequencesRoot = false;
    if (sequencesRoot) {
        sequencesRoot = path.resolve(sequencesRoot);
        fs.mkdirSync(sequencesRoot, { recursive: true });
    } else {
        sequencesRoot = fs.mkdtempSync(path.join(os.tmpdir(), "sth018-seqs-"));
        ownSequencesRoot = true;
    }

    // The process adapter runs Python Sequences as `/usr/bin/env python3
    // .../python-runner/runner.py` with only PATH passed on. The 0.18.7 python
    // runner breaks on Python >= 3.11 (it drops asyncio StreamWriters, whose
    // __del__ closes the socket), so allow pointing `python3` elsewhere.
    let shimDir;
    if (values.python3) {
        shimDir = fs.mkdtempSync(path.join(os.tmpdir(), "sth018-py-"));
        fs.symlinkSync(path.resolve(values.python3), path.join(shimDir, "python3"));
        process.env.PATH = `${shimDir}${path.delimiter}${process.env.PATH || ""}`;
    }

    // Loaded after the stdout redirect above.
    const { ConfigService } = require("@scramjet/sth-config");
    const { startHost } = require("@scramjet/host");

    const sthConfig = new ConfigService({
        // Host 0.18.7 compares ObjLogger levels lowercased with this value.
        logLevel: values["log-level"].toLowerCase(),
        logColors: false,
        cpmUrl: "",
        runtimeAdapter: "process",
        sequencesRoot,
        identifyExisting: true,
        host: {
            hostname,
            port,
            apiBase: "/api/v1",
            instancesServerPort,
            id: values.id,
            infoFilePath: path.join(sequencesRoot, "..", `sth018-id-${port}.json`),
        },
    }).getConfig();

    log(`starting @scramjet/host 0.18.7 on ${hostname}:${port}, instances port ${instancesServerPort},`,
        `sequences root ${sequencesRoot}`);

    // startHost(apiServerConfig, sthConfig, hostOptions) -> Promise<Host>
    const host = await startHost({}, sthConfig, { identifyExisting: true });
    const actualPort = host.api.server.address().port;

    // Wait until the API really answers.
    let version;
    for (let i = 0; ; i++) {
        try {
            version = await getJSON(hostname, actualPort, "/api/v1/version");
            break;
        } catch (e) {
            if (i > 50) throw new Error(`API did not answer: ${e.message}`);
            await new Promise((r) => setTimeout(r, 100));
        }
    }

    let stopping = false;
    const shutdown = async (sig) => {
        if (stopping) return;
        stopping = true;
        log(`${sig} received, stopping`);
        const force = setTimeout(() => {
            log("stop timed out, forcing exit");
            finish();
        }, 8000);
        force.unref();

        // Runner processes, to be sure none outlives us.
        const runners = Object.values(host.instancesStore || {})
            .map((c) => c && c._instanceAdapter && c._instanceAdapter.runnerProcess)
            .filter(Boolean);
        // Streaming clients (output, log, topics) would keep server.close() waiting.
        if (typeof host.api.server.closeAllConnections === "function") {
            host.api.server.closeAllConnections();
        }
        try {
            await Promise.race([host.stop(), new Promise((r) => setTimeout(r, 5000))]);
            log("host stopped");
        } catch (e) {
            log("error while stopping:", e && e.stack);
        }
        for (const p of runners) {
            if (p.exitCode === null && p.signalCode === null) {
                try { p.kill("SIGKILL"); } catch (_) { /* gone */ }
            }
        }
        finish();
    };
    const finish = () => {
        if (shimDir) {
            try { fs.rmSync(shimDir, { recursive: true, force: true }); } catch (_) { /* ignore */ }
        }
        if (ownSequencesRoot) {
            try { fs.rmSync(sequencesRoot, { recursive: true, force: true }); } catch (_) { /* ignore */ }
        }
        process.exit(0);
    };
    process.on("SIGTERM", () => shutdown("SIGTERM"));
    process.on("SIGINT", () => shutdown("SIGINT"));

    emit({
        event: "listening",
        port: actualPort,
        host: hostname,
        apiBase: "/api/v1",
        instancesServerPort,
        sequencesRoot,
        version: version && version.version,
        pid: process.pid,
    });
}

main().catch((e) => {
    log("failed:", e && e.stack ? e.stack : e);
    process.exit(1);
});
