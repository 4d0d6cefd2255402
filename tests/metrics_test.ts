/** GET /metrics over a real listener. */
import assert from "node:assert/strict";
import { startServer } from "./_helpers.ts";

/** Reads one sample (`name{labels} value`) out of Prometheus text. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

Deno.test("metrics: counts connections, messages, deliveries, errors and closes", async () => {
  await using server = startServer({ maxMessageBytes: 1024 });
  const alice = await server.user("alice", "c");
  const bob = await server.user("bob", "c");
  alice.send({ type: "broadcast", channel: "c", text: "hi" });
  await bob.nextOf("message");
  await alice.nextOf("message");
  alice.send("{");
  await alice.nextOf("error");
  const big = await server.connect();
  big.send("x".repeat(2000));
  await big.closed;

  const response = await fetch(`${server.url}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
  const text = await response.text();
  assert.equal(sample(text, "hubbub_connections"), 2);
  assert.equal(sample(text, "hubbub_users"), 2);
  assert.equal(sample(text, "hubbub_channels"), 1);
  assert.equal(sample(text, "hubbub_connections_opened_total"), 3);
  assert.equal(sample(text, "hubbub_messages_in_total"), 1);
  assert.equal(sample(text, 'hubbub_errors_total{code="bad_json"}'), 1);
  assert.equal(sample(text, 'hubbub_closes_total{code="1009"}'), 1);
  assert.ok(
    sample(text, "hubbub_deliveries_total")! >= 2 + 6,
    "hello, welcome, joined, presence, 2 messages",
  );
  assert.match(text, /# TYPE hubbub_frames_out_total counter/);
});
