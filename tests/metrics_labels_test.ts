/** /metrics labels a client cannot multiply, and the build and start-time series. */
import assert from "node:assert/strict";
import { closeLabel } from "../lib/metrics.ts";
import { CloseCode } from "../lib/core/protocol.ts";
import { Opcode, rawConnect } from "./_raw_ws.ts";
import { startServer, withTimeout } from "./_helpers.ts";

async function metricsText(url: string): Promise<string> {
  const response = await fetch(`${url}/metrics`);
  assert.equal(response.status, 200);
  return await response.text();
}

Deno.test("metrics: closeLabel keeps hubbub's and the standard codes, buckets the rest", async (t) => {
  for (const code of [...Object.values(CloseCode), 1000, 1001, 1002, 1005, 1006, 1015]) {
    await t.step(`${code} is known`, () => assert.equal(closeLabel(code), String(code)));
  }
  for (const code of [0, 999, 1004, 1016, 1234, 2999, 3000, 3001, 4000, 4999, 5000, 65535]) {
    await t.step(`${code} is other`, () => assert.equal(closeLabel(code), "other"));
  }
});

Deno.test("metrics: close codes chosen by clients all count as one `other` series", async () => {
  await using server = startServer();
  const clientCodes = [4999, 3001, 4000, 3999];
  for (const code of clientCodes) {
    const client = await server.connect();
    client.socket.close(code);
    await client.closed;
  }
  // A code no WebSocket API lets a client send, written by hand.
  await using raw = await rawConnect(Number(new URL(server.url).port));
  await raw.send(Opcode.Close, new Uint8Array([1234 >> 8, 1234 & 0xff]));
  await raw.readClose();
  raw.close();
  // Every close event has reached the app (and been counted) once it is idle.
  await withTimeout(server.app.idle(), "every socket to close");

  const text = await metricsText(server.url);
  const closes = text.split("\n").filter((line) => line.startsWith("hubbub_closes_total{"));
  const labels = closes.map((line) => /code="([^"]*)"/.exec(line)![1]);
  for (const code of [...clientCodes, 1234]) {
    assert.ok(!labels.includes(String(code)), `no series of its own for ${code}: ${closes}`);
  }
  assert.equal(labels.filter((label) => label === "other").length, 1, closes.join("\n"));
  const other = Number(closes.find((line) => line.includes('code="other"'))!.split(" ")[1]);
  // The hand-written 1234 is a protocol error the runtime may report as 1002 instead.
  assert.ok(other >= clientCodes.length, closes.join("\n"));
});

Deno.test("metrics: hubbub_build_info names the version and runtime; process_start_time_seconds is set", async () => {
  await using server = startServer();
  const text = await metricsText(server.url);
  assert.match(text, /^# TYPE hubbub_build_info gauge$/m);
  assert.match(text, /^hubbub_build_info\{version="test",runtime="unknown"\} 1$/m);
  assert.match(text, /^# TYPE process_start_time_seconds gauge$/m);
  const start = Number(/^process_start_time_seconds (\S+)$/m.exec(text)?.[1]);
  // This test process started before the server answered, and within the last day.
  assert.ok(start <= Date.now() / 1000, `start ${start} is in the future`);
  assert.ok(start > Date.now() / 1000 - 86400, `start ${start} is over a day ago`);
  assert.equal(start, Math.round(performance.timeOrigin) / 1000);
});
