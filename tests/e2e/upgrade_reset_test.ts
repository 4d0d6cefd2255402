/**
 * Upgrades that never become sockets, against a spawned server (Deno, or Bun
 * with `HUBBUB_TARGET`): a client that resets its TCP connection right after
 * its upgrade request, with and without an authorizer call pending, must give
 * back the connection slot it reserved, and SIGTERM must still end the process.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { openClient, withTimeout } from "../_helpers.ts";
import { spawnServer, TARGET } from "./_server.ts";
import { EXIT_TIMEOUT_MS } from "./_process.ts";

/** How many times `/metrics` is read before a test gives up on a gauge reaching its value. */
const POLLS = 300;
/** The pause between two reads of `/metrics`. */
const POLL_PAUSE_MS = 100;

/** An upgrade request for `/ws`, as a browser would send it. */
function upgradeRequest(port: number): string {
  return `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
    `Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n` +
    `Sec-WebSocket-Version: 13\r\n\r\n`;
}

/** A raw TCP connection that has sent an upgrade request; `reset()` aborts it with an RST. */
interface PendingUpgrade {
  reset(): Promise<void>;
}

/** Sends an upgrade request from `localAddress`; resolves once it is written. */
function sendUpgrade(port: number, localAddress = "127.0.0.1"): Promise<PendingUpgrade> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1", localAddress });
    const closed = new Promise<void>((done) => socket.on("close", () => done()));
    socket.on("error", () => {}); // the reset we cause
    socket.once("connect", () => {
      socket.write(upgradeRequest(port), (error) => {
        if (error) return reject(error);
        resolve({
          async reset() {
            socket.resetAndDestroy();
            await closed;
          },
        });
      });
    });
  });
}

/** Sends an upgrade request and resets the connection as soon as it is written. */
async function resetUpgrade(port: number, localAddress?: string): Promise<void> {
  await (await sendUpgrade(port, localAddress)).reset();
}

/** The value of an unlabelled gauge on `/metrics`. */
async function gauge(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((line) => line.startsWith(`${name} `));
  assert.ok(line !== undefined, `/metrics has no ${name}`);
  return Number(line.slice(name.length + 1));
}

/** Reads `/metrics` until `name` is `expected`; fails after POLLS reads, naming the last value. */
async function gaugeReaches(url: string, name: string, expected: number): Promise<void> {
  let value = NaN;
  for (let poll = 0; poll < POLLS; poll++) {
    value = await gauge(url, name);
    if (value === expected) return;
    await new Promise((resolve) => setTimeout(resolve, POLL_PAUSE_MS));
  }
  assert.fail(`${name} stayed at ${value} after ${POLLS} reads, expected ${expected}`);
}

/** Opens a WebSocket from 127.0.0.1 and logs in: the address was not locked out. */
async function assertCanConnect(port: number, name: string): Promise<void> {
  const client = await openClient(`ws://127.0.0.1:${port}/ws`);
  try {
    assert.equal((await client.login(name)).name, name);
  } finally {
    await client.close();
  }
}

/** An authorizer in this process that allows everyone, holding its answers while told to. */
interface HeldAuthorizer extends AsyncDisposable {
  readonly url: string;
  /** Holds every answer from now on, until `release()`. */
  hold(): void;
  /** Resolves once `count` calls are being held. */
  holding(count: number): Promise<void>;
  /** Answers every held call with 200, and later ones at once. */
  release(): void;
}

