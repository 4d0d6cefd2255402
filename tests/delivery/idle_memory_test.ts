/**
 * Idle memory per connection (issue 17, goal 5), measured in a fresh
 * process: 10,000 logged-in sessions on fake sockets. A hub that cleared and
 * reused its per-flush map of batches instead of making a new one left the
 * process 2.6 KiB more resident per session after such a storm (9.0 KiB
 * against 6.4) while V8's heap was the same: this test would have caught it.
 */
import assert from "node:assert/strict";

/** Resident memory per idle session this test allows (6.3–6.8 KiB measured; the bug: 8.7–9.1). */
const MAX_RSS_KIB = 7.8;

Deno.test("idle memory: 10,000 idle sessions add less than 7.8 KiB of resident memory each", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      "--v8-flags=--expose-gc",
      new URL("./_idle_sessions.ts", import.meta.url).pathname,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  const { rssKiB, heapKiB } = JSON.parse(new TextDecoder().decode(output.stdout).trim());
  assert.ok(heapKiB < 2, `V8 heap per session: ${heapKiB.toFixed(2)} KiB`);
  assert.ok(rssKiB < MAX_RSS_KIB, `resident memory per session: ${rssKiB.toFixed(2)} KiB`);
});
