#!/usr/bin/env node
// Drives the JS clients of the real STH 1.0.1 release (@scramjet/middleware-api-client,
// @scramjet/api-client with its ManagerClient and HostClient, @scramjet/client-utils) through
// a Space manager, the way a user of 1.0.1 calls them, and prints one JSON object with what
// every call returned. The clients come from the STH dist folder given with --dist (never from
// ./node_modules, which holds the 0.26.1 generation).
//
// Usage: node real-client-flow.js --dist DIST --api http://127.0.0.1:9000/api/v1 --token T
//                                 --hub HUB --package hello.tar.gz
"use strict";

const fs = require("fs");
const path = require("path");
const { Readable } = require("stream");

function arg(name) {
    const i = process.argv.indexOf(`--${name}`);
    if (i < 0 || i + 1 >= process.argv.length) throw new Error(`--${name} is required`);
    return process.argv[i + 1];
}

const dist = path.resolve(arg("dist"));
const { ClientUtils } = require(path.join(dist, "client-utils"));
const { MiddlewareClient } = require(path.join(dist, "middleware-api-client"));
const clientVersion = require(path.join(dist, "api-client", "package.json")).version;

/** Reads a stream until `done(lines)` is true or `ms` pass; returns the non-empty lines. */
async function readLines(stream, done, ms = 10000) {
    const lines = [];
    let pending = "";
    const timer = setTimeout(() => stream.destroy(), ms);
    try {
        for await (const chunk of stream) {
            pending += chunk.toString();
            const parts = pending.split("\n");
            pending = parts.pop();
            lines.push(...parts.filter((l) => l.trim()));
            if (done(lines)) break;
        }
    } catch (err) {
        // destroyed by the timer: return what arrived
    } finally {
        clearTimeout(timer);
        stream.destroy();
    }
    return lines;
}

async function until(what, check, ms = 10000) {
    const deadline = Date.now() + ms;
    for (;;) {
        const got = await check();
        if (got) return got;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((res) => setTimeout(res, 100));
    }
}

async function main() {
    const token = arg("token");
    const hubId = arg("hub");
    const packagePath = arg("package");
    const out = { clientVersion };

    ClientUtils.setDefaultHeaders({ Authorization: `Bearer ${token}` });
    const middleware = new MiddlewareClient(arg("api"));

    // Middleware level
    out.middlewareVersion = await middleware.getVersion();
    out.spaces = await middleware.getManagers();
    const spaceId = out.spaces[0].id;
    const space = middleware.getManagerClient(spaceId);

    // Space level
    out.managerVersion = await space.getVersion();
    out.hosts = await space.getHosts();
    out.load = await space.getLoad();
    out.config = await space.getConfig();

    // Hub through the Space: a Sequence, an Instance, its output
    const host = space.getHostClient(hubId);
    out.hubVersion = await host.getVersion();
    const sequence = await host.sendSequence(fs.createReadStream(packagePath));
    out.sequenceId = sequence.id;
    const instance = await sequence.start({ appConfig: { from: "js" } });
    out.instanceId = instance.id;
    out.outputLines = await readLines(await instance.getStream("output"), (l) => l.length >= 2);

    out.spaceSequences = await space.getSequences();
    out.spaceAllSequences = await space.getAllSequences();
    out.spaceInstances = await space.getInstances();

    // Space topic: a reader first, then a producer; the reader gets what was sent
    const topic = "js-names";
    const reading = space
        .getNamedData(topic)
        .then((stream) => readLines(stream, (l) => l.includes("Bob")));
    await new Promise((res) => setTimeout(res, 500));
    out.sendNamedData = await space
        .sendNamedData(topic, Readable.from(["Alice\n", "Bob\n"]), {}, undefined, false)
        .then(() => "ok");
    out.topicLines = await reading;
    out.topics = await space.getTopics();

    // Store
    out.storePut = await space.putStoreItem(fs.createReadStream(packagePath), "js-store");
    out.storeItems = await space.getStoreItems();
    await space.deleteStoreItem("js-store");
    out.storeAfterDelete = await space.getStoreItems();
    out.storePutNoId = await space.putStoreItem(fs.createReadStream(packagePath));
    await space.clearStore();
    out.storeAfterClear = await space.getStoreItems();

    // Audit and log streams (replay, then live; read a little and let go)
    out.spaceAudit = await readLines(await space.getAuditStream(), (l) => l.length >= 3, 3000);
    out.middlewareAudit = await readLines(
        await middleware.getAuditStream(),
        (l) => l.length >= 3,
        3000,
    );
    out.spaceLog = await readLines(await space.getLogStream(), (l) => l.length >= 3, 3000);

    out.kill = await instance.kill();

    // Access keys
    out.keyCreated = await middleware.createAccessKey(spaceId, { description: "  js key  " });
    out.keysListed = await middleware.listAccessKeys(spaceId);
    out.keyRevoked = await middleware.revokeAccessKey(spaceId, String(out.keyCreated.created));
    out.keysAfterRevoke = await middleware.listAccessKeys(spaceId);
    out.revokeAll = await middleware.revokeAllAccessKeys(spaceId);
    out.keysAfterRevokeAll = await middleware.listAccessKeys(spaceId);
    out.hostsAfterRevokeAll = await until("the Hub to be disconnected", async () => {
        const hosts = await space.getHosts();
        const hub = hosts.find((h) => h.id === hubId);
        return hub && !hub.isConnectionActive ? hosts : null;
    });

    process.stdout.write(JSON.stringify(out) + "\n");
}

main().then(
    () => process.exit(0),
    (err) => {
        process.stderr.write(`real client flow failed: ${err && (err.stack || err.message || err)}\n`);
        if (err && err.body) process.stderr.write(`body: ${JSON.stringify(err.body)}\n`);
        process.exit(1);
    },
);
