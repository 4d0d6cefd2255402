/**
 * Traffic and checks for the end-to-end history tests: senders that keep
 * acknowledged broadcasts in flight, members that record what they receive,
 * and the whole history of a channel read back by paging.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type Frame, openClient, type TestClient } from "../_helpers.ts";

/** A message as a client saw it: where it stands in its channel, and what it is. */
export type Seen = { seq: number; id: string; from: string; text: string };

/** The fields of a `message` (or `sent`) frame that identify it. */
export function seen(frame: Frame): Seen {
  return { seq: frame.seq, id: frame.id, from: frame.from, text: frame.text };
}

/** Whether `error` came from reading a socket that has closed (the server went away). */
function closedUnder(client: TestClient): boolean {
  return client.socket.readyState === WebSocket.CLOSED ||
    client.socket.readyState === WebSocket.CLOSING;
}

/** A client logged in as `name`, its `joined` frame for `channel` (`join` adds fields to it). */
export async function member(
  wsUrl: string,
  name: string,
  channel: string,
  join: Frame = {},
): Promise<{ client: TestClient; joined: Frame }> {
  const client = await openClient(wsUrl);
  try {
    const welcome = await client.login(name);
    assert.equal(welcome.name, name);
    client.send({ type: "join", channel, ...join });
    const joined = await client.next();
    assert.equal(joined.type, "joined", JSON.stringify(joined));
    return { client, joined };
  } catch (error) {
    await client.close();
    throw error;
  }
}

/**
 * Records every `message` of `channel` that `client` receives (any other frame but `presence`
 * fails), until `enough` says so after one or the socket closes; resolves with them.
 */
export async function watch(
  client: TestClient,
  channel: string,
  enough: (received: Seen[]) => boolean = () => false,
): Promise<Seen[]> {
  const received: Seen[] = [];
  for (;;) {
    let frame: Frame;
    try {
      frame = await client.next();
    } catch (error) {
      if (closedUnder(client)) return received;
      throw error;
    }
    if (frame.type === "presence") continue;
    assert.equal(frame.type, "message", JSON.stringify(frame));
    assert.equal(frame.channel, channel);
    received.push(seen(frame));
    if (enough(received)) return received;
  }
}

/** What a sender did: its acknowledged messages, how many it sent, and what it received. */
export type Sent = { acked: Seen[]; sent: number; received: Seen[] };

/**
 * Steady traffic from one sender: `window` broadcasts with a `ref` in flight, the next sent as
 * each `sent` arrives, until `more()` says no (then it waits for the rest of its acks) or the
 * socket closes (then the unacknowledged ones stay so). `onAck` hears each acknowledgement.
 */
export async function send(
  client: TestClient,
  name: string,
  channel: string,
  { window, more, onAck }: {
    window: number;
    more: () => boolean;
    onAck?: () => void;
  },
): Promise<Sent> {
  const result: Sent = { acked: [], sent: 0, received: [] };
  const texts = new Map<number, string>();
  const sendOne = () => {
    const ref = ++result.sent;
    const text = `${name} #${ref}`;
    texts.set(ref, text);
    client.send({ type: "broadcast", channel, text, ref });
  };
  for (let i = 0; i < window && more(); i++) sendOne();
  while (result.acked.length < result.sent) {
    let frame: Frame;
    try {
      frame = await client.next();
    } catch (error) {
      if (closedUnder(client)) return result;
      throw error;
    }
    if (frame.type === "message") {
      assert.equal(frame.channel, channel);
      result.received.push(seen(frame));
    } else if (frame.type === "sent") {
      assert.equal(frame.channel, channel);
      const text = texts.get(frame.ref);
      assert.ok(text !== undefined, `a sent frame for an unknown ref: ${JSON.stringify(frame)}`);
      result.acked.push({ seq: frame.seq, id: frame.id, from: name, text });
      onAck?.();
      if (more()) sendOne();
    } else if (frame.type !== "presence") {
      assert.fail(`${name} got ${JSON.stringify(frame)}`);
    }
  }
  return result;
}

/**
 * The whole history of `channel` as `client` (a member) reads it with `history`, a page of
 * `limit` at a time from the latest back; its epoch and messages, oldest first.
 */
export async function readAll(
  client: TestClient,
  channel: string,
  limit: number,
): Promise<{ epoch: string; messages: Seen[] }> {
  const pages: Seen[][] = [];
  let epoch: string | undefined;
  let before: number | undefined;
  for (let ref = 1;; ref++) {
    client.send({ type: "history", channel, limit, ref, ...(before && { before }) });
    const page = await client.next();
    assert.equal(page.type, "history", JSON.stringify(page));
    assert.equal(page.ref, ref);
    epoch ??= page.epoch;
    assert.equal(page.epoch, epoch, "the epoch stays while paging");
    pages.unshift(page.messages.map(seen));
    if (page.messages.length < limit || page.messages[0].seq === 1) break;
    before = page.messages[0].seq;
  }
  return { epoch: epoch!, messages: pages.flat() };
}

/** Asserts `messages` are seq 1, 2, 3, … with no gap, no duplicate, no repeated id. */
export function assertContinuous(messages: readonly Seen[], what: string): void {
  messages.forEach((message, i) => {
    if (message.seq !== i + 1) {
      assert.fail(`${what}: seq ${message.seq} at position ${i + 1}`);
    }
  });
  assert.equal(new Set(messages.map((m) => m.id)).size, messages.length, `${what}: repeated ids`);
}

/** Asserts every message of `subset` is in `history` (continuous from 1) as it was seen. */
export function assertIn(history: readonly Seen[], subset: readonly Seen[], what: string): void {
  for (const message of subset) {
    assert.deepEqual(history[message.seq - 1], message, `${what}: seq ${message.seq}`);
  }
}
