import assert from "node:assert/strict";
import { configTable, helpText, OPTIONS, parseConfig } from "../lib/config.ts";

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
      jwtSecret: null,
      jwtPublicKey: null,
      jwksUrl: null,
      jwtIssuer: null,
      jwtAudience: null,
      jwtClockSkew: 30,
      authorizerUrl: null,
      authorizerTimeoutMs: 2000,
      authorizerConcurrency: 64,
      dialects: new Map(),
      compatChannel: "lobby",
      broadcastingKey: null,
      redisUrl: null,
      redisPrefix: "hubbub",
      nameLease: 30,
    },
  });
});

Deno.test("config: the cluster options take Redis URLs only, and keep a password out of errors", () => {
  const ok = parseConfig(["--redis-url", "redis://:pw@cache:6379/2", "--name-lease", "10"], {});
  assert.equal(ok.kind, "config");
  if (ok.kind === "config") {
    assert.equal(ok.config.redisUrl, "redis://:pw@cache:6379/2");
    assert.equal(ok.config.nameLease, 10);
  }
  const fromEnv = parseConfig([], { REDIS_URL: "rediss://cache:6380" });
  assert.equal(fromEnv.kind === "config" && fromEnv.config.redisUrl, "rediss://cache:6380");
  const bad = parseConfig(["--redis-url", "http://user:secret@cache"], {});
  assert.equal(bad.kind, "error");
  if (bad.kind === "error") {
    assert.match(bad.message, /--redis-url/);
    assert.doesNotMatch(bad.message, /secret/);
  }
  assert.equal(parseConfig(["--name-lease", "0"], {}).kind, "error");
  assert.equal(parseConfig(["--redis-prefix", "has space"], {}).kind, "error");
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
    [["--jwt-public-key", "not a key"], {}, /--jwt-public-key.*PEM/],
    [["--jwks-url", "ftp://keys.example"], {}, /--jwks-url/],
    [
      ["--jwt-secret", "s".repeat(20), "--jwks-url", "https://k.example/jwks"],
      {},
      /Choose one of --jwt-secret, --jwks-url/,
    ],
    [[], { JWT_SECRET: "short" }, /^Invalid JWT_SECRET: expected/],
  ];
  for (const [args, env, pattern] of cases) {
    await t.step(args.join(" ") || JSON.stringify(env), () => {
      const result = parseConfig(args, env);
      assert.equal(result.kind, "error");
      if (result.kind === "error") assert.match(result.message, pattern);
    });
  }
});

Deno.test("config: the login deadline is 5 s with JWT and 30 s without; aliases are read", () => {
  const plain = parseConfig([], {});
  const jwt = parseConfig([], { JWT_DECODE_SECRET: "s".repeat(32) });
  assert.ok(plain.kind === "config" && jwt.kind === "config");
  assert.equal(plain.config.loginTimeout, 30);
  assert.equal(jwt.config.loginTimeout, 5);
  assert.equal(jwt.config.jwtSecret, "s".repeat(32));
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

Deno.test("config: the README's table is the one the options render (run `deno task docs` when this fails)", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  assert.ok(readme.includes(`\n${configTable()}\n`));
  for (const option of OPTIONS) assert.ok(readme.includes(`\`--${option.flag}\``), option.flag);
});
