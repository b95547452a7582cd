"use strict";
// Minimal Scramjet Sequence with no dependencies.
//
// Output: one text line every 200 ms ("hello 1", "hello 2", ...), plus an
// "echo: <data>" line for every chunk that arrives on the instance input
// (POST /instance/:id/input). Each tick is also written to stdout, so
// GET /instance/:id/stdout has data.
//
// args[0]: how many "hello" lines to print (0 or missing = until killed)
// args[1]: the prefix, "hello" by default
const { PassThrough } = require("stream");

module.exports = function helloSeq(input, count, prefix) {
    const max = Number(count) || 0;
    const word = typeof prefix === "string" && prefix ? prefix : "hello";
    const out = new PassThrough();
    let n = 0;

    // Reading the input does not hold up the output; the runner starts
    // feeding `input` only after a client posts something to /input.
    (async () => {
        try {
            for await (const chunk of input) {
                out.write(`echo: ${String(chunk).trim()}\n`);
            }
        } catch (e) {
            process.stderr.write(`input error: ${e && e.message}\n`);
        }
    })();

    const timer = setInterval(() => {
        n += 1;
        const line = `${word} ${n}`;
        console.log(`stdout ${line}`);
        out.write(`${line}\n`);
        if (max && n >= max) {
            clearInterval(timer);
            out.end();
        }
    }, 200);

    if (this && typeof this.addStopHandler === "function") {
        this.addStopHandler(() => { clearInterval(timer); out.end(); });
    }
    return out;
};
