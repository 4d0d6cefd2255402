/**
 * Configuration from command-line flags and environment variables, validated
 * with zod. A flag wins over its environment variable, which wins over the
 * default.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { algorithmsForPublicKey } from "./auth/jwt.ts";
import { type Level, LEVELS, LOG_FORMATS, type LogFormat } from "./log.ts";

/** The validated server configuration. */
export interface Config {
  port: number;
  hostname: string;
  /** Origins allowed to open a WebSocket; `["*"]` allows any; null only the server's own. */
  allowedOrigins: string[] | null;
  /** The bearer key of the HTTP API; null disables the API. */
  apiKey: string | null;
  maxMessageBytes: number;
  maxTextLength: number;
  /** Commands a connection may send per second, on average. */
  rateLimit: number;
  /** Commands a connection may send in a burst. */
  rateBurst: number;
  /** New connections one IP may open per second, on average (burst: twice that). */
  connectRate: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  maxChannelsPerConnection: number;
  maxChannelMembers: number;
  /** Bytes queued for one socket before it is dropped as a slow consumer. */
  maxBufferedBytes: number;
  /** Seconds without a pong before a socket is considered dead. */
  pingTimeout: number;
  /** Seconds a new connection has to log in. */
  loginTimeout: number;
  /** Seconds a logged-in connection may stay silent; 0 never drops it. */
  idleTimeout: number;
  /** Take the client address from the last X-Forwarded-For entry. */
  trustProxy: boolean;
  /** HS256/384/512 secret for login tokens. */
  jwtSecret: string | null;
  /** PEM public key for RS*, PS*, ES* or EdDSA login tokens. */
  jwtPublicKey: string | null;
  /** URL of a JSON Web Key Set for login tokens. */
  jwksUrl: string | null;
  jwtIssuer: string | null;
  jwtAudience: string | null;
  /** Seconds of clock difference tolerated on `exp` and `nbf`. */
  jwtClockSkew: number;
  /** The authorizer webhook; null: none. */
  authorizerUrl: string | null;
  authorizerTimeoutMs: number;
  authorizerConcurrency: number;
  /** Dialects served on their own listeners: name → port. */
  dialects: Map<string, number>;
  /** The channel that the single global room of wschat and login-chat clients is. */
  compatChannel: string;
  /** The key of wsify's `POST /broadcast?key=`; null: that endpoint is off. */
  broadcastingKey: string | null;
  /** HS256/384/512 secret of GarinChat's `auth` tokens; null: GarinChat uses hubbub's JWT settings. */
  garinchatJwtSecret: string | null;
  /** The Redis that nodes of a cluster share; null: a lone node, everything in memory. */
  redisUrl: string | null;
  /** The prefix of every Redis key and channel, so clusters can share one Redis. */
  redisPrefix: string;
  /**
   * What nodes share: `auto` (Redis when `redisUrl` is set, Deno KV on Deno
   * Deploy, else nothing), `memory` (a lone node), `redis` or `kv`.
   */
  engine: EngineChoice;
  /** The Deno KV database of `engine: kv`; null: the runtime's default (the only one on Deploy). */
  kvPath: string | null;
  /** Seconds a name claim (and a silent node's members) outlive a node that stops renewing them. */
  nameLease: number;
  /** The directory of the history database; null: history lives in memory (`--data-dir none`). */
  dataDir: string | null;
  /** The most messages kept per channel. */
  historySize: number;
  /** Seconds a message is kept. */
  historyTtl: number;
  /** The most messages one `join` or `history` returns. */
  historyLimit: number;
  /** The messages `joined` carries when the `join` does not say. */
  historyOnJoin: number;
  /** How log lines are written: text, or one JSON object per line. */
  logFormat: LogFormat;
  /** The least severe level logged. */
  logLevel: Level;
}

/** The values of `--engine`. */
export const ENGINE_CHOICES = ["auto", "memory", "redis", "kv"] as const;

