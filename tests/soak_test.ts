/**
 * No-loss soak: 10 clients each send 1,000 messages into one channel while
 * leaving and re-joining it. Every member must receive every message sent
 * while it was joined, each sender's messages in order.
 */
import assert from "node:assert/strict";
import { type Frame, startServer, type TestClient } from "./_helpers.ts";

const CLIENTS = 10;
const MESSAGES = 1000;
/** A client leaves and re-joins after every this many of its own messages. */
const CHURN_EVERY = 100;
/** A client waits for its own echo after every this many messages, to pace the run. */
const WINDOW = 50;

interface Received {
  /** The client's own view: frames in the order they arrived. */
  frames: Frame[];
}

/** Sends this client's messages, churning its membership, and records everything it receives. */
async function run(client: TestClient, index: number): Promise<Received> {
  const frames: Frame[] = [];
  const nextFrame = async () => {
    const frame = await client.next();
    frames.push(frame);
    return frame;
  };
  const waitFor = async (match: (frame: Frame) => boolean) => {
    for (;;) if (match(await nextFrame())) return;
  };
  client.send({ type: "join", channel: "soak" });
  await waitFor((f) => f.type === "joined");
  for (let seq = 0; seq < MESSAGES; seq++) {
    client.send({ type: "broadcast", channel: "soak", text: JSON.stringify({ from: index, seq }) });
    const last = seq === MESSAGES - 1;
    if ((seq + 1) % WINDOW === 0 || last) {
      await waitFor((f) => f.type === "message" && f.text === JSON.stringify({ from: index, seq }));
    }
    if ((seq + 1) % CHURN_EVERY === 0 && !last) {
      client.send({ type: "leave", channel: "soak" });
      client.send({ type: "join", channel: "soak" });
      await waitFor((f) => f.type === "joined");
    }
  }
  return { frames };
}

Deno.test("soak: 10 clients × 1,000 messages with join/leave churn lose nothing", async () => {
  await using server = startServer({ rateLimit: 1_000_000, rateBurst: 1_000_000 });
  const clients = await Promise.all(Array.from({ length: CLIENTS }, () => server.connect()));
  await Promise.all(clients.map((client, i) => client.login(`soaker${i}`)));
  const results = await Promise.all(clients.map(run));
  // Every sender has seen its last echo, so the server has queued every message; a ping's
  // pong comes after all of them.
  for (const [i, client] of clients.entries()) {
    client.send({ type: "ping" });
    for (;;) {
      const frame = await client.next();
      if (frame.type === "pong") break;
      results[i].frames.push(frame);
    }
  }

  let delivered = 0;
  for (const [receiver, { frames }] of results.entries()) {
    let joined = false;
    /** Per sender, the last sequence number seen in the current membership. */
    let lastSeq = new Map<number, number>();
    for (const frame of frames) {
      if (frame.type === "joined") {
        joined = true;
        lastSeq = new Map();
      } else if (frame.type === "left") {
        joined = false;
      } else if (frame.type === "message") {
        assert.ok(joined, `receiver ${receiver} got a message while not joined`);
        const { from, seq } = JSON.parse(frame.text);
        const previous = lastSeq.get(from);
        if (previous !== undefined) {
          assert.equal(
            seq,
            previous + 1,
            `receiver ${receiver}: sender ${from} jumped ${previous} → ${seq}`,
          );
        }
        lastSeq.set(from, seq);
        delivered++;
      } else {
        assert.ok(frame.type === "presence", `unexpected ${JSON.stringify(frame)}`);
      }
    }
    const ownEchoes = frames.filter((f) =>
      f.type === "message" && JSON.parse(f.text).from === receiver
    );
    assert.equal(ownEchoes.length, MESSAGES, `receiver ${receiver} saw all its own messages`);
  }
  // With churn nobody can receive all 10,000 × 10, but nearly everything is delivered.
  assert.ok(delivered > CLIENTS * MESSAGES * 5, `only ${delivered} deliveries`);
  assert.equal(server.app.metrics.messagesIn, CLIENTS * MESSAGES);
});
