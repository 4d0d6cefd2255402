/**
 * The workers of `deno serve --parallel` open one Deno KV file at once when
 * they start. SQLite then refuses some of them ("database is locked": one
 * open in twenty, measured with three workers), which stopped a worker from
 * starting; the engine's open tries again while the file is busy.
 */
import assert from "node:assert/strict";
import { kvDir } from "../cluster/_kv.ts";

const WORKERS = 3;
const ROUNDS = 40;

Deno.test("kv open: three workers opening one new file at once all open it, round after round", async () => {
  await using dir = await kvDir();
  const workers = Array.from(
    { length: WORKERS },
    () => new Worker(new URL("./_kv_open_worker.ts", import.meta.url).href, { type: "module" }),
  );
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const path = dir.path(`round${round}`);
      const answers = await Promise.all(workers.map((worker) =>
        new Promise<string>((resolve) => {
          worker.onmessage = (event: MessageEvent<string>) => resolve(event.data);
          worker.postMessage(path);
        })
      ));
      assert.deepEqual(answers, workers.map(() => "ok"), `round ${round}`);
    }
  } finally {
    for (const worker of workers) worker.terminate();
  }
});