/** A value of `--engine`. */
export type EngineChoice = typeof ENGINE_CHOICES[number];

interface Option<K extends keyof Config> {
  key: K;
  flag: string;
  env: string;
  /** Other environment variables read when `env` is not set (names other servers use). */
  envAliases?: string[];
  /** The flag may be given more than once; the values are joined with commas. */
  repeatable?: true;
  /** The default, as it would be written on the command line. */
  fallback: string | null;
  description: string;
  schema: z.ZodType<Config[K]>;
}

const integer = (min: number, max: number) =>
  z.string().trim().regex(/^\d+$/, `expected an integer from ${min} to ${max}`)
    .transform(Number)
    .pipe(
      z.number().int().min(min, `expected at least ${min}`).max(max, `expected at most ${max}`),
    );

const origin = z.string().refine((text) => {
  if (text === "*") return true;
  try {
    return new URL(text).origin === text;
  } catch {
    return false;
  }
}, "expected origins like https://chat.example.com, comma-separated, or * for any");

/** A URL whose scheme is one of `protocols` (e.g. "http:"). */
const urlOf = (protocols: string[], message: string) =>
  z.string().refine((text) => {
    try {
      return protocols.includes(new URL(text).protocol);
    } catch {
      return false;
    }
  }, message);

const httpUrl = urlOf(["http:", "https:"], "expected an http:// or https:// URL");
const redisUrl = urlOf(["redis:", "rediss:"], "expected a redis:// or rediss:// URL");

const option = <K extends keyof Config>(o: Option<K>) => o;

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** A duration as seconds: `604800`, `45s`, `30m`, `12h` or `7d`, from `min` to `max` seconds. */
const duration = (min: number, max: number) =>
  z.string().trim().regex(/^\d+[smhd]?$/, "expected seconds, or a number with s, m, h or d")
    .transform((text) => {
      const unit = /[smhd]$/.test(text) ? text.at(-1)! : "s";
      return Number.parseInt(text, 10) * DURATION_UNITS[unit];
    })
    .pipe(
      z.number().int().min(min, `expected at least ${min} s`).max(max, `expected at most ${max} s`),
    );

/**
 * A wire protocol `--dialect` may name, as the configuration sees it. The
 * list is handed in (main.ts passes `DIALECTS`), so that the configuration
 * imports no dialect and no dialect imports the configuration.
 */
export interface DialectListing {
  readonly name: string;
  /** The port the original server listened on by default. */
  readonly defaultPort: number;
}

/** Every option, in the order `--help` lists them; `dialects` are those `--dialect` may name. */
export function configOptions(dialects: readonly DialectListing[]) {
  return [...LEADING_OPTIONS, dialectOption(dialects), ...TRAILING_OPTIONS] as const;
}

/** One option as {@linkcode configOptions} lists it. */
type ConfigOption = ReturnType<typeof configOptions>[number];

