/**
 * hubbub under `deno serve`: every worker of `deno serve --parallel` (one
 * per core) runs this module and serves deno serve's one port. The workers
 * share no memory, so by default they share names, rooms and history
 * through Deno KV (`--engine kv`; `--kv-path` names the file). deno serve's
 * own `--port` and `--host`, written before the module, say where it
 * listens; hubbub's options follow the module.
 *
 * @example
 * ```sh
 * deno serve --parallel --allow-net --allow-env --allow-read --allow-write --port 8000 \
 *   serve.ts --kv-path ./data/kv.sqlite3
 * ```
 *
 * @module
 */
import {
  denoHandler,
  denoLineWriter,
  denoRuntime,
  holdServeSignalListeners,
} from "./lib/runtime/deno.ts";
import { startHubbub } from "./lib/runtime/start.ts";

const hubbub = await startHubbub(denoRuntime, {
  entry: "serve",
  // Text lines keep the worker's name deno serve puts before them; JSON lines must stay JSON.
  write: (format) => format === "json" ? denoLineWriter : undefined,
  workers: `hubbub:workers:${Deno.pid}`,
});

// After hubbub's own: deno serve's would close every socket with 1001 and never end the process.
holdServeSignalListeners();

export default {
  fetch: denoHandler(hubbub.app, { pingTimeout: hubbub.config.pingTimeout }),
  onListen: (address) => hubbub.listening(address as Deno.NetAddr),
} satisfies Deno.ServeDefaultExport;
