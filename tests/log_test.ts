/** The logger: line shapes, level filter, and the rate limit, on a manual clock. */
import assert from "node:assert/strict";
import { createManualClock } from "../lib/core/clock.ts";
import { createLogger, type Level, type LoggerOptions } from "../lib/log.ts";

const START = Date.UTC(2025, 0, 2, 3, 4, 5, 678);

function capture(options: Partial<LoggerOptions> = {}) {
  const clock = createManualClock(START);
  const lines: { level: Level; line: string }[] = [];
  const log = createLogger({
    format: "json",
    level: "debug",
    now: clock.now,
    write: (level, line) => lines.push({ level, line }),
    ...options,
  });
  const json = () => lines.map(({ line }) => JSON.parse(line));
  return { clock, lines, log, json };
}

Deno.test("log: json is one object per line with time (ISO), level, msg and the fields", () => {
  const { log, lines, json } = capture();
  log.info("upgrade refused", {
    conn: 7,
    ip: "10.0.0.1",
    name: "alice",
    code: 4429,
    reason: "Rate limit",
    gone: undefined,
  });
  log.error("two\nlines", { ok: true, none: null });
  assert.equal(lines.length, 2);
  assert.ok(lines.every(({ line }) => !line.includes("\n")));
  assert.deepEqual(json(), [
    {
      time: "2025-01-02T03:04:05.678Z",
      level: "info",
      msg: "upgrade refused",
      conn: 7,
      ip: "10.0.0.1",
      name: "alice",
      code: 4429,
      reason: "Rate limit",
    },
    { time: "2025-01-02T03:04:05.678Z", level: "error", msg: "two\nlines", ok: true, none: null },
  ]);
  assert.deepEqual(lines.map(({ level }) => level), ["info", "error"]);
});

Deno.test("log: a field cannot overwrite time, level or msg", () => {
  const { log, json } = capture();
  log.warn("real", { msg: "forged", level: "debug", time: "then" });
  assert.deepEqual(json(), [{
    time: "2025-01-02T03:04:05.678Z",
    level: "warn",
    msg: "real",
    field_msg: "forged",
    field_level: "debug",
    field_time: "then",
  }]);
});

Deno.test("log: text is one line: time, level, message, then key=value (quoted when needed)", () => {
  const { log, lines } = capture({ format: "text" });
  log.warn("closed a connection", { conn: 3, reason: "Slow consumer", ip: "::1", name: undefined });
  log.info("forged\nline", { origin: 'https://x"\n' });
  assert.deepEqual(lines.map(({ line }) => line), [
    '2025-01-02T03:04:05.678Z WARN  closed a connection conn=3 reason="Slow consumer" ip=::1',
    '2025-01-02T03:04:05.678Z INFO  forged\\nline origin="https://x\\"\\n"',
  ]);
});

Deno.test("log: lines below the level are dropped", () => {
  const { log, lines } = capture({ level: "warn" });
  log.debug("d");
  log.info("i");
  log.warn("w");
  log.error("e");
  log.limited("info", "k", "limited info");
  log.limited("error", "k2", "limited error");
  assert.deepEqual(lines.map(({ line }) => JSON.parse(line).msg), ["w", "e", "limited error"]);
});

Deno.test("log: the default sink writes debug and info to stdout, warn and error to stderr", () => {
  const seen: string[] = [];
  const { log: consoleLog, error: consoleError } = console;
  console.log = (line: string) => seen.push(`out ${line}`);
  console.error = (line: string) => seen.push(`err ${line}`);
  try {
    const log = createLogger({ format: "json", level: "debug", now: () => START });
    log.debug("d");
    log.info("i");
    log.warn("w");
    log.error("e");
  } finally {
    console.log = consoleLog;
    console.error = consoleError;
  }
  assert.deepEqual(seen.map((line) => line.split(" ")[0] + " " + JSON.parse(line.slice(4)).msg), [
    "out d",
    "out i",
    "err w",
    "err e",
  ]);
});

Deno.test("log: limited writes one line per kind per window and counts what it held back", () => {
  const { log, clock, json } = capture();
  const refuse = (ip: string) =>
    log.limited("warn", "upgrade:ip_full", "upgrade refused", { reason: "ip_full", ip });
  refuse("10.0.0.1");
  for (let i = 2; i <= 500; i++) refuse(`10.0.0.${i % 250}`);
  // Another kind has its own window.
  log.limited("warn", "api:unauthorized", "API request refused");
  assert.deepEqual(json().map((line) => [line.msg, line.ip, line.suppressed]), [
    ["upgrade refused", "10.0.0.1", undefined],
    ["API request refused", undefined, undefined],
  ]);

  // Within the window, flush shows nothing.
  clock.advance(9_999);
  log.flush();
  assert.equal(json().length, 2);

  // Once it is over, flush shows the latest held-back line and how many others there were.
  clock.advance(1);
  log.flush();
  assert.deepEqual(json().slice(2), [{
    time: new Date(START + 10_000).toISOString(),
    level: "warn",
    msg: "upgrade refused",
    reason: "ip_full",
    ip: "10.0.0.0",
    suppressed: 498,
  }]);

  // That line opened a new window: a new event in it is held back, then told with its count.
  clock.advance(5_000);
  refuse("10.0.0.9");
  refuse("10.0.0.10");
  assert.equal(json().length, 3);
  clock.advance(5_000);
  refuse("10.0.0.11");
  assert.deepEqual(json().slice(3).map((line) => [line.ip, line.suppressed]), [["10.0.0.11", 2]]);

  // A kind that stayed quiet for a window is forgotten, and its next event shows at once.
  clock.advance(10_000);
  log.flush();
  clock.advance(60_000);
  refuse("10.0.0.12");
  assert.deepEqual(json().slice(4).map((line) => [line.ip, line.suppressed]), [[
    "10.0.0.12",
    undefined,
  ]]);
});

Deno.test("log: a single held-back line is shown by flush without a count", () => {
  const { log, clock, json } = capture();
  log.limited("warn", "close:4429", "closed a connection", { conn: 1 });
  log.limited("warn", "close:4429", "closed a connection", { conn: 2 });
  clock.advance(10_000);
  log.flush();
  log.flush();
  assert.deepEqual(json().map((line) => [line.conn, line.suppressed]), [[1, undefined], [
    2,
    undefined,
  ]]);
});