function startHeldAuthorizer(): HeldAuthorizer {
  let holding = false;
  const held = new Set<() => void>();
  const waiters = new Set<{ count: number; resolve: () => void }>();
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (request) => {
    await request.body?.cancel();
    if (holding) {
      const answered = new Promise<void>((resolve) => held.add(resolve));
      for (const waiter of waiters) {
        if (held.size >= waiter.count) {
          waiters.delete(waiter);
          waiter.resolve();
        }
      }
      await answered;
    }
    return new Response('{"status":200}');
  });
  const release = () => {
    holding = false;
    for (const resolve of held) resolve();
    held.clear();
  };
  return {
    url: `http://127.0.0.1:${server.addr.port}/authorize`,
    hold() {
      holding = true;
    },
    holding(count) {
      if (held.size >= count) return Promise.resolve();
      const { promise, resolve } = Promise.withResolvers<void>();
      waiters.add({ count, resolve });
      return withTimeout(promise, `${count} held authorizer calls`);
    },
    release,
    async [Symbol.asyncDispose]() {
      release();
      await server.shutdown();
    },
  };
}

/** Caps small enough that a few leaked slots lock an address, or the server, out. */
const CAPS = ["--max-connections", "6", "--max-connections-per-ip", "2", "--connect-rate", "10000"];
/** A socket that never opens gives its slot back within the login timeout: 1 s here. */
const QUICK_DEADLINE = ["--login-timeout", "1"];

Deno.test(`upgrade resets (${TARGET}): resets right after the upgrade request give every slot back`, async () => {
  await using server = await spawnServer({ args: [...CAPS, ...QUICK_DEADLINE] });
  // Three addresses, each past its own cap: before the fix they left the server full (503).
  for (const address of ["127.0.0.2", "127.0.0.3", "127.0.0.4"]) {
    for (let i = 0; i < 20; i++) await resetUpgrade(server.port, address);
  }
  await gaugeReaches(server.url, "hubbub_connection_slots", 0);
  for (let i = 0; i < 20; i++) await resetUpgrade(server.port);
  await gaugeReaches(server.url, "hubbub_connection_slots", 0);
  await assertCanConnect(server.port, "after");
  await gaugeReaches(server.url, "hubbub_connection_slots", 0);
});

Deno.test(`upgrade resets (${TARGET}): resets while the authorizer is deciding give every slot back`, async () => {
  await using authorizer = startHeldAuthorizer();
  // The default login timeout: the slots must come back when the answer finds the client gone.
  await using server = await spawnServer({
    args: [...CAPS, "--authorizer-url", authorizer.url],
  });
  for (let round = 1; round <= 3; round++) {
    authorizer.hold();
    const pending = await Promise.all([sendUpgrade(server.port), sendUpgrade(server.port)]);
    await authorizer.holding(2);
    assert.equal(await gauge(server.url, "hubbub_connection_slots"), 2, "both are reserved");
    for (const upgrade of pending) await upgrade.reset();
    authorizer.release();
    await gaugeReaches(server.url, "hubbub_connection_slots", 0);
    await assertCanConnect(server.port, `round${round}`);
    await gaugeReaches(server.url, "hubbub_connection_slots", 0);
  }
});

Deno.test(`upgrade resets (${TARGET}): SIGTERM ends the process while upgrades hang`, async () => {
  await using authorizer = startHeldAuthorizer();
  await using server = await spawnServer({
    args: [
      ...CAPS,
      ...QUICK_DEADLINE,
      "--authorizer-url",
      authorizer.url,
      "--authorizer-timeout-ms",
      "60000",
    ],
  });
  // On Deno some of these leave requests that never finish, which the listener would wait for.
  for (let i = 0; i < 20; i++) await resetUpgrade(server.port, `127.0.0.${2 + (i % 3)}`);
  await gaugeReaches(server.url, "hubbub_connection_slots", 0);
  authorizer.hold();
  const [gone, waiting] = await Promise.all([sendUpgrade(server.port), sendUpgrade(server.port)]);
  await authorizer.holding(2);
  await gone.reset();
  try {
    // stop() fails unless the process exits within EXIT_TIMEOUT_MS of SIGTERM.
    await server.stop();
  } finally {
    await waiting.reset();
  }
  const { code } = await server.child.status;
  assert.equal(code, 0, `exit code (the bound was ${EXIT_TIMEOUT_MS} ms); ${await server.stderr}`);
  assert.match(await server.stdout, /stopped/);
});
