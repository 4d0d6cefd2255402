/**
 * Review 11c, finding 2, names: a `SET NX` that times out (Redis paused past
 * the 2 s command timeout) may still run when Redis resumes. The login was
 * told `unavailable`, so the claim must not stay: the engine releases it
 * behind the SET, and the same user's retry gets the name.
 */
import assert from "node:assert/strict";
import { createRedisEngine } from "../../lib/cluster/engine_redis.ts";
import { nameKey } from "../../lib/core/names.ts";
import { startServer, waitFor } from "../_helpers.ts";
import { startRedis } from "../e2e/_redis.ts";

Deno.test("claim timeout (Redis): a claim that timed out but ran later is released", async () => {
  await using redis = await startRedis();
  using admin = await redis.connect();
  await using node = startServer({ idleTimeout: 0 }, {
    engine: createRedisEngine({ url: redis.url, prefix: "ct" }),
    nodeId: "node-a",
  });
  // Ready (connected, its names in Redis) and logged in once: the node admits claims. (On a
  // busy machine, a login before the node is ready waited past a test's patience.)
  await waitFor("the node to be ready", async () => {
    const response = await fetch(`${node.url}/readyz`);
    await response.body?.cancel();
    return response.status === 200;
  }, 20_000);
  await (await node.connect()).login("warmup");
  const client = await node.connect();
  // Writes wait 5 s, well past the 2 s command timeout; reads go on.
  assert.equal(await admin.command("CLIENT", "PAUSE", "5000", "WRITE"), "OK");
  client.send({ type: "login", name: "tom", ref: 1 });
  const refused = await client.next();
  assert.deepEqual([refused.type, refused.code], ["error", "unavailable"]);
  // A write sent after the claim (and after its release): answered once both have run.
  assert.equal(await admin.command("SET", "probe", "1"), "OK");
  assert.equal(await admin.command("EXISTS", `ct:name:${nameKey("tom")}`), 0, "released");
  client.send({ type: "login", name: "tom", ref: 2 });
  assert.equal((await client.next()).type, "welcome");
});
