/**
 * A Web Worker that opens the KV engine on the file the parent names, as each
 * worker of `deno serve --parallel` does at startup, and says whether it
 * could. Used by `kv_open_test.ts`.
 *
 * @module
 */
import { silentLogger } from "../../lib/log.ts";
import { openDenoKvEngine } from "../../lib/runtime/deno.ts";

const port = self as unknown as {
  postMessage(answer: string): void;
  onmessage: ((event: MessageEvent<string>) => void) | null;
};

port.onmessage = async ({ data: path }) => {
  const opened = await openDenoKvEngine({
    path,
    prefix: "race",
    history: { maxPerChannel: 10, ttlMs: 60_000 },
    log: silentLogger,
  });
  if ("message" in opened) return port.postMessage(opened.message);
  await opened.engine.stop();
  port.postMessage("ok");
};
