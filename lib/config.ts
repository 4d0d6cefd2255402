/**
 * Configuration from command-line flags and environment variables, validated
 * with zod. A flag wins over its environment variable, which wins over the
 * default.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";

/** The validated server configuration. */
export interface Config {
  port: number;
  hostname: string;
  /** Origins allowed to open a WebSocket; null allows any. */
  allowedOrigins: string[] | null;
  /** The bearer key of the HTTP API; null disables the API. */
  apiKey: string | null;
  maxMessageBytes: number;
  maxTextLength: number;
}

interface Option<K extends keyof Config> {
  key: K;
  flag: string;
  env: string;
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
  try {
    return new URL(text).origin === text;
  } catch {
    return false;
  }
}, "expected origins like https://chat.example.com, comma-separated");

const option = <K extends keyof Config>(o: Option<K>) => o;

/** Every option, in the order `--help` lists them. */
export const OPTIONS = [
  option({
    key: "port",
    flag: "port",
    env: "PORT",
    fallback: "8000",
    description: "TCP port to listen on (0 picks a free one)",
    schema: integer(0, 65535),
  }),
  option({
    key: "hostname",
    flag: "hostname",
    env: "HOSTNAME",
    fallback: "0.0.0.0",
    description: "Address to listen on",
    schema: z.string().trim().min(1, "expected an address"),
  }),
  option({
    key: "allowedOrigins",
    flag: "allowed-origins",
    env: "ALLOWED_ORIGINS",
    fallback: null,
    description: "Comma-separated origins allowed to open a WebSocket (default: any)",
    schema: z.string().transform((text) =>
      text.split(",").map((part) => part.trim()).filter(Boolean)
    )
      .pipe(z.array(origin).min(1, "expected at least one origin")),
  }),
  option({
    key: "apiKey",
    flag: "api-key",
    env: "API_KEY",
    fallback: null,
    description: "Bearer key for POST /api/broadcast (default: the API is off)",
    schema: z.string().min(16, "expected at least 16 characters"),
  }),
  option({
    key: "maxMessageBytes",
    flag: "max-message-bytes",
    env: "MAX_MESSAGE_BYTES",
    fallback: "65536",
    description: "Largest inbound WebSocket message; larger ones close with 1009",
    schema: integer(256, 16 * 1024 * 1024),
  }),
  option({
    key: "maxTextLength",
    flag: "max-text-length",
    env: "MAX_TEXT_LENGTH",
    fallback: "4096",
    description: "Longest message text in UTF-16 code units; longer gets too_large",
    schema: integer(1, 1024 * 1024),
  }),
] as const;

/** The outcome of reading the configuration. */
export type ConfigResult =
  | { kind: "config"; config: Config }
  | { kind: "help"; text: string }
  | { kind: "version" }
  | { kind: "error"; message: string };

/** Reads the configuration from `args` and `env`; never throws. */
export function parseConfig(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ConfigResult {
  let values: Record<string, string | boolean | undefined>;
  try {
    const parsed = parseArgs({
      args: [...args],
      options: {
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
        ...Object.fromEntries(OPTIONS.map((o) => [o.flag, { type: "string" as const }])),
      },
      strict: true,
      allowPositionals: false,
    });
    values = parsed.values;
  } catch (error) {
    return { kind: "error", message: (error as Error).message };
  }
  if (values.help) return { kind: "help", text: helpText() };
  if (values.version) return { kind: "version" };

  const config: Record<string, unknown> = {};
  for (const o of OPTIONS) {
    const fromFlag = values[o.flag] as string | undefined;
    const raw = fromFlag ?? env[o.env] ?? o.fallback;
    if (raw === null) {
      config[o.key] = null;
      continue;
    }
    const result = (o.schema as z.ZodType).safeParse(raw);
    if (!result.success) {
      const source = fromFlag !== undefined
        ? `--${o.flag}`
        : env[o.env] !== undefined
        ? o.env
        : `--${o.flag}`;
      return {
        kind: "error",
        message: `Invalid ${source} "${raw}": ${result.error.issues[0].message}`,
      };
    }
    config[o.key] = result.data;
  }
  return { kind: "config", config: config as unknown as Config };
}

/** The `--help` text: every option with its environment variable and default. */
export function helpText(): string {
  const rows = OPTIONS.map((o) => {
    const left = `  --${o.flag} <value>`.padEnd(30);
    const fallback = o.fallback === null ? "" : ` [default: ${o.fallback}]`;
    return `${left}${o.description}${fallback}\n${"".padEnd(30)}env: ${o.env}`;
  });
  return [
    "hubbub: a WebSocket chat server",
    "",
    "Usage: hubbub [options]",
    "",
    "Options (flags win over environment variables):",
    ...rows,
    `  --help, -h${"".padEnd(20)}Show this help`,
    `  --version, -V${"".padEnd(17)}Print the version`,
    "",
  ].join("\n");
}