/** The options `--help` lists before `--dialect`. */
const LEADING_OPTIONS = [
  option({
    key: "port",
    flag: "port",
    env: "HUBBUB_PORT",
    envAliases: ["PORT"],
    fallback: "8000",
    description: "TCP port to listen on (0 picks a free one)",
    schema: integer(0, 65535),
  }),
  option({
    key: "hostname",
    flag: "hostname",
    env: "HUBBUB_HOSTNAME",
    fallback: "0.0.0.0",
    description: "Address to listen on (the HOSTNAME variable is never read)",
    schema: z.string().trim().min(1, "expected an address"),
  }),
  option({
    key: "allowedOrigins",
    flag: "allowed-origins",
    env: "HUBBUB_ALLOWED_ORIGINS",
    envAliases: ["ALLOWED_ORIGINS"],
    fallback: null,
    description:
      "Origins whose pages may open a WebSocket, comma-separated, or * for any (default: the server's own host and port)",
    schema: z.string().transform((text) =>
      text.split(",").map((part) => part.trim()).filter(Boolean)
    )
      .pipe(z.array(origin).min(1, "expected at least one origin"))
      .refine(
        (origins) => origins.length === 1 || !origins.includes("*"),
        "expected * alone (it allows any origin) or a list of origins",
      ),
  }),
  option({
    key: "apiKey",
    flag: "api-key",
    env: "HUBBUB_API_KEY",
    fallback: null,
    description: "Bearer key for POST /api/broadcast (default: the API is off)",
    schema: z.string().min(16, "expected at least 16 characters"),
  }),
  option({
    key: "maxMessageBytes",
    flag: "max-message-bytes",
    env: "HUBBUB_MAX_MESSAGE_BYTES",
    fallback: "65536",
    description: "Largest inbound WebSocket message; larger ones close with 1009",
    schema: integer(256, 16 * 1024 * 1024),
  }),
  option({
    key: "maxTextLength",
    flag: "max-text-length",
    env: "HUBBUB_MAX_TEXT_LENGTH",
    fallback: "4096",
    description: "Longest message text in UTF-16 code units; longer gets too_large",
    schema: integer(1, 1024 * 1024),
  }),
  option({
    key: "rateLimit",
    flag: "rate-limit",
    env: "HUBBUB_RATE_LIMIT",
    fallback: "20",
    description: "Commands per second one connection may send on average",
    schema: integer(1, 1_000_000),
  }),
  option({
    key: "rateBurst",
    flag: "rate-burst",
    env: "HUBBUB_RATE_BURST",
    fallback: "40",
    description: "Commands one connection may send in a burst",
    schema: integer(1, 1_000_000),
  }),
  option({
    key: "connectRate",
    flag: "connect-rate",
    env: "HUBBUB_CONNECT_RATE",
    fallback: "20",
    description: "New WebSockets per second from one IP (bursts of twice that); more get 429",
    schema: integer(1, 1_000_000),
  }),
  option({
    key: "maxConnections",
    flag: "max-connections",
    env: "HUBBUB_MAX_CONNECTIONS",
    fallback: "10000",
    description: "Open WebSockets in total; more get 503 (keep below `ulimit -n`)",
    schema: integer(1, 10_000_000),
  }),
  option({
    key: "maxConnectionsPerIp",
    flag: "max-connections-per-ip",
    env: "HUBBUB_MAX_CONNECTIONS_PER_IP",
    fallback: "100",
    description: "Open WebSockets from one IP; more get 429",
    schema: integer(1, 10_000_000),
  }),
  option({
    key: "maxChannelsPerConnection",
    flag: "max-channels-per-connection",
    env: "HUBBUB_MAX_CHANNELS_PER_CONNECTION",
    fallback: "100",
    description: "Channels one connection may be in; more get too_many_channels",
    schema: integer(1, 1_000_000),
  }),
  option({
    key: "maxChannelMembers",
    flag: "max-channel-members",
    env: "HUBBUB_MAX_CHANNEL_MEMBERS",
    fallback: "10000",
    description: "Members one channel may have; more get channel_full",
    schema: integer(1, 10_000_000),
  }),
  option({
    key: "maxBufferedBytes",
    flag: "max-buffered-bytes",
    env: "HUBBUB_MAX_BUFFERED_BYTES",
    fallback: "1048576",
    description: "Unsent bytes queued for one client before it is closed with 1013 (slow consumer)",
    schema: integer(1024, 1024 * 1024 * 1024),
  }),
  option({
    key: "pingTimeout",
    flag: "ping-timeout",
    env: "HUBBUB_PING_TIMEOUT",
    fallback: "30",
    description: "Seconds without a pong before a socket is dropped as dead (0: never)",
    schema: integer(0, 3600),
  }),
  option({
    key: "loginTimeout",
    flag: "login-timeout",
    env: "HUBBUB_LOGIN_TIMEOUT",
    fallback: null,
    description:
      "Seconds a connection may stay without a login before it is closed with 4408 (default: 5 with JWT, else 30)",
    schema: integer(1, 86400),
  }),
  option({
    key: "idleTimeout",
    flag: "idle-timeout",
    env: "HUBBUB_IDLE_TIMEOUT",
    fallback: "0",
    description:
      "Seconds a logged-in connection may send nothing before it is closed with 4410 (0: never)",
    schema: integer(0, 30 * 86400),
  }),
  option({
    key: "trustProxy",
    flag: "trust-proxy",
    env: "HUBBUB_TRUST_PROXY",
    fallback: "false",
    description: "Take client IPs from X-Forwarded-For (only behind a proxy that sets it)",
    schema: z.enum(["true", "false", "1", "0"]).transform((text) =>
      text === "true" || text === "1"
    ),
  }),
] as const;

