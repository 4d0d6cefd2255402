/**
 * Whole hubbub instances in Web Workers of one process, each opening one
 * Deno KV file itself, served on a port of its own: how `deno serve
 * --parallel` runs hubbub (one isolate per core, no memory in common, one
 * KV), and how Deno Deploy runs its instances. A message and presence cross
 * instances; a client of an instance whose worker was terminated (no
 * goodbye, as a crash or an eviction) recovers on another with `since`;
 * such an instance's names stay taken, then come free within the lease, and
 * its members leave the others' channels once it has been silent for a
 * lease. `tests/e2e/parallel_test.ts` runs `deno serve --parallel` itself.
 */
import assert from "node:assert/strict";
import { MAX_FAILED_LOGINS } from "../../lib/app/commands.ts";
import type { Config } from "../../lib/config.ts";
import { openClient, type TestClient, WAIT_MS, withTimeout } from "../_helpers.ts";
import { kvDir } from "./_kv.ts";
import type { InstanceCommand, InstanceEvent } from "./_kv_instance.ts";

/** Enough for tests that connect and log in many times from one address. */
const GENEROUS: Partial<Config> = {
  connectRate: 10_000,
  rateLimit: 10_000,
  rateBurst: 10_000,
  maxConnectionsPerIp: 10_000,
};

/** A hubbub instance in a worker. */
interface Instance {
  readonly wsUrl: string;
  /** A new client of this instance (it has read its hello). */
  connect(): Promise<TestClient>;
  /** A client logged in as `name`, in `channels`. */
  user(name: string, ...channels: string[]): Promise<TestClient>;
  /** Ends the worker at once: no goodbye, no release, sockets cut. */
  terminate(): void;
}

/** `count` instances on one KV file, each up and knowing the others; disposed together. */
async function startInstances(count: number, overrides: Partial<Config> = {}) {
  const dir = await kvDir();
  const clients: TestClient[] = [];
  const workers: {
    worker: Worker;
    events: InstanceEvent[];
    marked: Set<string>;
    terminated: boolean;
  }[] = [];
  const waiters = new Set<() => void>();
  /** Resolves once `done()` holds, checked after every event of any instance. */
  const until = (what: string, done: () => boolean, ms?: number): Promise<void> => {
    if (done()) return Promise.resolve();
    let check!: () => void;
    const met = new Promise<void>((resolve) => {
      check = () => done() && resolve();
      waiters.add(check);
    });
    return withTimeout(met, what, ms).finally(() => waiters.delete(check));
  };
  const send = (i: number, command: InstanceCommand) => workers[i].worker.postMessage(command);
  const live = () => workers.flatMap((w, i) => w.terminated ? [] : [i]);
  let rounds = 0;

  const dispose = async () => {
    await Promise.all(clients.map((client) => client.close()));
    for (const [i, w] of workers.entries()) {
      if (w.terminated) continue;
      send(i, { t: "stop" });
      await until(`instance ${i} to stop`, () => w.events.some((e) => e.t === "stopped"))
        .finally(() => w.worker.terminate());
    }
    await dir[Symbol.asyncDispose]();
  };

  for (let i = 0; i < count; i++) {
    const worker = new Worker(new URL("./_kv_instance.ts", import.meta.url), { type: "module" });
    const w = {
      worker,
      events: [] as InstanceEvent[],
      marked: new Set<string>(),
      terminated: false,
    };
    worker.onmessage = ({ data }: MessageEvent<InstanceEvent>) => {
      w.events.push(data);
      if (data.t === "marked") w.marked.add(data.id);
      for (const waiter of [...waiters]) waiter();
    };
    workers.push(w);
    send(i, {
      t: "start",
      path: dir.path(),
      node: `node${i}`,
      overrides: { ...GENEROUS, ...overrides },
    });
  }
  const instances: Instance[] = workers.map((w) => {
    const ready = () => w.events.find((e) => e.t === "ready") as { port: number } | undefined;
    const instance: Instance = {
      get wsUrl() {
        return `ws://127.0.0.1:${ready()!.port}/ws`;
      },
      async connect() {
        const client = await openClient(instance.wsUrl);
        clients.push(client);
        return client;
      },
      async user(name, ...channels) {
        const client = await instance.connect();
        assert.equal((await client.login(name)).name, name);
        for (const channel of channels) await client.join(channel);
        return client;
      },
      terminate() {
        w.terminated = true;
        w.worker.terminate();
      },
    };
    return instance;
  });

  /**
   * Resolves once every live instance has delivered whatever any of them
   * wrote before the call: each publishes a marker behind its own writes,
   * and the bus delivers in one order.
   */
  const settled = async () => {
    const round = ++rounds;
    const senders = live();
    for (const i of senders) send(i, { t: "mark", id: `${round}:${i}` });
    await until(
      "every instance to deliver what was written before",
      () => senders.every((r) => senders.every((i) => workers[r].marked.has(`${round}:${i}`))),
    );
  };

  try {
    // A worker's first start type-checks its module: slow on a busy machine.
    const failed = () => workers.flatMap((w) => w.events.filter((e) => e.t === "failed"));
    await until(
      "every instance to be up",
      () =>
        failed().length > 0 ||
        workers.every((w) => ["ready", "up"].every((t) => w.events.some((e) => e.t === t))),
      60_000,
    );
    if (failed().length > 0) throw new Error(`An instance failed: ${JSON.stringify(failed())}`);
    // Every instance has heard every other's hello.
    await settled();
  } catch (error) {
    await dispose();
    throw error;
  }
  return Object.assign(instances, { settled, [Symbol.asyncDispose]: dispose });
}

