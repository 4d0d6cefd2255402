/**
 * A churn soak (issue 15): clients of one channel disconnect and reconnect
 * at random (a fixed seed) while the others keep talking, and each re-joins
 * with `since` the last seq it saw. Every client must end with the channel's
 * whole sequence 1..N, no gap, no duplicate, in order, and every recovery
 * must say `recovered: true` (the history is sized so nothing is trimmed).
 * On one node, then on two nodes of a memory cluster where each reconnect
 * picks a node at random. Bounded: 20 clients, 400 messages.
 */
import assert from "node:assert/strict";
import type { Config } from "../../lib/config.ts";
import { createMemoryCluster } from "../../lib/cluster/engine.ts";
import { type Frame, seeded, startServer, type TestClient, type TestServer } from "../_helpers.ts";
import { range } from "./_history.ts";

const CLIENTS = 20;
const MESSAGES = 400;
const SEED = 15;
/** Of the steps that pick a connected client, the share that disconnects it. */
const DISCONNECT = 0.15;
/** Large enough that no recovery is ever cut short: every message stays within reach. */
const OVERRIDES: Partial<Config> = {
  historyLimit: 1000,
  historySize: 1000,
  rateBurst: 100_000,
  connectRate: 10_000,
};

/** One client of the soak across its connections: what it saw, and where it stands. */
interface Member {
  readonly index: number;
  connection: TestClient | null;
  /** Connections so far; each logs in under a new name (a closed one's may not be free yet). */
  generation: number;
  /** The seqs it received, in order, over every connection. */
  readonly seen: number[];
  last: { epoch: string; seq: number };
  recoveries: number;
}

/** Runs the soak against `nodes` (clients reconnect to one at random); returns the members. */
async function churn(nodes: TestServer[]): Promise<Member[]> {
  const rand = seeded(SEED);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)];
  /** Every message's id by seq, as the first member to see it saw it. */
  const ids = new Map<number, string>();
  let epoch = "";

  /** Takes in one frame `member` received; fails on anything out of order. */
  const take = (member: Member, frame: Frame) => {
    const who = `client ${member.index}`;
    const append = (message: Frame) => {
      assert.equal(
        message.seq,
        member.last.seq + 1,
        `${who}: seq ${message.seq} after ${member.last.seq} (a gap, a duplicate or out of order)`,
      );
      const known = ids.get(message.seq);
      if (known === undefined) ids.set(message.seq, message.id);
      else assert.equal(message.id, known, `${who}: seq ${message.seq} names another message`);
      member.seen.push(message.seq);
      member.last = { epoch: member.last.epoch, seq: message.seq };
    };
    switch (frame.type) {
      case "joined":
        assert.equal(frame.epoch, epoch, `${who}: the epoch changed`);
        if (frame.recovered !== undefined) {
          assert.equal(frame.recovered, true, `${who}: not recovered after seq ${member.last.seq}`);
          member.recoveries++;
        }
        frame.messages.forEach(append);
        assert.equal(member.last.seq, frame.seq, `${who}: joined's messages end at its seq`);
        break;
      case "message":
        append(frame);
        break;
      case "welcome":
      case "presence":
        break;
      default:
        assert.fail(`${who}: unexpected ${JSON.stringify(frame)}`);
    }
  };
  /** Takes in what `member` has received and not read yet (never waits). */
  const drain = (member: Member) => {
    const connection = member.connection;
    if (connection === null) return;
    for (const frame of connection.buffered.splice(0)) take(member, frame);
  };
  /** Reads `member`'s frames until `done` says so. */
  const readUntil = async (member: Member, done: () => boolean) => {
    drain(member);
    while (!done()) take(member, await member.connection!.next());
  };

  /** Opens a connection for `member`, logs in and joins; `joined` is read later, with the rest. */
  const connect = async (member: Member, node: TestServer) => {
    const connection = await node.connect();
    member.connection = connection;
    connection.send({ type: "login", name: `c${member.index}g${++member.generation}` });
    connection.send(
      member.last.epoch === ""
        ? { type: "join", channel: "room", history: 0 }
        : { type: "join", channel: "room", since: member.last },
    );
  };

  const members: Member[] = range(1, CLIENTS).map((index) => ({
    index,
    connection: null,
    generation: 0,
    seen: [],
    last: { epoch: "", seq: 0 },
    recoveries: 0,
  }));
  // Everybody in before the first message, so every sequence starts at 1.
  for (const member of members) {
    await connect(member, pick(nodes));
    const joined = await member.connection!.nextOf("joined");
    epoch ||= joined.epoch;
    member.last = { epoch: joined.epoch, seq: joined.seq };
    assert.equal(joined.seq, 0);
  }

  let sent = 0;
  let reconnects = 0;
  while (sent < MESSAGES) {
    const member = pick(members);
    for (const each of members) drain(each);
    if (member.connection === null) {
      // Re-joins with since; its `joined` races whatever the others send meanwhile.
      await connect(member, pick(nodes));
      reconnects++;
    } else if (rand() < DISCONNECT) {
      const connection = member.connection;
      await connection.close();
      // What arrived before the close was received; the rest it recovers.
      drain(member);
      member.connection = null;
    } else {
      // A burst, then sometimes a wait for its last one: messages in flight while others join.
      const burst = 1 + Math.floor(rand() * 5);
      let text = "";
      for (let i = 0; i < burst && sent < MESSAGES; i++) {
        text = `${member.index}:${++sent}`;
        member.connection.send({ type: "broadcast", channel: "room", text });
      }
      if (rand() < 0.5) continue;
      // Paced by the sender's own copy (it may be joining still: its broadcast waits for that).
      drain(member);
      let own = false;
      const connection = member.connection;
      while (!own) {
        const frame = await connection.next();
        take(member, frame);
        own = frame.type === "message" && frame.text === text;
      }
    }
  }
  for (const member of members) {
    if (member.connection === null) await connect(member, pick(nodes));
  }
  for (const member of members) await readUntil(member, () => member.last.seq === MESSAGES);

  assert.ok(reconnects >= CLIENTS, `churn: ${reconnects} reconnects`);
  for (const member of members) {
    assert.deepEqual(member.seen, range(1, MESSAGES), `client ${member.index}`);
  }
  assert.equal(ids.size, MESSAGES);
  return members;
}

Deno.test("churn: clients that disconnect and recover at random all end with the whole sequence, on one node", async () => {
  await using server = startServer(OVERRIDES);
  const members = await churn([server]);
  assert.ok(members.some((member) => member.recoveries >= 2), "some recovered more than once");
});

Deno.test("churn: clients that recover on a random node of two all end with the whole sequence", async () => {
  const cluster = createMemoryCluster();
  const nodes = [0, 1].map((i) =>
    startServer(OVERRIDES, { engine: cluster.engine(), nodeId: `node${i}` })
  );
  try {
    await churn(nodes);
  } finally {
    for (const node of nodes) await node[Symbol.asyncDispose]();
  }
});