/** `--dialect NAME[=PORT]`, over the dialects the server was built with. */
const dialectOption = (dialects: readonly DialectListing[]) =>
  option({
    key: "dialects",
    flag: "dialect",
    env: "HUBBUB_DIALECTS",
    repeatable: true,
    fallback: "",
    description: `Also serve a seed server's protocol on its own port, NAME[=PORT] (repeatable; ${
      dialects.map((d) => `${d.name}=${d.defaultPort}`).join(", ") || "none built in"
    }); with tokens or an authorizer, only these are served, under /compat/ too`,
    schema: z.string().transform((text, ctx) => {
      const listeners = new Map<string, number>();
      for (const part of text.split(",").map((item) => item.trim()).filter(Boolean)) {
        const [name, port] = part.split("=");
        const dialect = dialects.find((d) => d.name === name);
        if (dialect === undefined) {
          ctx.addIssue({
            code: "custom",
            message: `unknown dialect "${name}"; known: ${dialects.map((d) => d.name).join(", ")}`,
          });
          return z.NEVER;
        }
        const number = port === undefined ? dialect.defaultPort : Number(port);
        if (!Number.isInteger(number) || number < 0 || number > 65535) {
          ctx.addIssue({ code: "custom", message: `bad port "${port}" for ${name}` });
          return z.NEVER;
        }
        listeners.set(name, number);
      }
      return listeners;
    }),
  });

