/**
 * How much memory slow consumers can make the server hold: 10 clients that
 * never read sit in a channel while a sender pushes 40 MB through it. Run
 * against the default 1 MiB cap and, as the reference, with the cap lifted
 * (1 GiB), in the same run. Prints server RSS growth for both and the ratio.
 *
 * Usage: deno task bench:slow
 */
import { Opcode, rawConnect, type RawSocket } from "../tests/_raw_ws.ts";
import { openClient } from "../tests/_helpers.ts";
import { spawnServer } from "../tests/e2e/_server.ts";

const SLOW_CLIENTS = 10;
const MESSAGES = 10_000;
const TEXT = "x".repeat(4000);

async function residentBytes(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^process_resident_memory_bytes (\d+)/m.exec(text)?.[1]);
}

async function scenario(maxBufferedBytes: number) {
  await using server = await spawnServer({
    args: [
      ...[
        "--max-buffered-bytes",
        String(maxBufferedBytes),
        "--rate-limit",
        "1000000",
        "--rate-burst",
        "1000000",
      ],
      ...["--max-text-length", "8000", "--ping-timeout", "0"],
    ],
  });
  const slow: RawSocket[] = [];
  for (let i = 0; i < SLOW_CLIENTS; i++) {
    const raw = await rawConnect(server.port);
    await raw.send(Opcode.Text, JSON.stringify({ type: "login", name: `slow${i}` }));
    await raw.send(Opcode.Text, JSON.stringify({ type: "join", channel: "flood" }));
    slow.push(raw);
  }
  const sender = await openClient(server.wsUrl);
  await sender.login("sender");
  await sender.join("flood");
  const before = await residentBytes(server.url);
  let peak = before;
  for (let i = 0; i < MESSAGES; i++) {
    sender.send({ type: "broadcast", channel: "flood", text: `${i}:${TEXT}` });
    if (i % 500 === 499) {
      while ((await sender.nextOf("message")).text.split(":")[0] !== String(i));
      peak = Math.max(peak, await residentBytes(server.url));
    }
  }
  const after = await residentBytes(server.url);
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  const dropped = Number(/^hubbub_slow_consumers_total (\d+)/m.exec(metrics)?.[1]);
  for (const raw of slow) raw.close();
  await sender.close();
  return { growthMiB: (Math.max(peak, after) - before) / 2 ** 20, dropped };
}

const capped = await scenario(1024 * 1024);
const reference = await scenario(1024 * 1024 * 1024);
const sent = (MESSAGES * TEXT.length) / 1e6;
console.log(
  `${SLOW_CLIENTS} clients that never read; ${MESSAGES} messages (${
    sent.toFixed(0)
  } MB) sent to their channel`,
);
console.log(`| cap | slow consumers dropped | server RSS growth |`);
console.log(`|---|---|---|`);
console.log(`| 1 MiB (default) | ${capped.dropped} | ${capped.growthMiB.toFixed(1)} MiB |`);
console.log(
  `| 1 GiB (reference, effectively none) | ${reference.dropped} | ${
    reference.growthMiB.toFixed(1)
  } MiB |`,
);
console.log(
  `RSS growth with the cap is ${
    (capped.growthMiB / reference.growthMiB * 100).toFixed(1)
  }% of the reference's`,
);
