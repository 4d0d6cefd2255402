/**
 * Review 11c, finding 3, on a real Redis: node B's subscriber connection is
 * killed (as `CLIENT KILL` or a pub/sub output-buffer limit does) and cannot
 * come back until the test lets it (its Redis user is switched off
 * meanwhile), while a member on node A sends. Once B is back on the bus, its
 * member gets every missed message, in seq order, once.
 */
import assert from "node:assert/strict";
import { createRedisEngine } from "../../lib/cluster/engine_redis.ts";
import { startServer, type TestServer, waitFor } from "../_helpers.ts";
import { startRedis } from "../e2e/_redis.ts";
import { barrier, broadcast, messages } from "../history/_history.ts";

const texts = (frames: Record<string, unknown>[]) => frames.map((f) => [f.seq, f.text]);

/** Waits until `node` says it is ready (connected to Redis, its names there): slow on a busy box. */
function ready(node: TestServer): Promise<void> {
  return waitFor("the node to be ready", async () => {
    const response = await fetch(`${node.url}/readyz`);
    await response.body?.cancel();
    return response.status === 200;
  }, 20_000);
}

Deno.test("bus gap (Redis): a node whose subscriber was killed delivers what its members missed, once it is back", async () => {
  await using redis = await startRedis();
  using admin = await redis.connect();
  await admin.command("ACL", "SETUSER", "nodeb", "on", ">secret", "~*", "&*", "+@all");
  const engineUrl = (user: string) => redis.url.replace("redis://", `redis://${user}@`);
  const config = { rateBurst: 100_000, idleTimeout: 0 };
  await using a = startServer(config, {
    engine: createRedisEngine({ url: redis.url, prefix: "gap" }),
    nodeId: "node-a",
  });
  await using b = startServer(config, {
    engine: createRedisEngine({ url: engineUrl("nodeb:secret"), prefix: "gap" }),
    nodeId: "node-b",
  });
  await ready(a);
  await ready(b);
  const alice = await a.user("alice", "room");
  const carol = await b.user("carol", "room");
  broadcast(alice, "room", "before");
  assert.deepEqual(texts(await messages(carol, 1)), [[1, "before"]]);
  await messages(alice, 1);

  // Node B's bus connection: killed, and kept out until the user is on again.
  const clients = String(await admin.command("CLIENT", "LIST")).split("\n");
  const bus = clients.find((line) => / name=gap-bus /.test(line) && / user=nodeb /.test(line));
  assert.ok(bus, "node B's bus connection");
  await admin.command("ACL", "SETUSER", "nodeb", "off");
  assert.equal(await admin.command("CLIENT", "KILL", "ID", /id=(\d+)/.exec(bus)![1]), 1);

  broadcast(alice, "room", "missed 1");
  broadcast(alice, "room", "missed 2");
  assert.deepEqual(texts(await messages(alice, 2)), [[2, "missed 1"], [3, "missed 2"]]);
  await admin.command("ACL", "SETUSER", "nodeb", "on");
  await ready(b); // (its bus back: the reconnect backs off up to 2 s, longer on a busy box)
  assert.deepEqual(texts(await messages(carol, 2)), [[2, "missed 1"], [3, "missed 2"]]);
  broadcast(alice, "room", "after");
  assert.deepEqual(texts(await messages(carol, 1)), [[4, "after"]]);
  assert.deepEqual(await barrier(carol), [], "each once");
});
