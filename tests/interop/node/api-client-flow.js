#!/usr/bin/env node
// Drives the real @scramjet/api-client 0.26.1 family (MiddlewareClient → ManagerClient →
// HostClient → SequenceClient → InstanceClient) through a Space manager, the way the
// docs tell users to, and prints one JSON object with what each step returned.
// Usage: node api-client-flow.js --api http://127.0.0.1:9000/api/v1 --token T --hub H --package P
"use strict";

const fs = require("fs");
const { ClientUtils } = require("@scramjet/client-utils");
const { MiddlewareClient } = require("@scramjet/middleware-api-client");

function arg(name) {
    const i = process.argv.indexOf(`--${name}`);
    if (i < 0 || i + 1 >= process.argv.length) throw new Error(`--${name} is required`);
    return process.argv[i + 1];
}

async function readLines(stream, count) {
    const lines = [];
    let pending = "";
    for await (const chunk of stream) {
        pending += chunk.toString();
        const parts = pending.split("\n");
        pending = parts.pop();
        lines.push(...parts.filter((l) => l.trim()));
        if (lines.length >= count) break;
    }
    if (typeof stream.destroy === "function") stream.destroy();
    return lines.slice(0, count);
}

async function main() {
    ClientUtils.setDefaultHeaders({ Authorization: `Bearer ${arg("token")}` });
    const middleware = new MiddlewareClient(arg("api"));
    const out = {};
    out.spaces = await middleware.getManagers();
    const space = middleware.getManagerClient(out.spaces[0].id);
    out.managerVersion = await space.getVersion();
    out.hubs = await space.getHosts();
    const host = space.getHostClient(arg("hub"));
    out.hubVersion = await host.getVersion();
    const sequence = await host.sendSequence(fs.createReadStream(arg("package")));
    out.sequenceId = sequence.id;
    const instance = await sequence.start({ appConfig: {}, args: [] });
    out.instanceId = instance.id;
    out.instanceInfo = await instance.getInfo();
    const output = await instance.getStream("output");
    out.outputLines = await readLines(output, 2);
    out.spaceInstances = await space.getInstances();
    out.kill = await instance.kill();
    process.stdout.write(JSON.stringify(out) + "\n");
}

main().then(
    () => process.exit(0),
    (err) => {
        process.stderr.write(`api-client flow failed: ${err && (err.stack || err.message || err)}\n`);
        if (err && err.body) process.stderr.write(`body: ${JSON.stringify(err.body)}\n`);
        process.exit(1);
    },
);
