import assert from "node:assert/strict";
import {
  chosenEngine,
  type Config,
  configOptions,
  configTable,
  helpText,
  parseConfig,
} from "../lib/config.ts";
import { DIALECTS } from "../lib/dialects/index.ts";

Deno.test("config: defaults need no flags and no environment", () => {
  assert.deepEqual(parseConfig([], {}, DIALECTS), {
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
      garinchatJwtSecret: null,
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
      engine: "auto",
      kvPath: null,
      nameLease: 30,
      dataDir: "./data",
      historySize: 1000,
      historyTtl: 604800,
      historyLimit: 100,
      historyOnJoin: 0,
      logFormat: "text",
      logLevel: "info",
    },
    warnings: [],
  });
});

Deno.test("config: the cluster options take Redis URLs only, and keep a password out of errors", () => {
  const ok = parseConfig(
    ["--redis-url", "redis://:pw@cache:6379/2", "--name-lease", "10"],
    {},
    DIALECTS,
  );
  assert.equal(ok.kind, "config");
  if (ok.kind === "config") {
    assert.equal(ok.config.redisUrl, "redis://:pw@cache:6379/2");
    assert.equal(ok.config.nameLease, 10);
  }
  const fromEnv = parseConfig([], { HUBBUB_REDIS_URL: "rediss://cache:6380" }, DIALECTS);
  assert.equal(fromEnv.kind === "config" && fromEnv.config.redisUrl, "rediss://cache:6380");
  const bad = parseConfig(["--redis-url", "http://user:secret@cache"], {}, DIALECTS);
  assert.equal(bad.kind, "error");
  if (bad.kind === "error") {
    assert.match(bad.message, /--redis-url/);
    assert.doesNotMatch(bad.message, /secret/);
  }
  assert.equal(parseConfig(["--name-lease", "0"], {}, DIALECTS).kind, "error");
  assert.equal(parseConfig(["--redis-prefix", "has space"], {}, DIALECTS).kind, "error");
});

Deno.test("config: a flag wins over its environment variable", () => {
  const result = parseConfig(["--port", "9001"], {
    HUBBUB_PORT: "9000",
    ALLOWED_ORIGINS: "https://a.example, https://b.example",
  }, DIALECTS);
  assert.equal(result.kind, "config");
  if (result.kind !== "config") return;
  assert.equal(result.config.port, 9001);
  assert.deepEqual(result.config.allowedOrigins, ["https://a.example", "https://b.example"]);
});

Deno.test("config: bad values are errors that name the option", async (t) => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [["--port", "http"], {}, /--port "http"/],
    [[], { HUBBUB_PORT: "70000" }, /^Invalid HUBBUB_PORT "70000": expected at most 65535/],
    [[], { PORT: "70000" }, /^Invalid PORT "70000": expected at most 65535/],
    [["--log-format", "xml"], {}, /--log-format "xml": expected text or json/],
    [[], { HUBBUB_LOG_LEVEL: "verbose" }, /HUBBUB_LOG_LEVEL "verbose"/],
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
      const result = parseConfig(args, env, DIALECTS);
      assert.equal(result.kind, "error");
      if (result.kind === "error") assert.match(result.message, pattern);
    });
  }
});

Deno.test("config: the login deadline is 5 s with JWT and 30 s without; aliases are read", () => {
  const plain = parseConfig([], {}, DIALECTS);
  const jwt = parseConfig([], { JWT_SECRET: "s".repeat(32) }, DIALECTS);
  assert.ok(plain.kind === "config" && jwt.kind === "config");
  assert.equal(plain.config.loginTimeout, 30);
  assert.equal(jwt.config.loginTimeout, 5);
  assert.equal(jwt.config.jwtSecret, "s".repeat(32));
});

Deno.test("config: --help lists every option with its environment variable and default", () => {
  assert.equal(parseConfig(["--help"], {}, DIALECTS).kind, "help");
  const text = helpText(DIALECTS);
  for (const option of configOptions(DIALECTS)) {
    assert.match(text, new RegExp(`--${option.flag} `));
    assert.match(text, new RegExp(`env: ${option.env}\\b`));
    if (option.fallback !== null && option.fallback !== "") {
      assert.ok(text.includes(`[default: ${option.fallback}]`), option.flag);
    }
  }
});

Deno.test("config: the README's table is the one the options render (run `deno task docs` when this fails)", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  assert.ok(readme.includes(`\n${configTable(DIALECTS)}\n`));
  for (const option of configOptions(DIALECTS)) {
    assert.ok(readme.includes(`\`--${option.flag}\``), option.flag);
  }
});

