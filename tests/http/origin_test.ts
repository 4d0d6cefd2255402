/**
 * Which pages may open a WebSocket (issue 13 item 9): by default only the
 * server's own origin (the host and port of the request's `Host`), so a
 * foreign page cannot connect as its visitor; requests without `Origin`
 * (non-browser clients) always may; `--allowed-origins` lists origins, or
 * `*` allows any.
 */
import assert from "node:assert/strict";
import { type Config, parseConfig } from "../../lib/config.ts";
import { DIALECTS } from "../../lib/dialects/index.ts";
import { wsify } from "../../lib/dialects/wsify.ts";
import { startupFields } from "../../lib/startup.ts";
import { openClient, startServer, TEST_CONFIG, type TestServer } from "../_helpers.ts";

/**
 * Asks the app about an upgrade of `path` with `headers` (`Host` the server's unless given, as
 * a real request has one); returns the status, 101 when it may upgrade.
 */
async function upgradeStatus(
  server: TestServer,
  headers: Record<string, string>,
  { path = "/ws", listener }: { path?: string; listener?: string } = {},
): Promise<number> {
  const answer = await server.app.fetch(
    new Request(`${server.url}${path}`, {
      headers: { upgrade: "websocket", host: new URL(server.url).host, ...headers },
    }),
    { ip: "127.0.0.1", listener },
  );
  if (!(answer instanceof Response)) {
    server.app.abandon(answer); // give back the slot it reserved
    return 101;
  }
  if (answer.status === 403) assert.equal((await answer.json()).error.code, "forbidden_origin");
  else await answer.body?.cancel();
  return answer.status;
}

function serve(overrides: Partial<Config> = {}): TestServer {
  return startServer(overrides, { dialects: [wsify] });
}

Deno.test("origin: by default a foreign page gets 403; the server's own page and clients without Origin connect", async () => {
  await using server = serve();
  await assert.rejects(openClient(server.wsUrl, { origin: "https://evil.example" }));
  const own = await openClient(server.wsUrl, { origin: server.url });
  assert.equal(own.hello.type, "hello");
  const bare = await openClient(server.wsUrl);
  assert.equal(bare.hello.type, "hello");
  await Promise.all([own.close(), bare.close()]);
});

Deno.test("origin: the default compares the origin's host and port with the Host header", async (t) => {
  await using server = serve();
  const host = new URL(server.url).host;
  const cases: [string, Record<string, string>, number][] = [
    ["the same host and port", { origin: server.url, host }, 101],
    ["no Origin at all", { host }, 101],
    ["another port of the same host", { origin: "http://127.0.0.1:1", host }, 403],
    ["another host", { origin: "https://evil.example", host }, 403],
    ["an opaque origin (file:, sandboxed frames)", { origin: "null", host }, 403],
    ["a look-alike suffix", { origin: `${server.url}.evil.example`, host }, 403],
    [
      "https's default port left out",
      { origin: "https://chat.example", host: "chat.example" },
      101,
    ],
    ["https's default port written", {
      origin: "https://chat.example",
      host: "chat.example:443",
    }, 101],
    ["http's default port on the page only", {
      origin: "http://chat.example",
      host: "chat.example:80",
    }, 101],
    [
      "https's port against http's",
      { origin: "https://chat.example", host: "chat.example:80" },
      403,
    ],
    ["upper case in Host", { origin: "https://chat.example", host: "CHAT.example" }, 101],
    ["user info in Host", { origin: "https://chat.example", host: "evil@chat.example" }, 403],
    ["a path in Host", { origin: "https://chat.example", host: "chat.example/x" }, 403],
    ["X-Forwarded-Host without --trust-proxy", {
      origin: "https://chat.example",
      host,
      "x-forwarded-host": "chat.example",
    }, 403],
  ];
  for (const [name, headers, status] of cases) {
    await t.step(`${name}: ${status}`, async () => {
      assert.equal(await upgradeStatus(server, headers), status);
    });
  }
});

Deno.test("origin: with --trust-proxy the host our proxy forwarded is the server's own", async () => {
  await using server = serve({ trustProxy: true });
  const headers = (forwarded?: string) => ({
    origin: "https://chat.example",
    host: "127.0.0.1:8000",
    ...(forwarded === undefined ? {} : { "x-forwarded-host": forwarded }),
  });
  assert.equal(await upgradeStatus(server, headers("chat.example")), 101);
  // The last entry is the one our proxy wrote; what a client put before it does not count.
  assert.equal(await upgradeStatus(server, headers("chat.example, evil.example")), 403);
  assert.equal(await upgradeStatus(server, headers("evil.example, chat.example")), 101);
  assert.equal(await upgradeStatus(server, headers()), 403, "without one, Host decides");
});

Deno.test("origin: --allowed-origins '*' lets any page connect", async () => {
  await using server = serve({ allowedOrigins: ["*"] });
  for (const origin of ["https://evil.example", "null", server.url]) {
    assert.equal(await upgradeStatus(server, { origin }), 101, origin);
  }
  const foreign = await openClient(server.wsUrl, { origin: "https://evil.example" });
  await foreign.close();
});

Deno.test("origin: a list allows exactly its origins, the server's own only when listed", async () => {
  await using server = serve({ allowedOrigins: ["https://chat.example"] });
  const host = new URL(server.url).host;
  assert.equal(await upgradeStatus(server, { origin: "https://chat.example", host }), 101);
  assert.equal(await upgradeStatus(server, { origin: "https://evil.example", host }), 403);
  assert.equal(await upgradeStatus(server, { origin: server.url, host }), 403);
  assert.equal(await upgradeStatus(server, { host }), 101, "no Origin");
});

Deno.test("origin: dialects follow the same rule, on the main port and on their own listener", async () => {
  await using server = serve();
  const dialectHost = "127.0.0.1:3000";
  // On /compat/wsify/ the page of the main port is the server's own.
  const compat = { path: "/compat/wsify/ws" };
  assert.equal(await upgradeStatus(server, { origin: server.url }, compat), 101);
  assert.equal(await upgradeStatus(server, { origin: "https://evil.example" }, compat), 403);
  // On wsify's own port, a page of the main port is another origin: it must be listed.
  const own = { listener: "wsify" };
  assert.equal(await upgradeStatus(server, { origin: server.url, host: dialectHost }, own), 403);
  assert.equal(await upgradeStatus(server, { host: dialectHost }, own), 101, "no Origin");
  await using listed = serve({ allowedOrigins: [server.url] });
  assert.equal(await upgradeStatus(listed, { origin: server.url, host: dialectHost }, own), 101);
});

Deno.test("origin: --allowed-origins takes * alone or origins; the summary names the mode", () => {
  const origins = (value: string) => {
    const result = parseConfig(["--allowed-origins", value], {}, DIALECTS);
    return result.kind === "config" ? result.config.allowedOrigins : result.kind;
  };
  assert.deepEqual(origins("*"), ["*"]);
  assert.deepEqual(origins(" * "), ["*"]);
  assert.deepEqual(origins("https://a.example,https://b.example"), [
    "https://a.example",
    "https://b.example",
  ]);
  assert.equal(origins("*,https://a.example"), "error");
  assert.equal(origins("null"), "error");
  assert.equal(origins("https://a.example/path"), "error");
  assert.equal(startupFields(TEST_CONFIG).origins, "same-origin");
  assert.equal(startupFields({ ...TEST_CONFIG, allowedOrigins: ["*"] }).origins, "any");
});
