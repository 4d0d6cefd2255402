/**
 * The connection slot an allowed upgrade reserves comes back whatever
 * happens to the socket (issue 13 item 1): abandoned (once, however often an
 * adapter says so), closed, or never heard of again — then at the open
 * deadline, min(login timeout, 10 s). No sockets here: the app alone, with a
 * manual clock.
 */
import assert from "node:assert/strict";
import { type App, createApp } from "../../lib/app.ts";
import { createManualClock, type ManualClock } from "../../lib/core/clock.ts";
import type { Config } from "../../lib/config.ts";
import type { Upgrade } from "../../lib/http/http.ts";
import { silentLogger } from "../../lib/log.ts";
import type { Socket } from "../../lib/core/socket.ts";
import { TEST_CONFIG } from "../_helpers.ts";

const HOST = "127.0.0.1:8000";

/** An app on a manual clock; stopped by `await using`. */
function appFor(
  overrides: Partial<Config> = {},
): { app: App; clock: ManualClock } & AsyncDisposable {
  const clock = createManualClock(1_000_000);
  const app = createApp({ ...TEST_CONFIG, ...overrides }, {
    clock,
    version: "test",
    log: silentLogger,
  });
  return { app, clock, [Symbol.asyncDispose]: () => app.stop() };
}

/** Asks `app` to upgrade a request from `ip`; fails unless it may. */
async function allow(app: App, ip = "10.0.0.1"): Promise<Upgrade> {
  const answer = await app.fetch(
    new Request(`http://${HOST}/ws`, { headers: { upgrade: "websocket", host: HOST } }),
    { ip },
  );
  if (answer instanceof Response) {
    assert.fail(`refused: ${answer.status} ${await answer.text()}`);
  }
  return answer;
}

/** The samples of `name` on /metrics, by their label text ("" when unlabelled). */
async function metric(app: App, name: string): Promise<Map<string, number>> {
  const answer = await app.fetch(new Request(`http://${HOST}/metrics`), { ip: "127.0.0.1" });
  assert.ok(answer instanceof Response);
  const samples = new Map<string, number>();
  for (const line of (await answer.text()).split("\n")) {
    const match = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (match?.[1] === name) samples.set(match[2] ?? "", Number(match[3]));
  }
  return samples;
}

const slots = async (app: App) => (await metric(app, "hubbub_connection_slots")).get("");
const abandoned = async (app: App) =>
  Object.fromEntries(await metric(app, "hubbub_upgrades_abandoned_total"));

/** A socket that records how it was closed. */
function fakeSocket(): Socket & { closedWith?: number } {
  const socket: Socket & { closedWith?: number } = {
    send() {},
    close(code) {
      socket.closedWith = code;
    },
    bufferedAmount: 0,
  };
  return socket;
}

Deno.test("upgrade slots: an upgrade whose socket never opens frees its slot at the deadline", async () => {
  await using server = appFor({ loginTimeout: 30 });
  const { app, clock } = server;
  const upgrade = await allow(app);
  assert.equal(await slots(app), 1, "reserved while the socket opens");
  clock.advance(9_000);
  assert.equal(await slots(app), 1, "still in time");
  clock.advance(2_000);
  assert.equal(await slots(app), 0, "10 s at most, though the login timeout is 30 s");
  assert.deepEqual(await abandoned(app), { '{reason="deadline"}': 1 });
  // The socket opens after all: its slot is gone, so it is closed rather than counted twice.
  const late = fakeSocket();
  app.open(late, upgrade);
  assert.equal(late.closedWith, 1013);
  assert.equal(await slots(app), 0);
  assert.equal(app.connections, 0);
});

Deno.test("upgrade slots: a shorter login timeout is the deadline", async () => {
  await using server = appFor({ loginTimeout: 2 });
  const { app, clock } = server;
  await allow(app);
  clock.advance(1_000);
  assert.equal(await slots(app), 1);
  clock.advance(1_000);
  assert.equal(await slots(app), 0);
});

Deno.test("upgrade slots: abandoning twice, or after the deadline, gives back one slot", async () => {
  await using server = appFor({ maxConnectionsPerIp: 1 });
  const { app, clock } = server;
  const first = await allow(app);
  app.abandon(first);
  app.abandon(first);
  assert.equal(await slots(app), 0);
  const second = await allow(app);
  clock.advance(10_000);
  app.abandon(second);
  assert.equal(await slots(app), 0, "never below zero");
  assert.deepEqual(await abandoned(app), { '{reason="gone"}': 1, '{reason="deadline"}': 1 });
  // The cap of one per address still holds: the count did not drift.
  const third = await allow(app);
  const refused = await app.fetch(
    new Request(`http://${HOST}/ws`, { headers: { upgrade: "websocket", host: HOST } }),
    { ip: "10.0.0.1" },
  );
  assert.ok(refused instanceof Response);
  assert.equal(refused.status, 429);
  await refused.body?.cancel();
  app.abandon(third);
});

Deno.test("upgrade slots: an opened socket keeps its slot until it closes; abandon does nothing then", async () => {
  await using server = appFor({ loginTimeout: 30 });
  const { app, clock } = server;
  const upgrade = await allow(app);
  const connection = app.open(fakeSocket(), upgrade);
  app.abandon(upgrade); // an adapter's late error event
  clock.advance(20_000); // past the open deadline, within the login timeout
  assert.equal(await slots(app), 1, "not given back by abandon or the deadline");
  connection.closed(1000);
  assert.equal(await slots(app), 0);
  assert.deepEqual(await abandoned(app), {});
});

Deno.test("upgrade slots: a socket that opens during shutdown is closed with 1012 and frees its slot", async () => {
  await using server = appFor();
  const { app } = server;
  const upgrade = await allow(app);
  app.shutdown(1012, "Server restarting");
  const socket = fakeSocket();
  app.open(socket, upgrade);
  assert.equal(socket.closedWith, 1012);
  assert.equal(await slots(app), 0);
});