Deno.test("config: environment names are HUBBUB_*; PORT and the seed servers' names are aliases", () => {
  const read = (env: Record<string, string>) => {
    const result = parseConfig([], env, DIALECTS);
    assert.equal(result.kind, "config", JSON.stringify(result));
    return (result as { config: Config }).config;
  };
  assert.equal(read({ HUBBUB_PORT: "9100" }).port, 9100);
  assert.equal(read({ PORT: "9101" }).port, 9101);
  assert.equal(read({ HUBBUB_PORT: "9102", PORT: "9103" }).port, 9102);
  assert.equal(read({ HUBBUB_API_KEY: "k".repeat(16) }).apiKey, "k".repeat(16));
  assert.equal(read({ HUBBUB_HOSTNAME: "127.0.0.1" }).hostname, "127.0.0.1");
  assert.equal(read({ HUBBUB_MAX_CONNECTIONS: "7" }).maxConnections, 7);
  assert.deepEqual(read({ ALLOWED_ORIGINS: "https://a.example" }).allowedOrigins, [
    "https://a.example",
  ]);
  assert.equal(read({ JWT_SECRET: "s".repeat(16) }).jwtSecret, "s".repeat(16));
  assert.equal(
    read({ AUTHORIZER_URL: "https://auth.example" }).authorizerUrl,
    "https://auth.example",
  );
  assert.equal(read({ BROADCASTING_KEY: "bk" }).broadcastingKey, "bk");
  for (const option of configOptions(DIALECTS)) {
    assert.match(option.env, /^HUBBUB_[A-Z_]+$/, option.flag);
  }
});

Deno.test("config: HOSTNAME (set by Docker, Kubernetes and shells) is never read", () => {
  for (const hostname of ["somepod", "10.99.99.99", "", "::1"]) {
    const result = parseConfig([], { HOSTNAME: hostname }, DIALECTS);
    assert.equal(result.kind, "config");
    if (result.kind !== "config") return;
    assert.equal(result.config.hostname, "0.0.0.0");
    assert.deepEqual(result.warnings, [], "HOSTNAME is not a name hubbub used to read, either");
  }
  assert.ok(!helpText(DIALECTS).includes("env: HOSTNAME"));
});

Deno.test("config: a name earlier versions read (API_KEY, REDIS_URL, …) is ignored with a warning", () => {
  const result = parseConfig(
    [],
    { API_KEY: "k".repeat(20), REDIS_URL: "redis://cache:6379" },
    DIALECTS,
  );
  assert.equal(result.kind, "config");
  if (result.kind !== "config") return;
  assert.equal(result.config.apiKey, null);
  assert.equal(result.config.redisUrl, null);
  assert.deepEqual(result.warnings, [
    "API_KEY is set but no longer read; hubbub reads HUBBUB_API_KEY",
    "REDIS_URL is set but no longer read; hubbub reads HUBBUB_REDIS_URL",
  ]);
  // Set the new way too: nothing to warn about.
  const both = parseConfig([], { API_KEY: "x", HUBBUB_API_KEY: "k".repeat(20) }, DIALECTS);
  assert.deepEqual(both.kind === "config" && both.warnings, []);
});

Deno.test("config: names no version read without the prefix (LOG_FORMAT, GARINCHAT_JWT_SECRET) draw no warning", () => {
  const result = parseConfig([], {
    LOG_FORMAT: "json",
    LOG_LEVEL: "debug",
    GARINCHAT_JWT_SECRET: "s".repeat(20),
  }, DIALECTS);
  assert.deepEqual(result.kind === "config" && result.warnings, []);
});

