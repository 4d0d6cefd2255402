/**
 * What `deno task test` runs: `test:deps`, then both halves of the suite
 * (`test:deno`, then `test:bun`) whatever the one before did, their output
 * streamed as it comes. It ends with one line, `N passed, N failed`, counting
 * the tests (not the steps) of both halves, and exits non-zero if anything
 * failed, so a failing Deno half can no longer hide the Bun half.
 *
 * @module
 */

/** What one `deno test` run reported on its summary line. */
export interface Summary {
  passed: number;
  failed: number;
}

// deno test's last line: `ok | 10 passed (36 steps) | 0 failed (1s)`, or `FAILED | 8 passed |
// 2 failed (3 steps) | 4 filtered out (2s)`; colours may wrap any part of it.
const SUMMARY = /^(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed\b/;
// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/** The counts on the last `deno test` summary line in `output`; null when there is none. */
export function parseSummary(output: string): Summary | null {
  let found: Summary | null = null;
  for (const line of output.replace(ANSI, "").split(/\r?\n/)) {
    const match = SUMMARY.exec(line.trim());
    if (match) found = { passed: Number(match[1]), failed: Number(match[2]) };
  }
  return found;
}

/**
 * What a half counts for: its summary's counts, and at least one failure when it exited
 * non-zero without reporting one (a type error, a crash, a build that failed before the tests).
 */
export function countHalf(output: string, exitCode: number): Summary {
  const summary = parseSummary(output) ?? { passed: 0, failed: 0 };
  if (exitCode !== 0 && summary.failed === 0) return { ...summary, failed: 1 };
  return summary;
}

/** The closing line. */
export function closingLine(total: Summary): string {
  return `${total.passed} passed, ${total.failed} failed`;
}

/** Runs `deno task <task>`, copying its output through as it comes; resolves with the output. */
async function runTask(task: string): Promise<{ output: string; code: number }> {
  console.log(`\nrun_tests: deno task ${task}`);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(Deno.execPath(), {
      args: ["task", task],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    console.error(`run_tests: could not start deno task ${task}: ${error}`);
    return { output: "", code: 1 };
  }
  let output = "";
  const pump = async (stream: ReadableStream<Uint8Array>, to: typeof Deno.stdout) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      await writeAll(to, chunk);
      output += decoder.decode(chunk, { stream: true });
    }
    output += decoder.decode();
  };
  const [status] = await Promise.all([
    child.status,
    pump(child.stdout, Deno.stdout),
    pump(child.stderr, Deno.stderr),
  ]);
  return { output, code: status.code };
}

async function writeAll(to: typeof Deno.stdout, data: Uint8Array): Promise<void> {
  for (let written = 0; written < data.length;) written += await to.write(data.subarray(written));
}

if (import.meta.main) {
  const total: Summary = { passed: 0, failed: 0 };
  const deps = await runTask("test:deps");
  if (deps.code !== 0) {
    // Not a test, but a red run must not end with "0 failed"; the halves still run.
    console.error(`run_tests: test:deps failed (exit ${deps.code}); counted as 1 failed`);
    total.failed++;
  }
  for (const half of ["test:deno", "test:bun"]) {
    const { output, code } = await runTask(half);
    const counted = countHalf(output, code);
    if (parseSummary(output) === null) {
      console.error(`run_tests: ${half} exited ${code} without a test summary`);
    }
    console.log(`run_tests: ${half}: ${counted.passed} passed; ${counted.failed} failed`);
    total.passed += counted.passed;
    total.failed += counted.failed;
  }
  console.log(closingLine(total));
  Deno.exit(total.failed === 0 ? 0 : 1);
}
