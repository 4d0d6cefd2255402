/** lib/http/healthcheck.ts: the URL it probes and what it makes of silence. */
import assert from "node:assert/strict";
import { helpText, parseConfig } from "../../lib/config.ts";
import { DIALECTS } from "../../lib/dialects/index.ts";
import { probeReadiness, readyzUrl } from "../../lib/http/healthcheck.ts";

Deno.test("healthcheck: probes loopback for a wildcard address, the address itself otherwise", async (t) => {
  const cases: [string, string][] = [
    ["0.0.0.0", "http://127.0.0.1:8000/readyz"],
    ["::", "http://[::1]:8000/readyz"],
    ["127.0.0.1", "http://127.0.0.1:8000/readyz"],
    ["10.1.2.3", "http://10.1.2.3:8000/readyz"],
    ["::1", "http://[::1]:8000/readyz"],
    ["fd00::7", "http://[fd00::7]:8000/readyz"],
    ["localhost", "http://localhost:8000/readyz"],
  ];
  for (const [hostname, url] of cases) {
    await t.step(hostname, () => assert.equal(readyzUrl({ hostname, port: 8000 }), url));
  }
});

Deno.test("healthcheck: a server that never answers is not ready once the timeout passes", async () => {
  const { promise: released, resolve: release } = Promise.withResolvers<void>();
  const abort = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: abort.signal, onListen() {} },
    async () => {
      await released;
      return new Response("late");
    },
  );
  try {
    const result = await probeReadiness({ hostname: "127.0.0.1", port: server.addr.port }, 50);
    assert.equal(result.ok, false);
    assert.match(result.line, /did not answer within 50 ms/);
  } finally {
    release();
    abort.abort();
    await server.finished;
  }
});

Deno.test("healthcheck: port 0 names no server", async () => {
  const result = await probeReadiness({ hostname: "127.0.0.1", port: 0 });
  assert.deepEqual(result, { ok: false, line: "not ready: port 0 names no server; give --port" });
});

Deno.test("healthcheck: --healthcheck reads the same options as the server, and --help lists it", () => {
  const result = parseConfig(["--healthcheck", "--port", "9000", "--hostname", "::"], {}, DIALECTS);
  assert.equal(result.kind, "healthcheck");
  assert.ok(result.kind === "healthcheck");
  assert.equal(readyzUrl(result.config), "http://[::1]:9000/readyz");
  assert.deepEqual(parseConfig(["--healthcheck", "--port", "x"], {}, DIALECTS).kind, "error");
  assert.match(helpText(DIALECTS), /^ +--healthcheck\s+Exit 0 if GET \/readyz/m);
});