Deno.test("config: the same port given to two listeners is an error naming both; port 0 never clashes", async (t) => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [
      ["--dialect", "wschat=8080", "--dialect", "garinchat=8080"],
      {},
      /^Port 8080 is given twice, to --dialect wschat and to --dialect garinchat/,
    ],
    // Their default ports are the same.
    [["--dialect", "wschat", "--dialect", "garinchat"], {}, /^Port 8080 is given twice/],
    [
      ["--port", "7000", "--dialect", "wsify=7000"],
      {},
      /^Port 7000 .* to --port and to --dialect wsify/,
    ],
    [["--dialect", "wsify=8000"], {}, /^Port 8000 .* to --port \(default\) and to --dialect wsify/],
    [
      [],
      { HUBBUB_PORT: "3000", HUBBUB_DIALECTS: "wsify" },
      /to HUBBUB_PORT and to HUBBUB_DIALECTS wsify/,
    ],
    [[], { PORT: "4567", HUBBUB_DIALECTS: "login-chat" }, /^Port 4567 .* to PORT and to/],
  ];
  for (const [args, env, pattern] of cases) {
    await t.step(`${args.join(" ")} ${JSON.stringify(env)}`, () => {
      const result = parseConfig(args, env, DIALECTS);
      assert.equal(result.kind, "error");
      if (result.kind === "error") assert.match(result.message, pattern);
    });
  }
  await t.step("port 0 twice, and distinct ports, are fine", () => {
    const zero = parseConfig(
      ["--port", "0", "--dialect", "wschat=0", "--dialect", "wsify=0"],
      {},
      DIALECTS,
    );
    assert.equal(zero.kind, "config");
    const distinct = parseConfig(
      ["--dialect", "wschat=8080", "--dialect", "garinchat=8081"],
      {},
      DIALECTS,
    );
    assert.equal(distinct.kind, "config");
  });
});

Deno.test("config: --help puts no flag against its text, wraps at 80 columns, shows no empty default", () => {
  const lines = helpText(DIALECTS).split("\n");
  for (const line of lines) assert.ok(line.length <= 80, `over 80 columns: ${line}`);
  assert.ok(!helpText(DIALECTS).includes("[default: ]"));
  for (const option of configOptions(DIALECTS)) {
    // The flag stands alone on its line; its description starts on the next, indented.
    const at = lines.indexOf(`  --${option.flag} <value>`);
    assert.ok(at >= 0, option.flag);
    assert.match(lines[at + 1], /^ {6}\S/, option.flag);
  }
  assert.ok(lines.includes("  --max-channels-per-connection <value>"));
});

Deno.test("config: --log-format and --log-level", () => {
  const result = parseConfig(["--log-format", "json", "--log-level", "warn"], {}, DIALECTS);
  assert.ok(result.kind === "config");
  assert.equal(result.config.logFormat, "json");
  assert.equal(result.config.logLevel, "warn");
  const fromEnv = parseConfig(
    [],
    { HUBBUB_LOG_FORMAT: "json", HUBBUB_LOG_LEVEL: "debug" },
    DIALECTS,
  );
  assert.ok(fromEnv.kind === "config");
  assert.equal(fromEnv.config.logFormat, "json");
  assert.equal(fromEnv.config.logLevel, "debug");
});

Deno.test("config: --dialect names one of the dialects it is handed, not a list of its own", () => {
  const echo = [{ name: "echo", defaultPort: 9999 }];
  const result = parseConfig(["--dialect", "echo"], {}, echo);
  assert.equal(result.kind, "config");
  if (result.kind === "config") assert.deepEqual(result.config.dialects, new Map([["echo", 9999]]));
  const unknown = parseConfig(["--dialect", "wschat"], {}, echo);
  assert.deepEqual(unknown, {
    kind: "error",
    message: 'Invalid --dialect "wschat": unknown dialect "wschat"; known: echo',
  });
  assert.ok(helpText(echo).includes("echo=9999"));
});

Deno.test("config: --engine auto is redis with a URL, kv on Deno Deploy, else memory; redis needs a URL", () => {
  const parsed = (args: string[]) => {
    const result = parseConfig(args, {}, DIALECTS);
    if (result.kind !== "config") throw new Error(`not a config: ${JSON.stringify(result)}`);
    return result.config;
  };
  assert.equal(chosenEngine(parsed([]), false), "memory");
  assert.equal(chosenEngine(parsed([]), true), "kv");
  assert.equal(chosenEngine(parsed(["--redis-url", "redis://127.0.0.1:6379"]), true), "redis");
  assert.equal(chosenEngine(parsed(["--engine", "kv", "--kv-path", "/tmp/x.db"]), false), "kv");
  assert.equal(parsed(["--engine", "kv", "--kv-path", "/tmp/x.db"]).kvPath, "/tmp/x.db");
  assert.equal(chosenEngine(parsed(["--engine", "memory"]), true), "memory");
  const refused = parseConfig(["--engine", "redis"], {}, DIALECTS);
  assert.equal(refused.kind, "error");
  assert.match((refused as { message: string }).message, /--engine redis needs --redis-url/);
  assert.equal(parseConfig(["--engine", "etcd"], {}, DIALECTS).kind, "error");
});
