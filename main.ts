/**
 * hubbub: a WebSocket chat server. Picks the runtime adapter and starts:
 * reads the configuration, listens, and shuts down cleanly on SIGINT/SIGTERM
 * (`lib/runtime/start.ts`, which `serve.ts` shares under `deno serve`).
 *
 * @example
 * ```sh
 * deno run --allow-net --allow-env main.ts --port 8000
 * ```
 *
 * @module
 */
import { bunRuntime } from "./lib/runtime/bun.ts";
import { denoRuntime } from "./lib/runtime/deno.ts";
import { startHubbub } from "./lib/runtime/start.ts";
import type { Runtime } from "./lib/runtime/types.ts";

/** The adapter for the runtime we run on, by feature detection (Bun first: it may shim Deno). */
function pickRuntime(): Runtime {
  if ("Bun" in globalThis) return bunRuntime;
  if ("Deno" in globalThis) return denoRuntime;
  console.error("hubbub: unsupported runtime; run it with Deno or Bun");
  throw new Error("Unsupported runtime");
}

await startHubbub(pickRuntime(), { entry: "main" });
