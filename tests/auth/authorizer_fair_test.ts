/**
 * The authorizer's slots are shared fairly between client addresses
 * (lib/auth/webhook.ts): a flood from one address waits behind its own
 * calls, never in front of another address's. Unit tests with a fake
 * `fetch` assert the order calls are served in; the socket test runs a
 * server behind --trust-proxy against a stub authorizer that holds the
 * flooding address's calls, and shows another address served meanwhile.
 */
import assert from "node:assert/strict";
import { type AuthorizerOptions, createAuthorizer, type Decision } from "../../lib/auth/webhook.ts";
import { CloseCode } from "../../lib/core/protocol.ts";
import { type Frame, startServer, type TestServer, withTimeout } from "../_helpers.ts";
import { fakeFetch } from "./_fake_fetch.ts";

// ---------------------------------------------------------------------------
// The client alone, with a fetch whose calls wait until the test answers them

const BASE: Omit<AuthorizerOptions, "fetch"> = {
  url: "http://authorizer.test/check",
  timeoutMs: 60_000,
  maxConcurrent: 2,
  maxQueued: 10_000,
};

/** Lets every settled promise's callbacks run (a whole turn of the microtask queue). */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

Deno.test("authorizer fairness: 500 waiting calls of one address do not delay another's single call beyond the next free slot", async () => {
  const held = fakeFetch();
  const authorizer = createAuthorizer({ ...BASE, fetch: held.fetch });
  const flood = Array.from({ length: 502 }, (_, i) => authorizer.decide(`flood${i}`, "10.0.0.1"));
  await held.called(2);
  const victim = authorizer.decide("victim", "10.0.0.2");
  await settle();
  assert.deepEqual(held.served(), ["flood0", "flood1"], "both slots are the flood's, 500 wait");

  held.calls[0].release(200);
  await held.called(3);
  assert.equal(held.served()[2], "victim", "the first slot to free goes to the other address");
  held.calls[2].release(200);
  assert.equal(await victim, "allow");

  // The flood then gets every slot again, in its own order.
  for (let n = 1; n < 502; n++) {
    await held.called(n + 2);
    held.calls[n].release(200);
  }
  held.calls[502].release(200);
  assert.deepEqual(await Promise.all(flood), Array(502).fill("allow"));
  assert.deepEqual(
    held.served().filter((body) => body !== "victim"),
    Array.from({ length: 502 }, (_, i) => `flood${i}`),
    "one address's calls keep their order",
  );
});

Deno.test("authorizer fairness: waiting addresses take turns; each address's calls keep their order", async () => {
  const held = fakeFetch();
  const authorizer = createAuthorizer({ ...BASE, maxConcurrent: 1, fetch: held.fetch });
  const decided: Promise<Decision>[] = [];
  for (let i = 0; i < 4; i++) decided.push(authorizer.decide(`a${i}`, "A"));
  for (let i = 0; i < 4; i++) decided.push(authorizer.decide(`b${i}`, "B"));
  decided.push(authorizer.decide("c0", "C"));
  for (let n = 1; n <= 9; n++) {
    await held.called(n);
    held.calls[n - 1].release(200);
  }
  assert.deepEqual(await Promise.all(decided), Array(9).fill("allow"));
  // a0 took the free slot; then A, B and C in turn (each back of the line after its turn).
  assert.deepEqual(held.served(), ["a0", "a1", "b0", "c0", "a2", "b1", "a3", "b2", "b3"]);
});

Deno.test("authorizer fairness: one address never holds more than maxConcurrentPerKey slots; the rest stay free for others", async () => {
  const held = fakeFetch();
  const authorizer = createAuthorizer({
    ...BASE,
    maxConcurrent: 4,
    maxConcurrentPerKey: 2,
    fetch: held.fetch,
  });
  const flood = Array.from({ length: 5 }, (_, i) => authorizer.decide(`flood${i}`, "X"));
  await held.called(2);
  await settle();
  assert.equal(held.calls.length, 2, "two slots stay free although three calls wait");
  const others = [authorizer.decide("y", "Y"), authorizer.decide("z", "Z")];
  await held.called(4);
  assert.deepEqual(held.served(), ["flood0", "flood1", "y", "z"], "served at once");
  held.calls[2].release(200);
  held.calls[3].release(403);
  assert.deepEqual(await Promise.all(others), ["allow", "deny"]);
  await settle();
  assert.equal(held.calls.length, 4, "freed slots beyond its share do not go to the flood");
  // Each of its answers lets one more of its calls out, never two.
  for (const [answer, next] of [[0, 5], [1, 6], [4, 7]]) {
    held.calls[answer].release(200);
    await held.called(next);
    await settle();
    assert.equal(held.calls.length, next);
  }
  for (const n of [5, 6]) held.calls[n].release(200);
  assert.deepEqual(await Promise.all(flood), Array(5).fill("allow"));
  assert.deepEqual(held.served().slice(4), ["flood2", "flood3", "flood4"]);
});

