/**
 * The authorizer webhook over real sockets, against a stub authorizer whose
 * answers each test controls: upgrades, the commands it is asked about, the
 * order commands take effect in while a check is pending, and the bounded
 * client in lib/auth/webhook.ts with an injected `fetch`.
 */
import assert from "node:assert/strict";
import { type AuthorizerOptions, createAuthorizer, type Decision } from "../../lib/auth/webhook.ts";
import { MAX_FAILED_LOGINS } from "../../lib/app.ts";
import type { Config } from "../../lib/config.ts";
import { CloseCode } from "../../lib/core/protocol.ts";
import {
  assertJsonError,
  type Frame,
  openClient,
  startServer,
  type TestClient,
  type TestServer,
  withTimeout,
} from "../_helpers.ts";
import { fakeFetch } from "./_fake_fetch.ts";

// ---------------------------------------------------------------------------
// The stub authorizer

/** What the server POSTs to the authorizer. */
interface AuthBody {
  command: string;
  // deno-lint-ignore no-explicit-any
  args: Record<string, any>;
  name?: string | null;
  /** The protocol: "native", or a dialect's name. */
  dialect?: string;
}

/** How the stub answers one call. */
interface Answer {
  status: number;
  /** Answer only once the test releases held calls (or the stub stops): a check kept pending. */
  hold?: boolean;
}

type Policy = (body: AuthBody) => Answer;

const ALLOW: Answer = { status: 200 };
const allowAll: Policy = () => ALLOW;

/** A local authorizer whose answers the test controls; stopped by `await using`. */
interface StubAuthorizer extends AsyncDisposable {
  readonly url: string;
  readonly port: number;
  /** Every body received, in arrival order. */
  readonly bodies: AuthBody[];
  /** Every request's method and content type, in arrival order. */
  readonly requests: { method: string; contentType: string | null }[];
  /** Decides each answer; may be swapped at any time. */
  policy: Policy;
  /** How many calls have been answered. */
  readonly answered: number;
  /** Resolves once `count` bodies have arrived. */
  received(count: number): Promise<void>;
  /** Answers every held call. */
  release(): void;
  /** The commands asked about since body `from`. */
  commandsSince(from: number): string[];
}

