/**
 * Opens 10,000 logged-in sessions, ten to a channel, on fake sockets in this
 * process and prints how much the process's resident memory and V8's heap
 * grew per session, as JSON. Run by `idle_memory_test.ts` in a fresh process
 * (`--v8-flags=--expose-gc`), so nothing else shares its memory.
 *
 * @module
 */
import { createApp } from "../../lib/app.ts";
import { systemClock } from "../../lib/core/clock.ts";
import type { Socket } from "../../lib/core/socket.ts";
import { silentLogger } from "../../lib/log.ts";
import { TEST_CONFIG } from "../_helpers.ts";

const SESSIONS = 10_000;
const config = {
  ...TEST_CONFIG,
  maxConnections: 200_000,
  maxConnectionsPerIp: 200_000,
  connectRate: 1_000_000,
};
const app = createApp(config, {
  clock: systemClock,
  version: "test",
  afterIo: setImmediate,
  log: silentLogger,
});
const gc = (globalThis as unknown as { gc(): void }).gc;
const turn = () => new Promise((resolve) => setImmediate(resolve));
const settle = async () => {
  for (let i = 0; i < 5; i++) await turn();
  gc();
  await turn();
  gc();
};

await settle();
const before = Deno.memoryUsage();
for (let i = 0; i < SESSIONS; i++) {
  const upgrade = await app.fetch(
    new Request("http://127.0.0.1/ws", { headers: { upgrade: "websocket", host: "127.0.0.1" } }),
    { ip: "127.0.0.1" },
  );
  if (upgrade instanceof Response) throw new Error(`refused: ${upgrade.status}`);
  const socket: Socket = { send() {}, close() {}, bufferedAmount: 0 };
  const connection = app.open(socket, upgrade);
  connection.message(`{"type":"login","name":"u${i}"}`);
  connection.message(`{"type":"join","channel":"r${Math.floor(i / 10)}"}`);
  // Like a connect storm: a hundred sessions' replies go out in one flush.
  if (i % 100 === 99) await turn();
}
await settle();
const after = Deno.memoryUsage();
console.log(JSON.stringify({
  rssKiB: (after.rss - before.rss) / SESSIONS / 1024,
  heapKiB: (after.heapUsed - before.heapUsed) / SESSIONS / 1024,
}));
await app.stop();
