/**
 * Helpers for the history tests: strict readers (a frame nobody expected
 * fails the test instead of being skipped), a ping barrier that proves what
 * did not arrive, and joins with the history fields.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Frame, TestClient } from "../_helpers.ts";

/** Whether `frame` is a presence announcement (which these tests do not count). */
const isPresence = (frame: Frame) => frame.type === "presence";

/** The next frame that is not a presence announcement. */
export async function nextFrame(client: TestClient): Promise<Frame> {
  for (;;) {
    const frame = await client.next();
    if (!isPresence(frame)) return frame;
  }
}

/** The next frame but presence, which must be of `type`. */
export async function expectFrame(client: TestClient, type: string): Promise<Frame> {
  const frame = await nextFrame(client);
  assert.equal(frame.type, type, `expected ${type}, got ${JSON.stringify(frame)}`);
  return frame;
}

/** The next `count` frames but presence, each a `message`. */
export async function messages(client: TestClient, count: number): Promise<Frame[]> {
  const read: Frame[] = [];
  while (read.length < count) read.push(await expectFrame(client, "message"));
  return read;
}

let barriers = 0;

/**
 * Pings and reads up to the pong: returns every frame but presence that came
 * before it. The server answers in order, so an empty result proves nothing
 * else was sent before the ping was answered.
 */
export async function barrier(client: TestClient): Promise<Frame[]> {
  const ref = `barrier-${++barriers}`;
  client.send({ type: "ping", ref });
  const before: Frame[] = [];
  for (;;) {
    const frame = await nextFrame(client);
    if (frame.type === "pong" && frame.ref === ref) return before;
    before.push(frame);
  }
}

/** Options of a `join`. */
export type JoinOptions = {
  history?: number;
  since?: { epoch: string; seq: number };
  ref?: string | number;
};

/** Sends `join` with `options` and returns the `joined` (any other answer fails). */
export async function join(
  client: TestClient,
  channel: string,
  options: JoinOptions = {},
): Promise<Frame> {
  client.send({ type: "join", channel, ...options });
  return await expectFrame(client, "joined");
}

/** Sends a broadcast; `extra` adds `key` and `ref`. */
export function broadcast(
  client: TestClient,
  channel: string,
  text: string,
  extra: { key?: string; ref?: string | number } = {},
): void {
  client.send({ type: "broadcast", channel, text, ...extra });
}

/** Sends `count` broadcasts `${prefix}1`… and reads the sender's own copies back. */
export async function say(
  client: TestClient,
  channel: string,
  prefix: string,
  count: number,
): Promise<Frame[]> {
  for (let i = 1; i <= count; i++) broadcast(client, channel, `${prefix}${i}`);
  return await messages(client, count);
}

/** The seqs of `frames`. */
export const seqs = (frames: readonly Frame[]): number[] => frames.map((frame) => frame.seq);

/** `from`, `from + 1`, … `to` (empty when `to < from`). */
export function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

/** A message frame as a member compares it: what identifies it and its place. */
export const brief = (frame: Frame) => ({
  from: frame.from,
  text: frame.text,
  id: frame.id,
  seq: frame.seq,
});
