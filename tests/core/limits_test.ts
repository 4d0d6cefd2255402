/** Unit tests of the pure limit mechanics: token buckets, deadlines, admission, the manual clock. */
import assert from "node:assert/strict";
import { createAdmission } from "../../lib/http/admission.ts";
import { createManualClock } from "../../lib/core/clock.ts";
import { expired, touch } from "../../lib/core/deadlines.ts";
import { createBucket, isFull, take } from "../../lib/core/token_bucket.ts";

Deno.test("token bucket: allows a burst, then the rate", () => {
  const rate = { perSecond: 2, burst: 3 };
  const bucket = createBucket(rate, 0);
  assert.deepEqual([take(bucket, rate, 0), take(bucket, rate, 0), take(bucket, rate, 0)], [
    true,
    true,
    true,
  ]);
  assert.equal(take(bucket, rate, 0), false);
  assert.equal(take(bucket, rate, 499), false, "half a token is not a token");
  assert.equal(take(bucket, rate, 500), true);
  assert.equal(isFull(bucket, rate, 10_000), true, "refills to the burst, no further");
  assert.equal(bucket.tokens, 3);
});

Deno.test("token bucket: a clock going backwards adds nothing", () => {
  const rate = { perSecond: 1, burst: 1 };
  const bucket = createBucket(rate, 1000);
  assert.ok(take(bucket, rate, 1000));
  assert.equal(take(bucket, rate, 0), false);
});

Deno.test("deadlines: expired sessions come oldest first, touched ones move back", () => {
  const deadlines = new Map<number, number>();
  touch(deadlines, 1, 0);
  touch(deadlines, 2, 10);
  touch(deadlines, 3, 20);
  touch(deadlines, 1, 30);
  assert.deepEqual(expired(deadlines, 40, 20), [2, 3]);
  assert.deepEqual(expired(deadlines, 40, 25), [2], "stops at the first one still in time");
  assert.deepEqual(expired(deadlines, 40, 5), [2, 3, 1]);
  assert.deepEqual(expired(deadlines, 40, 100), []);
});

Deno.test("admission: per-IP cap, total cap, connect rate, drain", async (t) => {
  const limits = {
    maxConnections: 3,
    maxConnectionsPerIp: 2,
    connectRate: { perSecond: 1, burst: 2 },
  };
  await t.step("per IP", () => {
    const admission = createAdmission(limits);
    for (let i = 0; i < 2; i++) {
      assert.equal(admission.admit("a", 0), null);
    }
    assert.equal(admission.admit("a", 5000)?.reason, "ip_full");
    admission.closed("a");
    assert.equal(admission.admit("a", 5000), null);
  });
  await t.step("in total", () => {
    const admission = createAdmission(limits);
    for (const ip of ["a", "b", "c"]) {
      assert.equal(admission.admit(ip, 0), null);
    }
    const refusal = admission.admit("d", 0);
    assert.equal(refusal?.reason, "server_full");
    assert.equal(refusal?.status, 503);
  });
  await t.step("connect rate", () => {
    const admission = createAdmission({ ...limits, maxConnectionsPerIp: 100, maxConnections: 100 });
    assert.equal(admission.admit("a", 0), null);
    assert.equal(admission.admit("a", 0), null);
    assert.equal(admission.admit("a", 0)?.reason, "connect_rate");
    assert.equal(admission.admit("b", 0), null, "other addresses are not affected");
    assert.equal(admission.admit("a", 1000), null, "the bucket refills");
  });
  await t.step("an admitted upgrade counts at once; giving it back frees the slot", () => {
    const admission = createAdmission({ ...limits, maxConnections: 1 });
    assert.equal(admission.admit("a", 0), null);
    assert.equal(admission.admit("b", 0)?.reason, "server_full", "the first one is still opening");
    admission.closed("a");
    assert.equal(admission.admit("b", 0), null);
  });
  await t.step("drain and sweep", () => {
    const admission = createAdmission(limits);
    assert.equal(admission.admit("a", 0), null);
    admission.sweep(10_000);
    admission.drain();
    assert.equal(admission.admit("a", 10_000)?.reason, "shutting_down");
  });
});

Deno.test("manual clock: runs due intervals in order and only when advanced", () => {
  const clock = createManualClock(100);
  const calls: string[] = [];
  const stopA = clock.every(10, () => calls.push(`a@${clock.now()}`));
  clock.every(25, () => calls.push(`b@${clock.now()}`));
  clock.advance(9);
  assert.deepEqual(calls, []);
  clock.advance(21);
  assert.deepEqual(calls, ["a@110", "a@120", "b@125", "a@130"]);
  stopA();
  clock.advance(20);
  assert.deepEqual(calls.slice(4), ["b@150"]);
  assert.equal(clock.now(), 150);
});
