/** tools/run_tests.ts: the summary parsing, and both halves run whatever the first one did. */
import assert from "node:assert/strict";
import { closingLine, countHalf, parseSummary } from "../../tools/run_tests.ts";
import { withTimeout } from "../_helpers.ts";

const RUNNER = new URL("../../tools/run_tests.ts", import.meta.url).pathname;

Deno.test("run_tests: parseSummary reads deno test's summary line", async (t) => {
  const cases: [string, string, { passed: number; failed: number } | null][] = [
    ["a pass", "ok | 10 passed | 0 failed (1s)", { passed: 10, failed: 0 }],
    ["steps are not tests", "ok | 10 passed (36 steps) | 0 failed (1s)", { passed: 10, failed: 0 }],
    ["one step", "ok | 1 passed (1 step) | 0 failed (5ms)", { passed: 1, failed: 0 }],
    [
      "a failure",
      "FAILED | 8 passed (36 steps) | 2 failed (1s)",
      { passed: 8, failed: 2 },
    ],
    [
      "failed steps",
      "FAILED | 0 passed | 9 failed (36 steps) (803ms)",
      { passed: 0, failed: 9 },
    ],
    [
      "filtered and ignored",
      "ok | 5 passed (3 steps) | 0 failed | 1 ignored | 4 filtered out (2s)",
      { passed: 5, failed: 0 },
    ],
    [
      "in colour",
      "\x1b[0m\x1b[31mFAILED\x1b[0m | 8 passed (36 steps) | 2 failed \x1b[0m\x1b[38;5;245m(1s)\x1b[0m",
      { passed: 8, failed: 2 },
    ],
    [
      "the last one counts",
      "ok | 1 passed | 0 failed (1ms)\nmore output\r\nFAILED | 3 passed | 4 failed (9s)\n\nerror: Test failed\n",
      { passed: 3, failed: 4 },
    ],
    ["not at the start of a line", "run_tests: ok | 1 passed | 0 failed (1ms)", null],
    ["a type error: no summary", "Check tests/a_test.ts\nerror: Type checking failed.\n", null],
    ["nothing", "", null],
  ];
  for (const [name, output, expected] of cases) {
    await t.step(name, () => assert.deepEqual(parseSummary(output), expected));
  }
});

Deno.test("run_tests: countHalf counts a half that failed without saying so as one failure", async (t) => {
  const cases: [string, string, number, { passed: number; failed: number }][] = [
    ["a pass", "ok | 4 passed | 0 failed (1s)", 0, { passed: 4, failed: 0 }],
    ["failures as reported", "FAILED | 4 passed | 2 failed (1s)", 1, { passed: 4, failed: 2 }],
    ["a crash without a summary", "error: Type checking failed.", 1, { passed: 0, failed: 1 }],
    ["a build that never ran the tests", "", 127, { passed: 0, failed: 1 }],
    ["a summary, then a non-zero exit", "ok | 4 passed | 0 failed (1s)", 1, {
      passed: 4,
      failed: 1,
    }],
    ["no summary, exit 0", "nothing to test", 0, { passed: 0, failed: 0 }],
  ];
  for (const [name, output, code, expected] of cases) {
    await t.step(name, () => assert.deepEqual(countHalf(output, code), expected));
  }
  assert.equal(closingLine({ passed: 12, failed: 3 }), "12 passed, 3 failed");
});

Deno.test("run_tests: the Bun half runs after the Deno half fails, and one closing line ends it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "run_tests_test" });
  try {
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      JSON.stringify({
        tasks: {
          "test:deps": "echo deps here",
          "test:deno": "echo 'FAILED | 3 passed (5 steps) | 2 failed (1s)' && exit 1",
          "test:bun": "echo 'bun half ran' && echo 'ok | 4 passed | 0 failed (2s)'",
        },
      }),
    );
    const output = await withTimeout(
      new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-run", "--allow-read", RUNNER],
        cwd: dir,
        env: { NO_COLOR: "1" },
        stdin: "null",
      }).output(),
      "the runner to finish",
      30_000,
    );
    const stdout = new TextDecoder().decode(output.stdout);
    assert.equal(output.code, 1, "a failed half fails the run");
    assert.match(stdout, /^deps here$/m, "test:deps ran first, its output passed through");
    assert.match(stdout, /^bun half ran$/m, "the Bun half ran although the Deno half failed");
    const lines = stdout.trimEnd().split("\n");
    assert.equal(lines.at(-1), "7 passed, 2 failed");
    assert.equal(lines.filter((line) => /^\d+ passed, \d+ failed$/.test(line)).length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