/** One slot and `limits`, on a fake fetch; records the keys shed and why calls were down. */
function shedding(limits: Partial<AuthorizerOptions>) {
  const held = fakeFetch();
  const shed: string[] = [];
  const down: string[] = [];
  const authorizer = createAuthorizer({
    ...BASE,
    maxConcurrent: 1,
    ...limits,
    fetch: held.fetch,
    onShed: (key) => shed.push(key),
    onDown: (reason) => down.push(reason),
  });
  return { held, shed, down, authorizer };
}

Deno.test("authorizer fairness: an address over maxPerKey is answered down at once; others are not", async () => {
  const { held, shed, down, authorizer } = shedding({ maxPerKey: 3 });
  const three = [0, 1, 2].map((i) => authorizer.decide(`x${i}`, "X"));
  assert.equal(await withTimeout(authorizer.decide("x3", "X"), "the fourth call"), "down");
  assert.deepEqual(shed, ["X"]);
  assert.deepEqual(down, [], "the authorizer itself is not down");
  const other = authorizer.decide("y0", "Y");
  for (let n = 1; n <= 4; n++) {
    await held.called(n);
    held.calls[n - 1].release(200);
  }
  assert.deepEqual(await Promise.all([...three, other]), Array(4).fill("allow"));
  // x1 waited before y0 did, and neither address had a call in flight: turns by arrival.
  assert.deepEqual(held.served(), ["x0", "x1", "y0", "x2"]);

  // Its calls settled: the address may call again.
  const again = authorizer.decide("x4", "X");
  await held.called(5);
  held.calls[4].release(200);
  assert.equal(await again, "allow");
});

Deno.test("authorizer fairness: a full line drops the newest call of the address with the most, never a newcomer's", async () => {
  const { held, shed, down, authorizer } = shedding({ maxQueued: 3 });
  const x = [0, 1, 2, 3].map((i) => authorizer.decide(`x${i}`, "X")); // one in flight, three wait
  const y = authorizer.decide("y", "Y");
  assert.equal(await withTimeout(x[3], "x3 dropped"), "down", "X's newest made room for Y");
  const z = authorizer.decide("z", "Z");
  assert.equal(await withTimeout(x[2], "x2 dropped"), "down", "and again for Z");
  const w = authorizer.decide("w", "W");
  assert.equal(await withTimeout(x[1], "x1 dropped"), "down", "X keeps only its call in flight");
  assert.deepEqual(shed, ["X", "X", "X"]);
  // Now every waiting address has one call: the line is shared out, a newcomer is down.
  assert.equal(await withTimeout(authorizer.decide("v", "V"), "v refused"), "down");
  assert.deepEqual(down, ["too many calls waiting"]);
  for (let n = 1; n <= 4; n++) {
    await held.called(n);
    held.calls[n - 1].release(200);
  }
  assert.deepEqual(await Promise.all([x[0], y, z, w]), Array(4).fill("allow"));
  assert.deepEqual(held.served(), ["x0", "y", "z", "w"]);
});

// ---------------------------------------------------------------------------
// Over real sockets: a server behind --trust-proxy and a stub authorizer that holds a flood

