#!/usr/bin/env node
"use strict";
// Packs a Sequence directory into a gzip tar with the files at the archive
// root (like `si seq pack`): node pack-seq.js [SRC_DIR] [OUT_FILE]
// Defaults: ./hello-seq -> ./hello-seq.tar.gz. Uses the system `tar`.
const { execFileSync } = require("child_process");
const fs = require("fs");
const path = require("path");

function packSequence(srcDir, outFile) {
    const src = path.resolve(srcDir);
    const out = path.resolve(outFile);
    if (!fs.existsSync(path.join(src, "package.json"))) {
        throw new Error(`${src} has no package.json`);
    }
    const entries = fs.readdirSync(src).filter((f) => !f.endsWith(".tar.gz"));
    execFileSync("tar", ["-czf", out, "-C", src, ...entries], { stdio: ["ignore", "inherit", "inherit"] });
    return out;
}

module.exports = { packSequence };

if (require.main === module) {
    const [src = path.join(__dirname, "hello-seq"), out = path.join(__dirname, "hello-seq.tar.gz")] = process.argv.slice(2);
    const file = packSequence(src, out);
    process.stdout.write(`${file}\n`);
}