/** The options `--help` lists after `--dialect`. */
const TRAILING_OPTIONS = [
  option({
    key: "compatChannel",
    flag: "compat-channel",
    env: "HUBBUB_COMPAT_CHANNEL",
    fallback: "lobby",
    description: "The channel that the one global room of wschat and login-chat clients maps to",
    schema: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, "expected a channel name"),
  }),
  option({
    key: "broadcastingKey",
    flag: "broadcasting-key",
    env: "HUBBUB_BROADCASTING_KEY",
    envAliases: ["BROADCASTING_KEY"],
    fallback: null,
    description: "Key of wsify's POST /broadcast?key= (default: that endpoint answers 403)",
    schema: z.string().min(1),
  }),
  option({
    key: "garinchatJwtSecret",
    flag: "garinchat-jwt-secret",
    env: "HUBBUB_GARINCHAT_JWT_SECRET",
    envAliases: ["JWT_DECODE_SECRET"],
    fallback: null,
    description:
      "GarinChat only: verify its auth tokens with this HS256/384/512 secret, 16+ characters (default: the --jwt-* settings)",
    schema: z.string().min(16, "expected at least 16 characters"),
  }),
  option({
    key: "jwtSecret",
    flag: "jwt-secret",
    env: "HUBBUB_JWT_SECRET",
    envAliases: ["JWT_SECRET"],
    fallback: null,
    description: "Require login tokens signed with this HS256/384/512 secret (16+ characters)",
    schema: z.string().min(16, "expected at least 16 characters"),
  }),
  option({
    key: "jwtPublicKey",
    flag: "jwt-public-key",
    env: "HUBBUB_JWT_PUBLIC_KEY",
    fallback: null,
    description: "Require login tokens verified by this PEM public key (RS*, PS*, ES*, EdDSA)",
    schema: z.string().transform((text) => text.replaceAll("\\n", "\n")).refine((pem) => {
      try {
        algorithmsForPublicKey(pem);
        return true;
      } catch {
        return false;
      }
    }, "expected a PEM RSA, EC (P-256/384/521) or Ed25519 public key"),
  }),
  option({
    key: "jwksUrl",
    flag: "jwks-url",
    env: "HUBBUB_JWKS_URL",
    fallback: null,
    description:
      "Require login tokens verified by this JSON Web Key Set (fetched, cached, refreshed)",
    schema: httpUrl,
  }),
  option({
    key: "jwtIssuer",
    flag: "jwt-issuer",
    env: "HUBBUB_JWT_ISSUER",
    fallback: null,
    description: "Required `iss` claim of login tokens",
    schema: z.string().min(1),
  }),
  option({
    key: "jwtAudience",
    flag: "jwt-audience",
    env: "HUBBUB_JWT_AUDIENCE",
    fallback: null,
    description: "Required `aud` claim of login tokens",
    schema: z.string().min(1),
  }),
  option({
    key: "jwtClockSkew",
    flag: "jwt-clock-skew",
    env: "HUBBUB_JWT_CLOCK_SKEW",
    fallback: "30",
    description: "Seconds of clock difference tolerated on `exp` and `nbf`",
    schema: integer(0, 3600),
  }),
  option({
    key: "authorizerUrl",
    flag: "authorizer-url",
    env: "HUBBUB_AUTHORIZER_URL",
    envAliases: ["AUTHORIZER_URL"],
    fallback: null,
    description: "Ask this URL (POST) before each upgrade and each login, join and broadcast",
    schema: httpUrl,
  }),
  option({
    key: "authorizerTimeoutMs",
    flag: "authorizer-timeout-ms",
    env: "HUBBUB_AUTHORIZER_TIMEOUT_MS",
    fallback: "2000",
    description: "Milliseconds to wait for the authorizer before treating it as down",
    schema: integer(1, 60_000),
  }),
  option({
    key: "authorizerConcurrency",
    flag: "authorizer-concurrency",
    env: "HUBBUB_AUTHORIZER_CONCURRENCY",
    fallback: "64",
    description:
      "Authorizer calls in flight at once (16x more may wait; beyond that it counts as down)",
    schema: integer(1, 10_000),
  }),
  option({
    key: "redisUrl",
    flag: "redis-url",
    env: "HUBBUB_REDIS_URL",
    fallback: null,
    description:
      "Run as one node of a cluster that shares this Redis (default: a lone node, in memory)",
    schema: redisUrl,
  }),
  option({
    key: "redisPrefix",
    flag: "redis-prefix",
    env: "HUBBUB_REDIS_PREFIX",
    fallback: "hubbub",
    description: "Prefix of the cluster's Redis keys and channel (one per cluster)",
    schema: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, "expected 1-64 of A-Z a-z 0-9 _ . : -"),
  }),
  option({
    key: "engine",
    flag: "engine",
    env: "HUBBUB_ENGINE",
    fallback: "auto",
    description:
      "What nodes share: auto (redis with --redis-url, kv on Deno Deploy, else memory), memory, redis or kv (Deno KV)",
    schema: z.enum(ENGINE_CHOICES, "expected auto, memory, redis or kv"),
  }),
  option({
    key: "kvPath",
    flag: "kv-path",
    env: "HUBBUB_KV_PATH",
    fallback: null,
    description:
      "Deno KV database of --engine kv, shared by every worker (default: the runtime's own)",
    schema: z.string().trim().min(1, "expected a file path"),
  }),
  option({
    key: "nameLease",
    flag: "name-lease",
    env: "HUBBUB_NAME_LEASE",
    fallback: "30",
    description: "Seconds a crashed node's names stay taken in a cluster (renewed every third)",
    schema: integer(1, 3600),
  }),
  option({
    key: "dataDir",
    flag: "data-dir",
    env: "HUBBUB_DATA_DIR",
    envAliases: ["DATA_DIR"],
    fallback: "./data",
    description:
      "Directory of the message history (SQLite, created if missing); none: history in memory only",
    schema: z.string().trim().min(1, "expected a directory, or none")
      .transform((text) => text === "none" ? null : text),
  }),
  option({
    key: "historySize",
    flag: "history-size",
    env: "HUBBUB_HISTORY_SIZE",
    fallback: "1000",
    description: "Messages kept per channel; older ones are dropped",
    schema: integer(1, 10_000_000),
  }),
  option({
    key: "historyTtl",
    flag: "history-ttl",
    env: "HUBBUB_HISTORY_TTL",
    fallback: "7d",
    description: "How long a message is kept: seconds, or with s, m, h or d",
    schema: duration(1, 10 * 365 * 86_400),
  }),
  option({
    key: "historyLimit",
    flag: "history-limit",
    env: "HUBBUB_HISTORY_LIMIT",
    fallback: "100",
    description: "Most messages one join or history command returns",
    schema: integer(1, 10_000),
  }),
  option({
    key: "historyOnJoin",
    flag: "history-on-join",
    env: "HUBBUB_HISTORY_ON_JOIN",
    fallback: "0",
    description: "Messages a join returns when it does not say (at most --history-limit)",
    schema: integer(0, 10_000),
  }),
  option({
    key: "logFormat",
    flag: "log-format",
    env: "HUBBUB_LOG_FORMAT",
    fallback: "text",
    description: "How log lines look: text, or json (one object per line)",
    schema: z.enum(LOG_FORMATS as [LogFormat, ...LogFormat[]], "expected text or json"),
  }),
  option({
    key: "logLevel",
    flag: "log-level",
    env: "HUBBUB_LOG_LEVEL",
    fallback: "info",
    description: "The least severe lines logged: debug, info, warn or error",
    schema: z.enum(LEVELS as [Level, ...Level[]], "expected debug, info, warn or error"),
  }),
] as const;

