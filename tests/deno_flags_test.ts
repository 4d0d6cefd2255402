/**
 * The V8 flags hubbub runs with on Deno: every way of starting it (deno.json's
 * tasks, the Docker image's binary, the benchmark) gives V8 the same ones, and
 * the young generation's cap does what the README says (at most 2 × 8 MiB,
 * where V8 would grow it to 2 × 32 MiB on a machine this size and keep it
 * after a connect storm). `--single-threaded-gc` has no effect a test could
 * see in a second: bench/PROFILE.md §9 has its measurements.
 */
import assert from "node:assert/strict";
import { startTaskV8Flags, v8FlagsIn } from "../bench/servers.ts";

const ROOT = new URL("../", import.meta.url);
const config = await Deno.readTextFile(new URL("deno.json", ROOT));
const tasks: Record<string, string> = JSON.parse(config).tasks;
const v8Flags = startTaskV8Flags(config);

Deno.test("deno task start gives V8 a capped young generation and no GC threads", () => {
  assert.deepEqual(v8Flags, ["--v8-flags=--max-semi-space-size=8,--single-threaded-gc"]);
});

Deno.test("every task that runs or compiles hubbub on Deno gives V8 the start task's flags", () => {
  const launching = Object.entries(tasks).filter(([, command]) =>
    /^deno (run|serve|compile)\b/.test(command) && /\b(main|serve)\.ts\b/.test(command)
  );
  assert.deepEqual(launching.map(([name]) => name).sort(), [
    "compile",
    "dev",
    "start",
    "start:parallel",
  ]);
  for (const [name, command] of launching) assert.deepEqual(v8FlagsIn(command), v8Flags, name);
});

Deno.test("the Docker image's binary is compiled with the start task's V8 flags", async () => {
  const dockerfile = await Deno.readTextFile(new URL("Dockerfile", ROOT));
  const compile = dockerfile.split("\n").find((line) => /deno compile .*main\.ts/.test(line));
  assert.ok(compile, "the Dockerfile compiles main.ts");
  assert.deepEqual(v8FlagsIn(compile), v8Flags);
});

Deno.test("with the start task's V8 flags, the young generation stays at 16 MiB", async () => {
  // Allocates 3 million live objects with a string each: enough survivors that V8 grows the young generation to
  // its cap (64 MiB without the flag on a machine with this much memory).
  const script = `
    import v8 from "node:v8";
    const kept = [];
    for (let i = 0; i < 3e6; i++) kept.push({ i, name: "n" + i });
    const young = v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
    console.log(JSON.stringify({ young: young.space_size, kept: kept.length }));
  `;
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", ...v8Flags, script],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.equal(code, 0);
  const { young, kept } = JSON.parse(new TextDecoder().decode(stdout));
  assert.equal(kept, 3e6);
  assert.ok(young > 0 && young <= 16 * 1024 * 1024, `new space ${young} bytes`);
});
