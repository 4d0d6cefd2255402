/**
 * What Deno Deploy runs, as far as it can be run here (there is no Deploy
 * account): `main.ts` with `DENO_DEPLOYMENT_ID` set, which Deploy sets, and
 * no flag. `--engine auto` picks Deno KV, history lives there and no data
 * directory is opened (Deploy has no disk to keep one), and SIGINT (what
 * Deploy sends 5 s before SIGKILL) closes every socket with 1012 and exits
 * within hubbub's 3 s grace. Several instances sharing one KV are what
 * parallel_test.ts runs. The runtime's own KV (`Deno.openKv()` with no
 * path, the only one on Deploy) is left out: it would outlive the test in
 * DENO_DIR, so a temporary `--kv-path` stands in for it.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { SHUTDOWN_GRACE_MS } from "../../lib/runtime/start.ts";
import { openClient } from "../_helpers.ts";
import { runHubbub, spawnServer, TARGET } from "./_server.ts";

Deno.test({
  name:
    "deploy: with DENO_DEPLOYMENT_ID, auto is Deno KV, no data directory, SIGINT within the grace",
  ignore: TARGET !== "deno",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hubbub-deploy-" });
    try {
      const server = await spawnServer({
        // A data directory the process may write: it must not even be created.
        args: ["--data-dir", `${dir}/history`, "--kv-path", `${dir}/kv.sqlite3`],
        env: { DENO_DEPLOYMENT_ID: "local-test" },
        allowDirs: [dir],
      });
      let ms = 0;
      try {
        const client = await openClient(server.wsUrl);
        assert.equal(typeof client.hello.node, "string", "a node of a cluster says which");
        await client.login("alice");
        await client.join("room");
        client.send({ type: "broadcast", channel: "room", text: "from Deploy", ref: 1 });
        const message = await client.nextOf("message");
        assert.deepEqual([message.text, message.seq], ["from Deploy", 1]);
        const start = performance.now();
        server.child.kill("SIGINT");
        assert.equal((await client.closed).code, 1012);
        const status = await server.child.status;
        ms = performance.now() - start;
        assert.equal(status.code, 0);
      } finally {
        await server.stop();
      }
      const stdout = await server.stdout;
      const stderr = await server.stderr;
      assert.match(stdout, / engine=kv /);
      assert.match(stdout, / store=kv kv=\S+kv\.sqlite3/);
      assert.doesNotMatch(stdout + stderr, /data directory/);
      assert.equal(existsSync(`${dir}/history`), false, "no data directory was created");
      assert.ok(ms < SHUTDOWN_GRACE_MS, `exited ${Math.round(ms)} ms after SIGINT`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "deploy: --engine kv where there is no Deno KV is refused with one line, exit 2",
  ignore: TARGET === "deno",
  async fn() {
    const { code, stderr } = await runHubbub(["--engine", "kv"]);
    assert.equal(code, 2);
    assert.match(stderr, /--engine kv needs Deno KV, which bun does not have: use --engine redis/);
  },
});