/** The outcome of reading the configuration. */
export type ConfigResult =
  /** `warnings`: environment variables that earlier versions read and this one ignores. */
  | { kind: "config"; config: Config; warnings: string[] }
  | { kind: "help"; text: string }
  | { kind: "version" }
  /** `--healthcheck`: probe the server this configuration describes, instead of serving. */
  | { kind: "healthcheck"; config: Config }
  | { kind: "error"; message: string };

/** Reads the configuration from `args` and `env`, `--dialect` naming one of `dialects`; never throws. */
export function parseConfig(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  dialects: readonly DialectListing[],
): ConfigResult {
  const options = configOptions(dialects);
  let values: Record<string, string | boolean | undefined>;
  try {
    const parsed = parseArgs({
      args: [...args],
      options: {
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
        healthcheck: { type: "boolean" },
        ...Object.fromEntries(
          options.map((o) => [o.flag, { type: "string" as const, multiple: "repeatable" in o }]),
        ),
      },
      strict: true,
      allowPositionals: false,
    });
    values = parsed.values;
  } catch (error) {
    return { kind: "error", message: (error as Error).message };
  }
  if (values.help) return { kind: "help", text: helpText(dialects) };
  if (values.version) return { kind: "version" };

  const config: Record<string, unknown> = {};
  /** Where each option's value came from: its flag, an environment variable, or null (default). */
  const sources: Partial<Record<keyof Config, string | null>> = {};
  const warnings: string[] = [];
  for (const o of options) {
    const flagValue = values[o.flag] as string | string[] | undefined;
    const fromFlag = Array.isArray(flagValue) ? flagValue.join(",") : flagValue;
    const envName = [o.env, ...(o.envAliases ?? [])].find((name) => env[name] !== undefined);
    sources[o.key] = fromFlag !== undefined ? `--${o.flag}` : envName ?? null;
    const legacy = legacyEnvName(o);
    if (sources[o.key] === null && legacy !== null && env[legacy] !== undefined) {
      warnings.push(`${legacy} is set but no longer read; hubbub reads ${o.env}`);
    }
    const raw = fromFlag ?? (envName === undefined ? undefined : env[envName]) ?? o.fallback;
    if (raw === null) {
      config[o.key] = null;
      continue;
    }
    const result = (o.schema as z.ZodType).safeParse(raw);
    if (!result.success) {
      const source = fromFlag === undefined && envName !== undefined ? envName : `--${o.flag}`;
      // Secrets stay out of error messages and logs.
      const shown = SECRET_OPTIONS.has(o.key) ? "" : ` "${raw}"`;
      return {
        kind: "error",
        message: `Invalid ${source}${shown}: ${result.error.issues[0].message}`,
      };
    }
    config[o.key] = result.data;
  }
  const jwtSources = (["jwtSecret", "jwtPublicKey", "jwksUrl"] as const).filter((key) =>
    config[key] !== null
  );
  if (jwtSources.length > 1) {
    const flags = jwtSources.map((key) => `--${options.find((o) => o.key === key)!.flag}`);
    return {
      kind: "error",
      message: `Choose one of ${flags.join(", ")}: each sets where login tokens are verified`,
    };
  }
  if (config.engine === "redis" && config.redisUrl === null) {
    return { kind: "error", message: "--engine redis needs --redis-url" };
  }
  const clash = portClash(config as unknown as Config, sources);
  if (clash !== null) return { kind: "error", message: clash };
  // People typing a name need longer than programs presenting a token.
  config.loginTimeout ??= jwtSources.length > 0 ? 5 : 30;
  if (values.healthcheck) return { kind: "healthcheck", config: config as unknown as Config };
  return { kind: "config", config: config as unknown as Config, warnings };
}

