/**
 * Child-process plumbing shared by the server and the browser launchers.
 *
 * @module
 */
import assert from "node:assert/strict";
import { withTimeout } from "../_helpers.ts";

/** Bound for a child to start (a first run may fill caches). */
export const STARTUP_TIMEOUT_MS = 30_000;
/** Bound for a child to exit once signalled. */
export const EXIT_TIMEOUT_MS = 10_000;

/** Reads `stream` until a line matches `pattern`, then collects the rest in the background. */
export async function readUntil(
  stream: ReadableStream<Uint8Array>,
  pattern: RegExp,
  what: string,
  timeoutMs = STARTUP_TIMEOUT_MS,
): Promise<{ match: string; output: Promise<string> }> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  try {
    const match = await withTimeout(
      (async () => {
        while (true) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`${what} ended its output without printing ${pattern}`);
          text += value;
          // Only complete lines, so that a URL split across chunks is not cut short.
          const found = text.slice(0, text.lastIndexOf("\n") + 1).match(pattern);
          if (found) return found[1];
        }
      })(),
      `${what} to print ${pattern}`,
      timeoutMs,
    );
    // Keep reading, so that the pipe never fills up and its resource closes.
    const output = (async () => {
      while (true) {
        const { value, done } = await reader.read();
        if (done) return text;
        text += value;
      }
    })();
    return { match, output };
  } catch (err) {
    await reader.cancel().catch(() => {});
    throw new Error(`${(err as Error).message}; output so far:\n${text}`);
  }
}

/** Signals `child` and waits for it to exit, failing (after a SIGKILL) if it outlives the bound. */
export async function terminate(
  child: Deno.ChildProcess,
  what: string,
  signal: Deno.Signal = "SIGTERM",
): Promise<void> {
  try {
    child.kill(signal);
  } catch { /* already exited */ }
  const exited = await withTimeout(child.status, `${what} to exit`, EXIT_TIMEOUT_MS)
    .then(() => true, () => false);
  if (!exited) {
    try {
      child.kill("SIGKILL");
    } catch { /* exited just now */ }
  }
  await child.status;
  assert.ok(exited, `${what} did not exit within ${EXIT_TIMEOUT_MS} ms of ${signal}`);
}
