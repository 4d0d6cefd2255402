/**
 * The client as it ships: the npm package `deno task client:build` writes,
 * the built module running on Node, and the copy the server embeds for browsers.
 */
import assert from "node:assert/strict";
import { buildClient, type ClientBuild } from "../../tools/build_client.ts";
import { VERSION } from "../../lib/version.ts";
import { startServer } from "../_helpers.ts";

const ROOT = new URL("../../", import.meta.url);

/** Builds the package into a temporary directory, removed after `use`. */
async function withBuild(use: (dir: string, build: ClientBuild) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-client-test-" });
  try {
    await use(dir, await buildClient(dir));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs `command` in `cwd`; resolves with its stdout, failing on a non-zero exit. */
async function run(command: string, args: string[], cwd: string): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command(command, {
    args,
    cwd,
    stdin: "null",
    env: { npm_config_update_notifier: "false", npm_config_fund: "false" },
  }).output();
  const text = new TextDecoder();
  assert.equal(code, 0, `${command} ${args.join(" ")} failed: ${text.decode(stderr)}`);
  return text.decode(stdout);
}

Deno.test("client package: what deno task client:build writes", async (t) => {
  await withBuild(async (dir, build) => {
    await t.step(
      "npm pack holds the module, its declarations, the README and the license",
      async () => {
        const [packed] = JSON.parse(await run("npm", ["pack", "--dry-run", "--json"], dir));
        assert.equal(packed.name, "@hubbub/client");
        assert.equal(packed.version, VERSION);
        assert.deepEqual(
          packed.files.map((file: { path: string }) => file.path).sort(),
          ["LICENSE", "README.md", "mod.d.ts", "mod.js", "package.json"],
        );
        const manifest = JSON.parse(await Deno.readTextFile(`${dir}/package.json`));
        assert.deepEqual(manifest.exports, { ".": { types: "./mod.d.ts", default: "./mod.js" } });
        assert.equal(manifest.type, "module");
        assert.equal(manifest.dependencies, undefined, "the client has no dependency");
      },
    );

    await t.step("the declarations describe the client's API", () => {
      for (
        const declaration of [
          "export declare class HubbubClient",
          "send(channel: string, text: string",
          "export interface ClientEvents",
          "export declare function parseFrames",
        ]
      ) {
        assert.ok(build.dts.includes(declaration), declaration);
      }
    });

    await t.step("Node runs the built module against a scripted socket", async () => {
      // Node 20 has no WebSocket global: the socket is passed in, as on any runtime without one.
      const script = `
        import { HubbubClient } from "./mod.js";
        const sockets = [];
        class Socket {
          constructor(url) { this.url = url; this.sent = []; sockets.push(this); }
          send(data) { this.sent.push(JSON.parse(data)); }
          close() {}
        }
        const client = new HubbubClient({ url: "ws://x/ws", name: "alice", WebSocket: Socket });
        const connected = client.connect();
        const socket = sockets[0];
        socket.onopen({});
        const reply = (...frames) =>
          socket.onmessage({ data: frames.map((f) => JSON.stringify(f)).join("\\n") });
        reply({ type: "hello", protocol: 1 }, { type: "welcome", name: "alice", ref: socket.sent[0].ref });
        await connected;
        const sending = client.send("lobby", "hi");
        reply({ type: "sent", channel: "lobby", id: "i", seq: 7, ref: socket.sent.at(-1).ref });
        const sent = await sending;
        client.close();
        console.log(JSON.stringify({ key: /^[0-9a-f]{32}$/.test(sent.key), seq: sent.seq, state: client.state }));
      `;
      await Deno.writeTextFile(`${dir}/smoke.mjs`, script);
      const output = await run("node", ["smoke.mjs"], dir);
      assert.deepEqual(JSON.parse(output), { key: true, seq: 7, state: "closed" });
    });

    await t.step("static/client.js is this build (else run deno task client:build)", async () => {
      const embedded = await Deno.readTextFile(new URL("static/client.js", ROOT));
      assert.ok(embedded === build.js, "static/client.js is stale: run deno task client:build");
    });
  });
});

Deno.test("client package: the server serves the browser module at /client.js", async () => {
  await using server = startServer();
  const response = await fetch(`${server.url}/client.js`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/javascript/);
  const body = await response.text();
  assert.equal(body, await Deno.readTextFile(new URL("static/client.js", ROOT)));
  assert.match(body, /export \{[^}]*HubbubClient/);
});
