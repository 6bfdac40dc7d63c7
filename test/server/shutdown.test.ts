import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { ROOT } from "../paths.js";
import { readEvents } from "./helpers.js";

test("SIGTERM: the CLI stops accepting, lets a running stream finish cleanly, and exits within 5 s", async () => {
  const child = spawn(process.execPath, [join(ROOT, "bin/frugal.js"), "serve", "--port", "0", "--threads", "1"], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr.on("data", (c) => {
        log += c;
        const m = /on (http:\/\/127\.0\.0\.1:\d+)\//.exec(log);
        if (m) resolve(m[1]!);
      });
      child.on("exit", () => reject(new Error(`the server exited: ${log}`)));
    });
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 300, temperature: 0, stream: true }),
    });
    assert.equal(res.status, 200);
    const reading = readEvents(res);
    const t0 = performance.now();
    child.kill("SIGTERM");
    const { events, done } = await reading;
    assert.ok(done, "the stream ends with [DONE]");
    const last = events.at(-1);
    assert.ok(last.choices?.[0]?.finish_reason || last.error, `the stream ends with a finish reason or an error event: ${JSON.stringify(last)}`);
    assert.equal(await exited, 0);
    assert.ok(performance.now() - t0 < 5000, `exited after ${performance.now() - t0} ms`);
    assert.match(log, /SIGTERM/);
    await assert.rejects(fetch(`${url}/health`), "nothing listens any more");
  } finally {
    child.kill("SIGKILL");
  }
});

test("a stream still running when the grace period ends gets an error event and [DONE]", async () => {
  const { startServer } = await import("./helpers.js");
  const s = await startServer();
  try {
    const res = await fetch(`${s.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ prompt: "Once", max_tokens: 500, temperature: 0, stream: true }),
    });
    const reading = readEvents(res);
    await s.server.close(20);
    const { events, done } = await reading;
    assert.ok(done);
    assert.equal(events.at(-1).error?.code, "shutting_down");
    assert.equal(s.server.scheduler.activeSequences, 0);
  } finally {
    s.model.dispose();
  }
});
