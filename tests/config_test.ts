import assert from "node:assert/strict";
import { helpText, OPTIONS, parseConfig } from "../lib/config.ts";

Deno.test("config: defaults need no flags and no environment", () => {
  assert.deepEqual(parseConfig([], {}), {
    kind: "config",
    config: {
      port: 8000,
      hostname: "0.0.0.0",
      allowedOrigins: null,
      apiKey: null,
      maxMessageBytes: 65536,
      maxTextLength: 4096,
      rateLimit: 20,
      rateBurst: 40,
      connectRate: 20,
      maxConnections: 10000,
      maxConnectionsPerIp: 100,
      maxChannelsPerConnection: 100,
      maxChannelMembers: 10000,
      maxBufferedBytes: 1048576,
      pingTimeout: 30,
      loginTimeout: 30,
      idleTimeout: 0,
      trustProxy: false,
    },
  });
});

Deno.test("config: a flag wins over its environment variable", () => {
  const result = parseConfig(["--port", "9001"], {
    PORT: "9000",
    ALLOWED_ORIGINS: "https://a.example, https://b.example",
  });
  assert.equal(result.kind, "config");
  if (result.kind !== "config") return;
  assert.equal(result.config.port, 9001);
  assert.deepEqual(result.config.allowedOrigins, ["https://a.example", "https://b.example"]);
});

Deno.test("config: bad values are errors that name the option", async (t) => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [["--port", "http"], {}, /--port "http"/],
    [[], { PORT: "70000" }, /PORT "70000": expected at most 65535/],
    [["--max-message-bytes", "-5"], {}, /--max-message-bytes/],
    [["--allowed-origins", "chat.example"], {}, /--allowed-origins/],
    [["--api-key", "short"], {}, /--api-key.*16 characters/],
    [["--prot", "1"], {}, /--prot/],
    [["stray"], {}, /stray/],
  ];
  for (const [args, env, pattern] of cases) {
    await t.step(args.join(" ") || JSON.stringify(env), () => {
      const result = parseConfig(args, env);
      assert.equal(result.kind, "error");
      if (result.kind === "error") assert.match(result.message, pattern);
    });
  }
});

Deno.test("config: --help lists every option with its environment variable and default", () => {
  assert.equal(parseConfig(["--help"], {}).kind, "help");
  const text = helpText();
  for (const option of OPTIONS) {
    assert.match(text, new RegExp(`--${option.flag} `));
    assert.match(text, new RegExp(`env: ${option.env}\\b`));
    if (option.fallback !== null) {
      assert.ok(text.includes(`[default: ${option.fallback}]`), option.flag);
    }
  }
});

Deno.test("config: the README's table lists every option with its env and default", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  for (const option of OPTIONS) {
    const row = readme.split("\n").find((line) =>
      new RegExp(`^\\|\\s*\`--${option.flag}\`\\s*\\|`).test(line)
    );
    assert.ok(row, `README has a row for --${option.flag}`);
    assert.ok(row.includes(`\`${option.env}\``), `${option.flag}: env`);
    if (option.fallback !== null) {
      assert.ok(row.includes(`\`${option.fallback}\``), `${option.flag}: default`);
    }
  }
});