/** A socket cut with no close frame (Deno's client says 0 or 1006): no goodbye was sent. */
function assertDropped(close: { code: number }) {
  assert.ok(close.code === 0 || close.code === 1006, `closed with ${close.code}`);
}

/**
 * Logs in as `name` on `instance` until it is not taken, each attempt
 * awaiting the last one's answer (a new connection before refusals in a
 * row would end it); the client, and how many attempts it took.
 */
async function loginOnceFree(instance: Instance, name: string, ms: number) {
  let giveUp = false;
  const attempts = async () => {
    for (let tries = 1;;) {
      const client = await instance.connect();
      for (let i = 1; i < MAX_FAILED_LOGINS; i++, tries++) {
        if (giveUp) return null;
        client.send({ type: "login", name });
        const reply = await client.next();
        if (reply.type === "welcome") return { client, tries };
        assert.equal(reply.code, "name_taken", JSON.stringify(reply));
      }
      await client.close();
    }
  };
  try {
    return (await withTimeout(attempts(), `"${name}" to come free`, ms))!;
  } finally {
    giveUp = true;
  }
}

Deno.test("kv instances: a message and presence cross instances; names are one, member lists are the whole cluster's", async () => {
  await using instances = await startInstances(3);
  const [one, two, three] = instances;
  const alice = await one.user("alice", "room");
  // Member lists are each instance's view: the others' joins have reached it.
  await instances.settled();
  const bob = await two.user("bob");
  assert.deepEqual((await bob.join("room")).members, ["alice", "bob"]);
  assert.deepEqual(await alice.nextOf("presence"), {
    type: "presence",
    channel: "room",
    event: "join",
    name: "bob",
  });
  await instances.settled();
  const carol = await three.user("carol");
  assert.deepEqual((await carol.join("room")).members, ["alice", "bob", "carol"]);
  for (const client of [alice, bob]) assert.equal((await client.nextOf("presence")).name, "carol");

  bob.send({ type: "broadcast", channel: "room", text: "hi from two" });
  for (const client of [alice, bob, carol]) {
    const message = await client.nextOf("message");
    assert.deepEqual([message.from, message.text, message.seq], ["bob", "hi from two", 1]);
  }
  // A name held on one instance is taken on every other.
  const impostor = await three.connect();
  impostor.send({ type: "login", name: "ALICE", ref: 1 });
  const refused = await impostor.next();
  assert.deepEqual([refused.type, refused.code, refused.ref], ["error", "name_taken", 1]);
  // A member that leaves is gone on every instance.
  await carol.close();
  for (const client of [alice, bob]) {
    assert.deepEqual(await client.nextOf("presence"), {
      type: "presence",
      channel: "room",
      event: "leave",
      name: "carol",
    });
  }
});