/** Starts a stub authorizer on 127.0.0.1 (`port` 0: a free one). */
function startAuthorizer(policy: Policy = allowAll, port = 0): StubAuthorizer {
  const bodies: AuthBody[] = [];
  const requests: { method: string; contentType: string | null }[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  /** Releases the held calls. */
  const held = new Set<() => void>();
  let answered = 0;

  const server = Deno.serve({ port, hostname: "127.0.0.1", onListen() {} }, async (request) => {
    requests.push({ method: request.method, contentType: request.headers.get("content-type") });
    const body = await request.json() as AuthBody;
    bodies.push(body);
    for (const waiter of waiters.filter((w) => bodies.length >= w.count)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
    const answer = stub.policy(body);
    if (answer.hold) await new Promise<void>((resolve) => held.add(resolve));
    answered++;
    return new Response(JSON.stringify({ status: answer.status }), { status: answer.status });
  });

  const stub: StubAuthorizer = {
    url: `http://127.0.0.1:${server.addr.port}/authorize`,
    port: server.addr.port,
    bodies,
    requests,
    policy,
    get answered() {
      return answered;
    },
    received(count) {
      if (bodies.length >= count) return Promise.resolve();
      const { promise, resolve } = Promise.withResolvers<void>();
      waiters.push({ count, resolve });
      return withTimeout(promise, `${count} authorizer calls`);
    },
    commandsSince(from) {
      return bodies.slice(from).map((body) => body.command);
    },
    release() {
      for (const resolve of held) resolve();
      held.clear();
    },
    async [Symbol.asyncDispose]() {
      stub.release();
      await server.shutdown();
    },
  };
  return stub;
}

/** A port nothing listens on. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

// ---------------------------------------------------------------------------
// Helpers

/** A server asking `stub`, with `overrides`. */
function serverFor(stub: { url: string }, overrides: Partial<Config> = {}): TestServer {
  return startServer({ authorizerUrl: stub.url, ...overrides });
}

/** Sends a WebSocket upgrade request by hand, to see the HTTP answer. */
function upgrade(server: TestServer, query = ""): Promise<Response> {
  return fetch(`${server.url}/ws${query}`, {
    headers: {
      upgrade: "websocket",
      connection: "upgrade",
      "sec-websocket-version": "13",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    },
  });
}

let probes = 0;

/** Proves the server still works: a fresh client connects, logs in, joins and hears itself. */
async function assertServes(server: TestServer): Promise<void> {
  const probe = await server.connect();
  try {
    const name = `probe${++probes}`;
    assert.equal((await probe.login(name)).name, name);
    await probe.join("probe");
    probe.send({ type: "broadcast", channel: "probe", text: "still here" });
    assert.equal((await probe.nextOf("message")).text, "still here");
  } finally {
    await probe.close();
  }
}

/** The next frame, which must be `{"type":"error","code":code,…}`. */
async function nextError(client: TestClient, code: string, ref?: unknown): Promise<Frame> {
  const frame = await client.next();
  assert.equal(frame.type, "error", `expected an error, got ${JSON.stringify(frame)}`);
  assert.equal(frame.code, code);
  assert.equal(typeof frame.message, "string");
  assert.equal(frame.ref, ref);
  return frame;
}

/** Bob's own broadcast comes back to him next: nothing else was sent to him in between. */
async function assertNothingElseFor(client: TestClient, channel: string): Promise<void> {
  client.send({ type: "broadcast", channel, text: "marker" });
  const frame = await client.next();
  assert.equal(frame.type, "message", `expected the marker, got ${JSON.stringify(frame)}`);
  assert.equal(frame.text, "marker");
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

const canonical = (name: string) =>
  name.split("-").map((part) => part.charAt(0).toUpperCase() + part.slice(1).toLowerCase())
    .join("-");

// ---------------------------------------------------------------------------
// Upgrades

Deno.test("authorizer: an allowed upgrade opens; the connect body carries canonical headers and query lists", async () => {
  await using stub = startAuthorizer();
  await using server = serverFor(stub);
  const client = await openClient(`${server.wsUrl}?room=a&room=b&solo=1`);
  try {
    assert.equal(client.hello.type, "hello");
    assert.equal(stub.bodies.length, 1, "one call per upgrade");
    const body = stub.bodies[0];
    assert.deepEqual(
      Object.keys(body).sort(),
      ["args", "command", "dialect"],
      "no name on connect",
    );
    assert.equal(body.command, "connect");
    assert.equal(body.dialect, "native");
    assert.deepEqual(Object.keys(body.args).sort(), ["headers", "path", "query"]);
    assert.equal(body.args.path, "/ws");
    assert.deepEqual(body.args.query, { room: ["a", "b"], solo: ["1"] });
    const headers: Record<string, unknown> = body.args.headers;
    assert.deepEqual(headers["Sec-Websocket-Version"], ["13"]);
    assert.deepEqual(headers["Upgrade"], ["websocket"]);
    assert.deepEqual(headers["Host"], [new URL(server.url).host]);
    assert.equal((headers["Sec-Websocket-Key"] as string[]).length, 1);
    for (const [name, values] of Object.entries(headers)) {
      assert.equal(name, canonical(name), `header ${name} is in canonical form`);
      assert.ok(
        Array.isArray(values) && values.length > 0 &&
          values.every((value) => typeof value === "string"),
        `header ${name} is a list of strings`,
      );
    }
    assert.deepEqual(stub.requests[0], { method: "POST", contentType: "application/json" });

    const plain = await openClient(server.wsUrl);
    await plain.close();
    assert.deepEqual(stub.bodies[1].args.query, {}, "no query: an empty object");
  } finally {
    await client.close();
  }
});

interface UpgradeCase {
  name: string;
  /** The stub's answer to the connect call; null: the authorizer is not running at all. */
  answer: Answer | null;
  status: number;
  code: string;
  config?: Partial<Config>;
}

const UPGRADE_CASES: UpgradeCase[] = [
  { name: "403 is refused with 403", answer: { status: 403 }, status: 403, code: "forbidden" },
  { name: "401 is refused with 403", answer: { status: 401 }, status: 403, code: "forbidden" },
  { name: "404 is refused with 403", answer: { status: 404 }, status: 403, code: "forbidden" },
  {
    name: "500 is 503 authorizer_down",
    answer: { status: 500 },
    status: 503,
    code: "authorizer_down",
  },
  {
    name: "503 is 503 authorizer_down",
    answer: { status: 503 },
    status: 503,
    code: "authorizer_down",
  },
  {
    name: "an answer slower than authorizerTimeoutMs is 503",
    answer: { status: 200, hold: true },
    status: 503,
    code: "authorizer_down",
    config: { authorizerTimeoutMs: 150 },
  },
  {
    name: "an authorizer that is not running is 503",
    answer: null,
    status: 503,
    code: "authorizer_down",
  },
];

Deno.test("authorizer: upgrades are refused with the exact status, and the server recovers", async (t) => {
  for (const c of UPGRADE_CASES) {
    await t.step(c.name, async () => {
      // Not running: a port nothing listens on; the stub comes up there afterwards.
      const port = c.answer === null ? closedPort() : 0;
      const down = c.answer === null ? `http://127.0.0.1:${port}/authorize` : null;
      let stub = down === null ? startAuthorizer(() => c.answer!) : null;
      try {
        await using server = serverFor({ url: down ?? stub!.url }, c.config);
        const response = await upgrade(server);
        const retryAfter = response.headers.get("retry-after");
        await assertJsonError(response, c.status, c.code);
        if (c.status === 503) assert.equal(retryAfter, "5");
        else assert.equal(retryAfter, null);
        if (c.answer?.hold) assert.equal(stub!.answered, 0, "refused before the stub answered");
        await assert.rejects(openClient(server.wsUrl), "a real WebSocket cannot open either");
        assert.equal(server.app.connections, 0);
        if (stub !== null) {
          assert.deepEqual(stub.commandsSince(0), ["connect", "connect"]);
        }
        const health = await fetch(`${server.url}/healthz`);
        assert.equal(health.status, 200, "plain HTTP never asks the authorizer");
        await health.body?.cancel();

        // The authorizer allows again (or comes up): a new client is served.
        if (stub === null) stub = startAuthorizer(allowAll, port);
        else stub.policy = allowAll;
        await assertServes(server);
      } finally {
        await stub?.[Symbol.asyncDispose]();
      }
    });
  }
});

// ---------------------------------------------------------------------------
// Commands

Deno.test("authorizer: login, join and broadcast are asked about with their args and the name", async () => {
  await using stub = startAuthorizer();
  await using server = serverFor(stub);
  const bob = await server.user("bob", "x");
  const alice = await server.connect();
  const start = stub.bodies.length;

  alice.send({ type: "login", name: "alice", ref: 1 });
  assert.deepEqual(await alice.next(), { type: "welcome", name: "alice", ref: 1 });
  alice.send({ type: "join", channel: "x", ref: "j" });
  const joined = await alice.next();
  assert.match(joined.epoch, /^.+$/);
  assert.deepEqual(joined, {
    type: "joined",
    channel: "x",
    members: ["bob", "alice"],
    epoch: joined.epoch,
    seq: 0,
    messages: [],
    ref: "j",
  });
  assert.deepEqual(await bob.next(), {
    type: "presence",
    channel: "x",
    event: "join",
    name: "alice",
  });
  alice.send({ type: "broadcast", channel: "x", text: "hi" });
  for (const client of [alice, bob]) {
    const message = await client.next();
    assert.equal(message.type, "message");
    assert.equal(message.from, "alice");
    assert.equal(message.text, "hi");
  }
  assert.deepEqual(stub.bodies.slice(start), [
    { command: "login", args: { name: "alice" }, name: null, dialect: "native" },
    { command: "join", args: { channel: "x" }, name: "alice", dialect: "native" },
    { command: "broadcast", args: { channel: "x", text: "hi" }, name: "alice", dialect: "native" },
  ]);
  assert.ok(
    stub.requests.every((r) => r.method === "POST" && r.contentType === "application/json"),
  );
});

Deno.test("authorizer: ping, channels, leave and logout never ask the authorizer", async (t) => {
  await using stub = startAuthorizer();
  await using server = serverFor(stub);
  const alice = await server.user("alice", "x");
  const cases: { name: string; send: unknown; reply: Frame }[] = [
    { name: "ping", send: { type: "ping", ref: 1 }, reply: { type: "pong", ref: 1 } },
    {
      name: "channels",
      send: { type: "channels" },
      reply: { type: "channels", channels: [{ name: "x", members: 1 }] },
    },
    { name: "leave", send: { type: "leave", channel: "x" }, reply: { type: "left", channel: "x" } },
    { name: "logout", send: { type: "logout" }, reply: { type: "logged_out" } },
    {
      name: "ping after logout",
      send: { type: "ping" },
      reply: { type: "pong" },
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const before = stub.bodies.length;
      alice.send(c.send);
      // The reply would have waited for a check, so a call would be recorded by now.
      assert.deepEqual(await alice.next(), c.reply);
      assert.deepEqual(stub.commandsSince(before), []);
    });
  }
  assert.deepEqual(stub.commandsSince(0), ["connect", "login", "join"]);
});

interface DenialCase {
  name: string;
  command: "login" | "join" | "broadcast";
  status: number;
}

const DENIAL_CASES: DenialCase[] = [
  { name: "a denied login (403) is forbidden and takes no name", command: "login", status: 403 },
  { name: "a denied join (403) is forbidden and joins nothing", command: "join", status: 403 },
  { name: "a denied join (404) is forbidden and joins nothing", command: "join", status: 404 },
  {
    name: "a denied broadcast (401) is forbidden and sends nothing",
    command: "broadcast",
    status: 401,
  },
];

/** Whether `body` is alice's `command`. */
const isAlices = (body: AuthBody, command: string) =>
  body.command === command && (body.name ?? body.args.name) === "alice";

/** Bob in "x", and alice just short of `command`: logged in for a join, in "x" for a broadcast. */
async function beforeAlices(
  server: TestServer,
  command: "login" | "join" | "broadcast",
): Promise<{ bob: TestClient; alice: TestClient }> {
  const bob = await server.user("bob", "x");
  const alice = await server.connect();
  if (command !== "login") await alice.login("alice");
  if (command === "broadcast") {
    await alice.join("x");
    assert.equal((await bob.next()).event, "join");
  }
  return { bob, alice };
}

Deno.test("authorizer: a denied command is forbidden and has no effect", async (t) => {
  for (const c of DENIAL_CASES) {
    await t.step(c.name, async () => {
      await using stub = startAuthorizer();
      await using server = serverFor(stub);
      const { bob, alice } = await beforeAlices(server, c.command);
      stub.policy = (body) => isAlices(body, c.command) ? { status: c.status } : ALLOW;
      const frame = c.command === "login"
        ? { type: "login", name: "alice", ref: "r" }
        : c.command === "join"
        ? { type: "join", channel: "x", ref: "r" }
        : { type: "broadcast", channel: "x", text: "denied", ref: "r" };
      alice.send(frame);
      const refusal = await nextError(alice, "forbidden", "r");
      assert.match(refusal.message, new RegExp(c.command));
      assert.equal(stub.bodies.at(-1)!.command, c.command);

      // No effect: the others heard nothing, and the state is unchanged.
      await assertNothingElseFor(bob, "x");
      if (c.command === "login") {
        alice.send({ type: "logout" });
        await nextError(alice, "not_logged_in");
        stub.policy = allowAll;
        const other = await server.connect();
        assert.equal((await other.login("alice")).name, "alice", "the name is still free");
      } else if (c.command === "join") {
        alice.send({ type: "leave", channel: "x" });
        await nextError(alice, "not_joined");
        alice.send({ type: "channels" });
        assert.deepEqual(await alice.next(), {
          type: "channels",
          channels: [{ name: "x", members: 1 }],
        });
      } else {
        const message = await alice.next();
        assert.equal(message.text, "marker", "alice hears bob's marker, not her denied message");
      }
      alice.send({ type: "ping" });
      assert.equal((await alice.next()).type, "pong", "a refusal never closes the connection");
      stub.policy = allowAll;
      await assertServes(server);
    });
  }
});

Deno.test("authorizer: denied logins count as failed logins and close with 4401", async () => {
  await using stub = startAuthorizer((body) => isAlices(body, "login") ? { status: 403 } : ALLOW);
  await using server = serverFor(stub);
  const alice = await server.connect();
  for (let i = 1; i <= MAX_FAILED_LOGINS; i++) {
    alice.send({ type: "login", name: "alice", ref: i });
    if (i < MAX_FAILED_LOGINS) await nextError(alice, "forbidden", i);
  }
  assert.equal((await withTimeout(alice.closed, "the close")).code, CloseCode.Unauthorized);
  assert.deepEqual(stub.commandsSince(1), Array(MAX_FAILED_LOGINS).fill("login"));
  await assertServes(server);
});

interface DownCase {
  command: "login" | "join" | "broadcast";
  answer: Answer;
  why: string;
}

const DOWN_CASES: DownCase[] = (["login", "join", "broadcast"] as const).flatMap((command) => [
  { command, answer: { status: 500 }, why: "500" },
  { command, answer: { status: 503 }, why: "503" },
  { command, answer: { status: 200, hold: true }, why: "a timeout" },
]);

Deno.test("authorizer: a command the authorizer cannot answer closes the socket with 1013", async (t) => {
  for (const c of DOWN_CASES) {
    await t.step(`${c.command} with ${c.why}`, async () => {
      await using stub = startAuthorizer();
      await using server = serverFor(stub, { authorizerTimeoutMs: 150 });
      const { bob, alice } = await beforeAlices(server, c.command);
      stub.policy = (body) => isAlices(body, c.command) ? c.answer : ALLOW;
      const answered = stub.answered;
      alice.send(
        c.command === "login"
          ? { type: "login", name: "alice" }
          : c.command === "join"
          ? { type: "join", channel: "x" }
          : { type: "broadcast", channel: "x", text: "lost" },
      );
      assert.deepEqual(await withTimeout(alice.closed, "the close"), {
        code: CloseCode.TryAgainLater,
        reason: "Authorizer unavailable",
      });
      if (c.answer.hold) assert.equal(stub.answered, answered, "closed before the stub answered");
      assert.deepEqual(alice.buffered, [], "no reply before the close");

      // No effect: bob hears at most alice leaving the channel she was in, never her command.
      if (c.command === "broadcast") {
        assert.deepEqual(await bob.next(), {
          type: "presence",
          channel: "x",
          event: "leave",
          name: "alice",
        });
      }
      await assertNothingElseFor(bob, "x");
      stub.policy = allowAll;
      const other = await server.connect();
      assert.equal((await other.login("alice")).name, "alice", "alice's name was released");
      await other.close();
      await assertServes(server);
    });
  }
});

Deno.test("authorizer: commands sent back to back take effect in order while checks are pending", async () => {
  await using stub = startAuthorizer();
  await using server = serverFor(stub);
  const alice = await server.connect();
  stub.policy = () => ({ status: 200, hold: true });
  alice.send({ type: "login", name: "alice", ref: 1 });
  alice.send({ type: "ping", ref: 2 }); // needs no check, yet waits for the login's
  alice.send({ type: "join", channel: "x", ref: 3 });
  alice.send({ type: "broadcast", channel: "x", text: "first", ref: 4 });
  alice.send({ type: "broadcast", channel: "x", text: "second", ref: 5 });
  // The login's check is answered only once the server has read every frame behind it.
  await stub.received(2);
  await until("the server to read all five frames", () => server.app.metrics.framesIn === 5);
  assert.equal(stub.answered, 1, "the login's check is still pending");
  stub.policy = allowAll;
  stub.release();
  assert.deepEqual(await alice.next(), { type: "welcome", name: "alice", ref: 1 });
  assert.deepEqual(await alice.next(), { type: "pong", ref: 2 });
  const joined = await alice.next();
  assert.match(joined.epoch, /^.+$/);
  assert.deepEqual(joined, {
    type: "joined",
    channel: "x",
    members: ["alice"],
    epoch: joined.epoch,
    seq: 0,
    messages: [],
    ref: 3,
  });
  // Each broadcast carried a ref, so each is acknowledged (`sent`) right after it is delivered.
  for (const [i, text] of ["first", "second"].entries()) {
    const message = await alice.next();
    assert.equal(message.type, "message");
    assert.equal(message.text, text);
    assert.equal(message.seq, i + 1);
    assert.deepEqual(await alice.next(), {
      type: "sent",
      channel: "x",
      id: message.id,
      seq: i + 1,
      ref: i + 4,
    });
  }
  assert.deepEqual(stub.commandsSince(0), ["connect", "login", "join", "broadcast", "broadcast"]);
});

// ---------------------------------------------------------------------------
// The client in lib/auth/webhook.ts, with an injected fetch

const OPTIONS: Omit<AuthorizerOptions, "fetch"> = {
  url: "http://authorizer.test/check",
  timeoutMs: 60_000,
  maxConcurrent: 2,
  maxQueued: 1,
};

Deno.test("authorizer: createAuthorizer bounds calls in flight and answers down when its queue is full", async () => {
  const fake = fakeFetch();
  const authorizer = createAuthorizer({ ...OPTIONS, fetch: fake.fetch });
  const one = authorizer.decide({ n: 1 });
  const two = authorizer.decide({ n: 2 });
  const three = authorizer.decide({ n: 3 }); // waits for a slot
  await fake.called(2);
  assert.equal(
    await withTimeout(authorizer.decide({ n: 4 }), "the fourth call"),
    "down",
    "slots and queue full: down at once",
  );
  assert.deepEqual(fake.calls.map((c) => c.body), [{ n: 1 }, { n: 2 }], "only two in flight");
  assert.equal(fake.calls[0].url, OPTIONS.url);
  assert.equal(fake.calls[0].init.method, "POST");
  assert.deepEqual(fake.calls[0].init.headers, { "content-type": "application/json" });
  assert.ok(fake.calls[0].init.signal instanceof AbortSignal);

  // A slot frees: the queued call goes out; the queue has room for one again.
  fake.calls[0].release(200);
  assert.equal(await one, "allow");
  await fake.called(3);
  assert.deepEqual(fake.calls[2].body, { n: 3 });
  const five = authorizer.decide({ n: 5 });
  assert.equal(await authorizer.decide({ n: 6 }), "down", "full again: down at once");

  fake.calls[1].release(403);
  assert.equal(await two, "deny");
  await fake.called(4);
  assert.deepEqual(fake.calls[3].body, { n: 5 });
  fake.calls[2].release(503);
  fake.calls[3].release(200);
  assert.deepEqual(await Promise.all([three, five]), ["down", "allow"]);
  assert.equal(fake.calls.length, 4, "the refused calls never reached fetch");
  assert.equal(fake.counts.peak, 2, "never more than maxConcurrent in flight");

  // Everything settled: two slots are free again.
  const [seven, eight] = [authorizer.decide({ n: 7 }), authorizer.decide({ n: 8 })];
  await fake.called(6);
  fake.calls[4].release(200);
  fake.calls[5].release(200);
  assert.deepEqual(await Promise.all([seven, eight]), ["allow", "allow"]);
});

Deno.test("authorizer: createAuthorizer maps statuses, network errors and timeouts to decisions", async (t) => {
  const statuses: [number, Decision][] = [
    [200, "allow"],
    [201, "deny"],
    [204, "deny"],
    [302, "deny"],
    [400, "deny"],
    [401, "deny"],
    [403, "deny"],
    [404, "deny"],
    [429, "deny"],
    [500, "down"],
    [502, "down"],
    [503, "down"],
    [504, "down"],
  ];
  for (const [status, decision] of statuses) {
    await t.step(`${status} is ${decision}`, async () => {
      const fake = fakeFetch();
      const decided = createAuthorizer({ ...OPTIONS, fetch: fake.fetch }).decide({});
      await fake.called(1);
      fake.calls[0].release(status);
      assert.equal(await decided, decision);
    });
  }
  await t.step("a network error is down", async () => {
    const failing = (() => Promise.reject(new TypeError("connection refused"))) as typeof fetch;
    assert.equal(await createAuthorizer({ ...OPTIONS, fetch: failing }).decide({}), "down");
  });
  await t.step("no answer within timeoutMs is down, and the call is aborted", async () => {
    const fake = fakeFetch();
    const decided = createAuthorizer({ ...OPTIONS, timeoutMs: 20, fetch: fake.fetch }).decide({});
    assert.equal(await withTimeout(decided, "the timeout"), "down");
    assert.equal(fake.calls[0].init.signal?.aborted, true);
  });
});

Deno.test({
  name:
    "authorizer: createAuthorizer never runs more than maxConcurrent calls, even one made as a slot frees",
  // A finished call hands its slot to the next in line; a call made in between must wait.
  async fn() {
    for (let gap = 0; gap <= 10; gap++) {
      const fake = fakeFetch();
      const authorizer = createAuthorizer({
        ...OPTIONS,
        maxConcurrent: 1,
        maxQueued: 4,
        fetch: fake.fetch,
      });
      const first = authorizer.decide("first");
      const queued = authorizer.decide("queued");
      await fake.called(1);
      fake.calls[0].release(200);
      for (let i = 0; i < gap; i++) await Promise.resolve();
      const late = authorizer.decide("late");
      for (const n of [2, 3]) {
        await fake.called(n);
        fake.calls[n - 1].release(200);
      }
      assert.deepEqual(await Promise.all([first, queued, late]), ["allow", "allow", "allow"]);
      assert.equal(fake.counts.peak, 1, `a call made ${gap} microtasks after a slot freed`);
    }
  },
});
