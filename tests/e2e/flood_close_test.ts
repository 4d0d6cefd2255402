/**
 * A flood whose whole burst reaches the server in one TCP write (issue 13
 * item 10): the client still hears why it is cut off — its `rate_limited`
 * errors, then the 4429 close — on every runtime (`HUBBUB_TARGET`).
 */
import assert from "node:assert/strict";
import { withTimeout } from "../_helpers.ts";
import { Opcode, rawConnect, textFrames, writeAll } from "../_raw_ws.ts";
import { spawnServer, TARGET } from "./_server.ts";

/** `count` masked ping frames, back to back in one buffer. */
const burst = (count: number) => textFrames(Array(count).fill('{"type":"ping"}'));

Deno.test(`flood (${TARGET}): a burst in one write still ends with rate_limited errors and 4429`, async (t) => {
  await using server = await spawnServer({
    args: ["--rate-limit", "5", "--rate-burst", "5", "--connect-rate", "10000"],
  });
  for (const count of [50, 500, 5000]) {
    await t.step(`${count} pings`, async () => {
      await using raw = await rawConnect(server.port);
      assert.equal((await raw.read())?.opcode, Opcode.Text, "the hello");
      const bytes = burst(count);
      // One write call: the kernel hands the server as much of it per read as fits.
      await writeAll(raw.conn, bytes);
      const seen: string[] = [];
      let close: number | string = "the connection ended without a close frame";
      for (;;) {
        const frame = await withTimeout(raw.read(), "the next frame").catch((error) => `${error}`);
        if (frame === null || typeof frame === "string") {
          if (typeof frame === "string") close = frame;
          break;
        }
        if (frame.opcode === Opcode.Close) {
          close = (frame.payload[0] << 8) | frame.payload[1];
          break;
        }
        for (const line of new TextDecoder().decode(frame.payload).split("\n")) {
          const parsed = JSON.parse(line);
          seen.push(parsed.type === "error" ? parsed.code : parsed.type);
        }
      }
      assert.deepEqual(seen, [...Array(5).fill("pong"), ...Array(9).fill("rate_limited")]);
      assert.equal(close, 4429);
    });
  }
});