/** A stub authorizer: answers 200 at once, or holds calls the policy picks until released. */
function startHoldingAuthorizer(hold: (body: Frame) => boolean) {
  const bodies: Frame[] = [];
  const held = new Set<() => void>();
  let answeredHeld = 0;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (request) => {
    const body = await request.json() as Frame;
    bodies.push(body);
    if (hold(body)) {
      await new Promise<void>((resolve) => held.add(resolve));
      answeredHeld++;
    }
    return new Response(null, { status: 200 });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/authorize`,
    bodies,
    get held() {
      return held.size;
    },
    get answeredHeld() {
      return answeredHeld;
    },
    release() {
      for (const resolve of held) resolve();
      held.clear();
    },
    async [Symbol.asyncDispose]() {
      this.release();
      await server.shutdown();
    },
  };
}

/** A native client whose connection seems to come from `ip` (our proxy's X-Forwarded-For). */
interface ProxiedClient {
  send(frame: unknown): void;
  next(): Promise<Frame>;
  readonly closed: Promise<number>;
  close(): Promise<void>;
}

async function connectFrom(server: TestServer, ip: string): Promise<ProxiedClient> {
  const socket = new WebSocket(
    server.wsUrl,
    { headers: { "x-forwarded-for": ip } } as unknown as string[],
  );
  const frames: Frame[] = [];
  const waiters: ((frame: Frame | null) => void)[] = [];
  const closed = new Promise<number>((resolve) => {
    socket.onclose = (event) => {
      for (const waiter of waiters.splice(0)) waiter(null);
      resolve(event.code);
    };
  });
  socket.onmessage = (event) => {
    // A native message may carry several frames, one per line (a tick's frames coalesced).
    for (const line of String(event.data).split("\n")) {
      if (line === "") continue;
      const frame = JSON.parse(line);
      const waiter = waiters.shift();
      if (waiter) waiter(frame);
      else frames.push(frame);
    }
  };
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      socket.onopen = () => resolve();
      socket.onerror = () => reject(new Error(`The socket from ${ip} did not open`));
    }),
    `the socket from ${ip} to open`,
  );
  const client: ProxiedClient = {
    send: (frame) => socket.send(JSON.stringify(frame)),
    async next() {
      if (frames.length > 0) return frames.shift()!;
      const { promise, resolve } = Promise.withResolvers<Frame | null>();
      waiters.push(resolve);
      const frame = await withTimeout(promise, `a frame for ${ip}`);
      if (frame === null) throw new Error(`The socket from ${ip} closed`);
      return frame;
    },
    closed,
    async close() {
      if (socket.readyState === WebSocket.OPEN) socket.close(1000);
      await closed;
    },
  };
  assert.equal((await client.next()).type, "hello");
  return client;
}

/** Resolves once `check` holds, looked at after each task: state with no event of its own. */
function until(what: string, check: () => boolean): Promise<void> {
  return withTimeout(
    (async () => {
      while (!check()) await new Promise((resolve) => setTimeout(resolve, 0));
    })(),
    what,
  );
}

Deno.test("authorizer fairness: while one address's logins are held at the authorizer, another address connects, logs in, joins and talks", async () => {
  await using stub = startHoldingAuthorizer((body) =>
    body.command === "login" && String(body.args.name).startsWith("flood")
  );
  // 4 slots: one address may hold 2 of them and have 4 calls in flight and waiting.
  await using server = startServer({
    authorizerUrl: stub.url,
    authorizerConcurrency: 4,
    trustProxy: true,
  });
  const flood: ProxiedClient[] = [];
  for (let i = 0; i < 5; i++) flood.push(await connectFrom(server, "10.0.0.1"));
  const framesBefore = server.app.metrics.framesIn;
  flood.forEach((client, i) => client.send({ type: "login", name: `flood${i}` }));
  // Each login frame reaches the authorizer client as it is read: all five are in by now.
  await until("the five logins to be read", () => server.app.metrics.framesIn === framesBefore + 5);
  await until("two flood logins at the authorizer", () => stub.held === 2);

  // The fifth was over the address's share: down for it alone, so that socket is told to retry.
  const shed = await withTimeout(
    Promise.race(flood.map((client, i) => client.closed.then((code) => ({ i, code })))),
    "one flood socket to close",
  );
  assert.equal(shed.code, CloseCode.TryAgainLater);

  // Another address is served from the slots the flood cannot take, while the flood is held.
  const victim = await connectFrom(server, "10.0.0.2");
  victim.send({ type: "login", name: "victim", ref: 1 });
  assert.deepEqual(await victim.next(), { type: "welcome", name: "victim", ref: 1 });
  victim.send({ type: "join", channel: "lobby", ref: 2 });
  const joined = await victim.next();
  assert.match(joined.epoch, /^.+$/);
  assert.deepEqual(joined, {
    type: "joined",
    channel: "lobby",
    members: ["victim"],
    epoch: joined.epoch,
    seq: 0,
    messages: [],
    ref: 2,
  });
  victim.send({ type: "broadcast", channel: "lobby", text: "served", ref: 3 });
  const message = await victim.next();
  assert.equal(message.text, "served");
  assert.deepEqual(await victim.next(), {
    type: "sent",
    channel: "lobby",
    id: message.id,
    seq: 1,
    ref: 3,
  });
  assert.equal(stub.answeredHeld, 0, "every flood login is still held or waiting");
  assert.equal(stub.held, 2);
  const loginsAsked = stub.bodies.filter((body) => body.command === "login").map((b) =>
    b.args.name
  );
  assert.equal(loginsAsked.filter((name) => String(name).startsWith("flood")).length, 2);

  // Released, the flood's four remaining logins are answered in turn.
  stub.release();
  await until("the waiting flood logins at the authorizer", () => stub.held === 2);
  stub.release();
  const served = flood.filter((_, i) => i !== shed.i);
  for (const client of served) assert.equal((await client.next()).type, "welcome");
  await Promise.all([...served, victim].map((client) => client.close()));
});