/**
 * The unprefixed name an option had before every name got `HUBBUB_`, when
 * it is no longer read; HOSTNAME is left out, as Docker and shells set it.
 */
function legacyEnvName(o: ConfigOption): string | null {
  const old = o.env.replace(/^HUBBUB_/, "");
  if (
    !EARLIER_ENV_NAMES.has(old) || (o.envAliases as readonly string[] | undefined)?.includes(old)
  ) {
    return null;
  }
  return old;
}

/** The unprefixed names version 0.1.0 read (HOSTNAME aside); options born later never had one. */
const EARLIER_ENV_NAMES = new Set([
  "PORT",
  "ALLOWED_ORIGINS",
  "API_KEY",
  "MAX_MESSAGE_BYTES",
  "MAX_TEXT_LENGTH",
  "RATE_LIMIT",
  "RATE_BURST",
  "CONNECT_RATE",
  "MAX_CONNECTIONS",
  "MAX_CONNECTIONS_PER_IP",
  "MAX_CHANNELS_PER_CONNECTION",
  "MAX_CHANNEL_MEMBERS",
  "MAX_BUFFERED_BYTES",
  "PING_TIMEOUT",
  "LOGIN_TIMEOUT",
  "IDLE_TIMEOUT",
  "TRUST_PROXY",
  "DIALECTS",
  "COMPAT_CHANNEL",
  "BROADCASTING_KEY",
  "JWT_SECRET",
  "JWT_PUBLIC_KEY",
  "JWKS_URL",
  "JWT_ISSUER",
  "JWT_AUDIENCE",
  "JWT_CLOCK_SKEW",
  "AUTHORIZER_URL",
  "AUTHORIZER_TIMEOUT_MS",
  "AUTHORIZER_CONCURRENCY",
  "REDIS_URL",
  "REDIS_PREFIX",
  "NAME_LEASE",
]);

