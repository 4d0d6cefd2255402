/**
 * The one-world scenario: a native, a wschat, a wsify and a login-chat client
 * in `lobby` of the server at `base` (`ws://host:port`), the dialects mounted
 * under /compat/; `native` is a native client logged in as "nat" in lobby.
 */
import assert from "node:assert/strict";
import type { TestClient } from "../_helpers.ts";
import { openDialectClient } from "./_client.ts";

/** Runs the scenario; every client it opens is closed before it returns. */
export async function oneWorld(base: string, native: TestClient): Promise<void> {
  const ws = await openDialectClient(`${base}/compat/wschat/`);
  const lc = await openDialectClient(`${base}/compat/login-chat/`);
  const fy = await openDialectClient(`${base}/compat/wsify/ws`);
  try {
    lc.send({ type: "login", username: "lc" });
    assert.deepEqual(await lc.next(), { type: "logged_in", username: "lc" });
    assert.deepEqual(await native.nextOf("presence"), {
      type: "presence",
      channel: "lobby",
      event: "join",
      name: "lc",
    });
    // wsify has no acknowledgements: its own broadcast reaching the native client proves it joined.
    fy.send({ command: "join", args: { channel: "lobby" } });
    fy.send({ command: "broadcast", args: { channel: "lobby", content: "wsify is here" } });
    const fromWsify = await native.nextOf("message");
    assert.equal(fromWsify.text, "wsify is here");
    for (const client of [ws, lc, fy]) await client.next(); // each got the wsify message too

    native.send({ type: "broadcast", channel: "lobby", text: "hello, all" });
    const seenByNative = await native.nextOf("message");
    assert.deepEqual([seenByNative.from, seenByNative.text], ["nat", "hello, all"]);
    const seenByWschat = await ws.next();
    assert.deepEqual(Object.keys(seenByWschat), ["usr", "msg", "tim"]);
    assert.deepEqual([seenByWschat.usr, seenByWschat.msg], ["nat", "hello, all"]);
    assert.match(seenByWschat.tim, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    assert.equal(await fy.nextText(), '"hello, all"');
    assert.equal(await lc.nextText(), '{"type":"chat","username":"nat","value":"hello, all"}');

    // And the other way: a wschat message reaches the native and login-chat clients.
    ws.send({ usr: "old-client", msg: "from wschat" });
    const relayed = await native.nextOf("message");
    assert.deepEqual([relayed.from, relayed.text], ["old-client", "from wschat"]);
    assert.equal(
      await lc.nextText(),
      '{"type":"chat","username":"old-client","value":"from wschat"}',
    );
    assert.equal(await fy.nextText(), '"from wschat"');
  } finally {
    await Promise.all([ws.close(), lc.close(), fy.close()]);
  }
}
