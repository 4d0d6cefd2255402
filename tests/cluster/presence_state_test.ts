/**
 * Review 11c, finding 4: when a node's `state` replaces what another node
 * knew of its members (after an outage, or after it was dropped for
 * silence), the members there hear the difference as presence: `leave` for
 * who went meanwhile, `join` for who came (back). Clients that keep member
 * lists from presence stay right.
 */
import assert from "node:assert/strict";
import type { Frame, TestClient } from "../_helpers.ts";
import { startMemoryNodes } from "./_memory_nodes.ts";

const LEASE_S = 30;

const startNodes = () => startMemoryNodes({ config: { nameLease: LEASE_S } });

/** Presence events `client` gets up to its pong, as "event:name"; any other frame fails. */
async function presenceUntilPong(client: TestClient): Promise<string[]> {
  client.send({ type: "ping", ref: "p" });
  const seen: string[] = [];
  for (;;) {
    const frame: Frame = await client.next();
    if (frame.type === "pong") return seen;
    assert.equal(frame.type, "presence", JSON.stringify(frame));
    seen.push(`${frame.event}:${frame.name}`);
  }
}

/** Reads presence until `count` events came. */
async function presence(client: TestClient, count: number): Promise<string[]> {
  const seen: string[] = [];
  while (seen.length < count) {
    const frame: Frame = await client.next();
    assert.equal(frame.type, "presence", JSON.stringify(frame));
    seen.push(`${frame.event}:${frame.name}`);
  }
  return seen;
}

async function members(client: TestClient): Promise<string[]> {
  client.send({ type: "leave", channel: "room" });
  assert.equal((await client.next()).type, "left");
  client.send({ type: "join", channel: "room" });
  const joined = await client.next();
  assert.equal(joined.type, "joined");
  return [...joined.members].sort();
}

Deno.test("presence after an outage: who left and who joined on another node meanwhile is announced", async () => {
  await using c = startNodes();
  const [a, b] = c.nodes;
  const alice = await a.user("alice", "room");
  const bob = await b.user("bob", "room");
  const carol = await b.user("carol");
  assert.deepEqual(await presence(alice, 1), ["join:bob"]);

  c.cluster.cut();
  await bob.close();
  carol.send({ type: "join", channel: "room" });
  assert.equal((await carol.next()).type, "joined");
  for (const engine of c.engines) c.cluster.reconnect(engine);
  assert.deepEqual(await presence(alice, 2), ["leave:bob", "join:carol"]);
  assert.deepEqual(await presenceUntilPong(alice), [], "each once");
  assert.deepEqual(await members(alice), ["alice", "carol"], "as the member list says");
});

Deno.test("presence after a silence: a node dropped for silence that comes back announces its members again", async () => {
  await using c = startNodes();
  const [a, b] = c.nodes;
  const alice = await a.user("alice", "room");
  await b.user("bob", "room");
  assert.deepEqual(await presence(alice, 1), ["join:bob"]);

  c.cluster.cut();
  c.cluster.reconnect(c.engines[0]);
  c.clock.advance(LEASE_S * 1000 + 20_000); // node 1 falls silent for node 0
  assert.deepEqual(await presence(alice, 1), ["leave:bob"]);
  c.cluster.reconnect(c.engines[1]);
  assert.deepEqual(await presence(alice, 1), ["join:bob"]);
  assert.deepEqual(await presenceUntilPong(alice), [], "once");
  assert.deepEqual(await members(alice), ["alice", "bob"]);
});
