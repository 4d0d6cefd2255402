/** GET /readyz (readiness: send traffic here?) beside GET /healthz (liveness). */
import assert from "node:assert/strict";
import { createApp } from "../../lib/app.ts";
import { systemClock } from "../../lib/core/clock.ts";
import { createMemoryCluster, type Engine, type EngineListener } from "../../lib/cluster/engine.ts";
import { silentLogger } from "../../lib/log.ts";
import { CloseCode } from "../../lib/core/protocol.ts";
import { startServer, TEST_CONFIG } from "../_helpers.ts";

async function get(url: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.json() };
}

/** A cluster engine whose connection the test takes down and brings back. */
function switchableEngine(): { engine: Engine; down(): void; up(): void } {
  const inner = createMemoryCluster().engine();
  let listener: EngineListener | undefined;
  return {
    engine: {
      ...inner,
      start(l) {
        listener = l;
        inner.start(l);
      },
    },
    down: () => listener!.down("cut by the test"),
    up: () => listener!.up(),
  };
}

Deno.test("readyz: 200 while serving", async () => {
  await using server = startServer();
  assert.deepEqual(await get(`${server.url}/readyz`), { status: 200, body: { status: "ready" } });
});

Deno.test("readyz: 503 once shutdown has begun, while /healthz stays 200", async () => {
  await using server = startServer();
  const client = await server.user("alice");
  server.app.shutdown(CloseCode.ServiceRestart, "Server restarting");
  assert.deepEqual(await get(`${server.url}/readyz`), {
    status: 503,
    body: { status: "not_ready", failed: ["shutdown"] },
  });
  assert.deepEqual(await get(`${server.url}/healthz`), { status: 200, body: { status: "ok" } });
  assert.equal((await client.closed).code, CloseCode.ServiceRestart);
});

Deno.test("readyz: 503 while the cluster engine is down, 200 once it is back", async () => {
  const switchable = switchableEngine();
  await using server = startServer({}, { engine: switchable.engine, nodeId: "node0" });
  assert.equal((await get(`${server.url}/readyz`)).status, 200);
  switchable.down();
  assert.deepEqual(await get(`${server.url}/readyz`), {
    status: 503,
    body: { status: "not_ready", failed: ["cluster"] },
  });
  assert.equal((await get(`${server.url}/healthz`)).status, 200);
  switchable.up();
  assert.equal((await get(`${server.url}/readyz`)).status, 200);
});

Deno.test("readyz: a readiness check given to the app (the store's) is named when it fails", async () => {
  let writable = false;
  const app = createApp(TEST_CONFIG, {
    clock: systemClock,
    version: "test",
    log: silentLogger,
    readiness: [{ name: "store", ready: () => writable }],
  });
  try {
    const ask = async () => {
      const response = await app.fetch(new Request("http://hubbub/readyz"), { ip: "127.0.0.1" });
      assert.ok(response instanceof Response);
      return { status: response.status, body: await response.json() };
    };
    assert.deepEqual(await ask(), {
      status: 503,
      body: { status: "not_ready", failed: ["store"] },
    });
    writable = true;
    assert.deepEqual(await ask(), { status: 200, body: { status: "ready" } });
    app.shutdown(CloseCode.ServiceRestart, "Server restarting");
    writable = false;
    assert.deepEqual((await ask()).body, { status: "not_ready", failed: ["shutdown", "store"] });
  } finally {
    await app.stop();
  }
});