Deno.test("kv instances: after an instance's worker is terminated, its client recovers on another with since: exactly what it missed", async () => {
  await using instances = await startInstances(2);
  const [one, two] = instances;
  const alice = await one.user("alice");
  const joined = await alice.join("room");
  const carol = await two.user("carol", "room");
  for (const text of ["first", "second"]) {
    carol.send({ type: "broadcast", channel: "room", text });
  }
  const seen = [await alice.nextOf("message"), await alice.nextOf("message")];
  assert.deepEqual(seen.map((m) => [m.text, m.seq]), [["first", 1], ["second", 2]]);
  for (let i = 0; i < 2; i++) await carol.nextOf("message"); // her own

  one.terminate();
  assertDropped(await withTimeout(alice.closed, "alice's socket to drop"));
  const missed = [];
  for (const text of ["while", "she", "was away"]) {
    carol.send({ type: "broadcast", channel: "room", text });
  }
  // carol's own come back numbered: the log goes on without the dead instance.
  for (let i = 0; i < 3; i++) missed.push(await carol.nextOf("message"));
  assert.deepEqual(missed.map((m) => m.seq), [3, 4, 5]);

  // Another name: hers stays with the dead instance until its lease runs out (the next test).
  const back = await two.user("alice-again");
  back.send({ type: "join", channel: "room", since: { epoch: joined.epoch, seq: seen[1].seq } });
  const recovered = await back.nextOf("joined");
  assert.deepEqual([recovered.epoch, recovered.recovered, recovered.seq], [joined.epoch, true, 5]);
  assert.deepEqual(
    recovered.messages.map((
      m: { text: string; seq: number; from: string },
    ) => [m.from, m.text, m.seq]),
    missed.map((m) => [m.from, m.text, m.seq]),
  );
  carol.send({ type: "broadcast", channel: "room", text: "live again" });
  const live = await back.nextOf("message");
  assert.deepEqual([live.text, live.seq], ["live again", 6]);
});

Deno.test("kv instances: an instance terminated without goodbye: its names stay taken, then come free within the lease; its members leave the others' channels", async () => {
  const LEASE_S = 2;
  await using instances = await startInstances(2, { nameLease: LEASE_S });
  const [one, two] = instances;
  const bob = await one.user("bob", "room");
  await instances.settled();
  const carol = await two.user("carol");
  assert.deepEqual((await carol.join("room")).members, ["bob", "carol"]);

  const start = performance.now();
  one.terminate();
  assertDropped(await withTimeout(bob.closed, "bob's socket to drop"));
  // Right after: the lease, renewed a moment ago, still holds the name.
  const early = await two.connect();
  early.send({ type: "login", name: "bob" });
  assert.equal((await early.next()).code, "name_taken", "taken right after the terminate");
  const takenMs = performance.now() - start;

  const leave = (async () => {
    const frame = await carol.nextOf("presence");
    return { frame, ms: performance.now() - start };
  })();
  const { client, tries } = await loginOnceFree(two, "bob", LEASE_S * 1000 + WAIT_MS);
  const freedMs = performance.now() - start;
  assert.ok(freedMs > takenMs);
  const left = await withTimeout(leave, "carol to hear bob leave", 2 * LEASE_S * 1000 + WAIT_MS);
  assert.deepEqual(left.frame, { type: "presence", channel: "room", event: "leave", name: "bob" });
  // The new bob is an ordinary member: he joins and is listed with carol.
  assert.deepEqual((await client.join("room")).members.toSorted(), ["bob", "carol"]);
  console.log(
    `lease ${LEASE_S} s: bob still taken ${
      Math.round(takenMs)
    } ms after the terminate, free after ${
      Math.round(freedMs)
    } ms (${tries} logins), presence leave after ${Math.round(left.ms)} ms`,
  );
});
