/**
 * The benchmark's turn-taking (bench/turns.ts): servers measured in turns
 * must never have two steps under way at once, and must alternate, or a
 * paired ratio would measure their overlap instead of the servers.
 */
import assert from "node:assert/strict";
import { commonStart, Turns } from "../../bench/turns.ts";

/** A party that asks for `count` turns in a row, logging when each starts and ends. */
async function party(
  turns: Turns,
  name: string,
  count: number,
  log: string[],
  gate: Promise<void>,
) {
  for (let i = 0; i < count; i++) {
    await turns.take(async () => {
      log.push(`${name}${i}+`);
      await gate; // held open across event-loop turns, as a step is
      await Promise.resolve();
      log.push(`${name}${i}-`);
    });
  }
}

Deno.test("parties that ask again at once take turns, one at a time, and the last goes on alone", async () => {
  const turns = new Turns();
  const log: string[] = [];
  let open!: () => void;
  const gate = new Promise<void>((resolve) => open = resolve);
  const both = Promise.all([party(turns, "a", 3, log, gate), party(turns, "b", 2, log, gate)]);
  open();
  await both;
  assert.deepEqual(log, [
    ...["a0+", "a0-", "b0+", "b0-", "a1+", "a1-", "b1+", "b1-"],
    ...["a2+", "a2-"],
  ]);
});

Deno.test("a turn that fails passes the turn on and reports its own failure", async () => {
  const turns = new Turns();
  const failed = turns.take(() => Promise.reject(new Error("step failed")));
  const next = turns.take(() => Promise.resolve("ran"));
  await assert.rejects(failed, /step failed/);
  assert.equal(await next, "ran");
});

Deno.test("servers taking turns start their ladders at one rate, the lowest of their hints", () => {
  // hubbub's hint from one room of 1,000 against the naive loop's: both start at the lower.
  assert.equal(commonStart([238_000, 12_500]), 12_500);
  assert.equal(commonStart([12_500, 238_000]), 12_500);
  // A server without a hint starts at the scenario's own first step, and so does its partner.
  assert.equal(commonStart([238_000, undefined]), undefined);
  assert.equal(commonStart([]), undefined);
});
