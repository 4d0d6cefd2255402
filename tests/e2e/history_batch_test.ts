/**
 * Messages that reach the server in one read are stored in one write to the
 * history (issue 15: "a tick's messages are written in one transaction"), on
 * every runtime (`HUBBUB_TARGET`). Bun runs microtasks after each inbound
 * message, so a flush per microtask was one SQLite transaction per message
 * there, and rooms of 10 ran at 0.68× of the memory store. And the log is
 * checkpointed off the event loop.
 */
import assert from "node:assert/strict";
import { waitFor, withTimeout } from "../_helpers.ts";
import { Opcode, rawConnect, type RawSocket, textFrames, writeAll } from "../_raw_ws.ts";
import { metric, spawnServer, TARGET, waitForMetric } from "./_server.ts";

const COUNT = 200;

/** The native frames `commands`, masked, back to back in one buffer. */
const burst = (commands: readonly object[]) =>
  textFrames(commands.map((command) => JSON.stringify(command)));

/** Reads frames until one has a line of `type`; returns every line read. */
async function readUntil(raw: RawSocket, type: string): Promise<Record<string, unknown>[]> {
  const lines: Record<string, unknown>[] = [];
  for (;;) {
    const frame = await withTimeout(raw.read(), `a ${type} frame`);
    assert.ok(frame !== null && frame.opcode === Opcode.Text, `a text frame before ${type}`);
    for (const line of new TextDecoder().decode(frame.payload).split("\n")) {
      lines.push(JSON.parse(line));
    }
    if (lines.some((line) => line.type === type)) return lines;
  }
}

Deno.test(`history (${TARGET}): ${COUNT} broadcasts in one TCP write are stored in a few transactions, not one each, and checkpointed on a worker`, async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "hubbub-batch-" });
  try {
    await using server = await spawnServer({
      args: ["--data-dir", dataDir, "--rate-limit", "100000", "--rate-burst", "100000"],
      allowDirs: [dataDir],
    });
    await using raw = await rawConnect(server.port);
    await readUntil(raw, "hello");
    await writeAll(raw.conn, burst([{ type: "login", name: "flood" }]));
    await readUntil(raw, "welcome");
    await writeAll(raw.conn, burst([{ type: "join", channel: "room" }]));
    await readUntil(raw, "joined");
    const before = (await metric(server, "hubbub_history_writes_total")) ?? 0;

    // 200 characters each: 40 KB that reach the database file only through a checkpoint.
    const texts = Array.from({ length: COUNT }, (_, i) => `m${i + 1}-${"x".repeat(200)}`);
    await writeAll(
      raw.conn,
      burst(texts.map((text) => ({ type: "broadcast", channel: "room", text }))),
    );
    await waitForMetric(server, "hubbub_messages_stored_total", COUNT);
    const writes = ((await metric(server, "hubbub_history_writes_total")) ?? 0) - before;

    // The kernel may hand the burst over in a few reads; one transaction per message is the bug.
    assert.ok(writes <= COUNT / 10, `${COUNT} messages took ${writes} writes`);
    // And batching changes nothing a member sees: every message, in order, numbered 1..COUNT.
    const seen: Record<string, unknown>[] = [];
    while (seen.length < COUNT) {
      seen.push(...(await readUntil(raw, "message")).filter((line) => line.type === "message"));
    }
    assert.deepEqual(seen.map((m) => m.text), texts);
    assert.deepEqual(seen.map((m) => m.seq), texts.map((_, i) => i + 1));
    // The log is checkpointed on a worker thread, in the compiled binary too: the writer's own
    // connection never does (before, it stalled the event loop for 30-100 ms of disk syncs).
    const database = `${dataDir}/history.db`;
    // (The worker checkpoints once a second; a busy machine may delay it.)
    await waitFor("a checkpoint", async () => (await Deno.stat(database)).size > 40_000, 20_000);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