/** Says which two listeners were given the same port, or null; port 0 (any free one) never clashes. */
function portClash(
  config: Config,
  sources: Partial<Record<keyof Config, string | null>>,
): string | null {
  const dialectSource = sources.dialects?.startsWith("--") === false
    ? sources.dialects
    : "--dialect";
  const listeners: [string, number][] = [
    [sources.port ?? "--port (default)", config.port],
    ...[...config.dialects].map(([name, port]): [string, number] => [
      `${dialectSource} ${name}`,
      port,
    ]),
  ];
  const seen = new Map<number, string>();
  for (const [label, port] of listeners) {
    if (port === 0) continue;
    const first = seen.get(port);
    if (first !== undefined) {
      return `Port ${port} is given twice, to ${first} and to ${label}: give each listener its own port`;
    }
    seen.set(port, label);
  }
  return null;
}

/** Options whose values are never echoed. */
const SECRET_OPTIONS = new Set<keyof Config>([
  "apiKey",
  "jwtSecret",
  "broadcastingKey",
  "garinchatJwtSecret",
  "redisUrl",
]);

/** Columns the `--help` text fits in. */
const HELP_WIDTH = 80;

/** The `--help` text: every option with its environment variable and default. */
export function helpText(dialects: readonly DialectListing[]): string {
  const rows = configOptions(dialects).flatMap((o) => {
    // A non-breaking space keeps "[default: X]" on one line; it is a plain space again below.
    const fallback = o.fallback === null || o.fallback === ""
      ? ""
      : ` [default:\u00a0${o.fallback}]`;
    const aliases = o.envAliases ? ` (or ${o.envAliases.join(", ")})` : "";
    return helpEntry(
      `--${o.flag} <value>`,
      `${o.description}${fallback}`,
      `env: ${o.env}${aliases}`,
    );
  });
  return [
    "hubbub: a WebSocket chat server",
    "",
    "Usage: hubbub [options]",
    "",
    "Options (flags win over environment variables):",
    ...rows,
    ...helpEntry("--help, -h", "Show this help"),
    ...helpEntry("--version, -V", "Print the version"),
    ...helpEntry("--healthcheck", "Exit 0 if GET /readyz on --port answers 200, else 1"),
    "",
  ].join("\n").replaceAll("\u00a0", " ");
}

/** One option of the help: the flag on its own line, so no flag, however long, runs into its text. */
function helpEntry(flag: string, ...paragraphs: string[]): string[] {
  const indent = "      ";
  const lines = [`  ${flag}`];
  for (const paragraph of paragraphs) {
    let line = "";
    for (const word of paragraph.split(" ")) {
      if (line !== "" && indent.length + line.length + 1 + word.length > HELP_WIDTH) {
        lines.push(indent + line);
        line = word;
      } else line = line === "" ? word : `${line} ${word}`;
    }
    lines.push(indent + line);
  }
  return lines;
}

/** The README's configuration table, rendered from {@linkcode configOptions}. */
export function configTable(dialects: readonly DialectListing[]): string {
  const rows = configOptions(dialects).map((o) => {
    const env = [o.env, ...(o.envAliases ?? [])].map((name) => `\`${name}\``).join(" or ");
    const fallback = o.fallback === null || o.fallback === "" ? "—" : `\`${o.fallback}\``;
    return `| \`--${o.flag}\` | ${env} | ${fallback} | ${o.description} |`;
  });
  return ["| flag | environment | default | meaning |", "|---|---|---|---|", ...rows].join("\n");
}

/** The engine `--engine` resolves to: `auto` is Redis with a URL, Deno KV on Deno Deploy, else memory. */
export function chosenEngine(config: Config, onDeploy: boolean): Exclude<EngineChoice, "auto"> {
  if (config.engine !== "auto") return config.engine;
  if (config.redisUrl !== null) return "redis";
  return onDeploy ? "kv" : "memory";
}
