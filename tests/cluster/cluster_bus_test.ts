/**
 * The cluster bus's wire format (lib/cluster/cluster_bus.ts): `busOpen`, the
 * head of a `pub` message that a shared log completes with a frame.
 */
import assert from "node:assert/strict";
import { busOpen, decodePayload } from "../../lib/cluster/cluster_bus.ts";

const frame = {
  type: "message",
  channel: "lobby",
  from: "ann",
  text: 'say "hi"\n',
  id: "m1",
  ts: "2026-01-01T00:00:00.000Z",
  seq: 7,
};

/** A payload of one bus message: `head` completed by the frame's JSON and the closing brace. */
const payload = (head: string) => `{"n":"node-a","m":[${head}${JSON.stringify(frame)}}]}`;

Deno.test("cluster bus: busOpen + frame + } is a pub message decodePayload accepts", async (t) => {
  const cases = [
    { name: "plain", head: busOpen("lobby"), message: { t: "pub", c: "lobby", f: frame } },
    {
      name: "with an origin",
      head: busOpen("lobby", { dialect: "wschat", original: { usr: "ann", 'k"ey': [1, null] } }),
      message: {
        t: "pub",
        c: "lobby",
        f: frame,
        o: { dialect: "wschat", original: { usr: "ann", 'k"ey': [1, null] } },
      },
    },
    {
      name: "with an origin without original, and the sender to skip",
      head: busOpen("lobby", { dialect: "login-chat" }, 42),
      message: { t: "pub", c: "lobby", f: frame, o: { dialect: "login-chat" }, x: 42 },
    },
    {
      name: "with session 0 to skip",
      head: busOpen("lobby", undefined, 0),
      message: { t: "pub", c: "lobby", f: frame, x: 0 },
    },
    {
      name: "a channel that needs escaping",
      head: busOpen('a"b\\c'),
      message: { t: "pub", c: 'a"b\\c', f: frame },
    },
  ];
  for (const { name, head, message } of cases) {
    await t.step(name, () => {
      assert.ok(head.endsWith('"f":'), head);
      assert.deepEqual(decodePayload(payload(head)), { n: "node-a", m: [message] });
    });
  }
});

Deno.test("cluster bus: a pub message's x must be a session number", () => {
  for (const x of ["-1", "1.5", '"3"']) {
    const text = `{"n":"node-a","m":[{"t":"pub","c":"lobby","x":${x},"f":${
      JSON.stringify(frame)
    }}]}`;
    assert.equal(decodePayload(text), null, x);
  }
});
