/**
 * Structured logs for operators: one line per event, as text or as one JSON
 * object per line, filtered by level, with events that can repeat without
 * bound (refused upgrades, wrong keys, closed floods) rate-limited per kind.
 * No dependency and no runtime API: lines go to a sink (by default
 * `console.log` for debug and info, `console.error` for warn and error),
 * so it works on Deno and Bun, compiled or not, with no extra permission.
 *
 * Callers pass only what is safe to show: connection ids, addresses, names,
 * codes and reasons. Never a token, a key, a password or message text.
 *
 * @example
 * ```ts
 * const log = createLogger({ format: "json", level: "info" });
 * log.info("listening on http://0.0.0.0:8000/", { runtime: "deno" });
 * log.limited("warn", "upgrade:ip_full", "upgrade refused", { status: 429, reason: "ip_full" });
 * ```
 *
 * @module
 */

/** How severe an event is, in increasing order. */
export type Level = "debug" | "info" | "warn" | "error";

/** The levels, least severe first (the order `--log-level` filters by). */
export const LEVELS: readonly Level[] = ["debug", "info", "warn", "error"];

/** How lines are written. */
export type LogFormat = "text" | "json";

/** The formats `--log-format` accepts. */
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];

/** Extra fields of a line; undefined ones are left out. */
export type LogFields = Readonly<Record<string, string | number | boolean | null | undefined>>;

/** How long a rate-limited kind of event stays quiet after a line, by default. */
export const LIMIT_WINDOW_MS = 10_000;

/** Where the app and its parts write what operators should see. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /**
   * Logs at most one line per `key` per window. Lines held back are counted:
   * the next line of that kind carries `suppressed` (how many were not shown
   * since the previous one), and `flush` shows the latest of them once the
   * window is over.
   */
  limited(level: Level, key: string, msg: string, fields?: LogFields): void;
  /** Writes the held-back lines whose window is over; the app's once-a-second sweep calls it. */
  flush(): void;
}

/** How a logger is made. */
export interface LoggerOptions {
  format: LogFormat;
  /** The least severe level written. */
  level: Level;
  /** Milliseconds since the epoch; injected in tests. */
  now?: () => number;
  /** Writes one finished line (no newline); by default stdout for debug and info, stderr otherwise. */
  write?: (level: Level, line: string) => void;
  /** The quiet period of `limited`; `LIMIT_WINDOW_MS` by default. */
  windowMs?: number;
}

/** A logger that writes nothing; for tests and tools. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  limited() {},
  flush() {},
};

const consoleWrite = (level: Level, line: string) => {
  if (level === "debug" || level === "info") console.log(line);
  else console.error(line);
};

interface Held {
  /** When the last line of this kind was written. */
  shownAt: number;
  /** Lines held back since. */
  suppressed: number;
  /** The latest of them, shown by `flush`. */
  latest?: { level: Level; msg: string; fields?: LogFields };
}

/** Creates a logger. */
export function createLogger(options: LoggerOptions): Logger {
  const now = options.now ?? Date.now;
  const write = options.write ?? consoleWrite;
  const windowMs = options.windowMs ?? LIMIT_WINDOW_MS;
  const threshold = LEVELS.indexOf(options.level);
  const render = options.format === "json" ? renderJson : renderText;
  const held = new Map<string, Held>();

  const emit = (level: Level, msg: string, fields?: LogFields) => {
    if (LEVELS.indexOf(level) < threshold) return;
    write(level, render(new Date(now()).toISOString(), level, msg, fields));
  };

  /** Shows the latest held-back line of a kind whose window is over; forgets quiet kinds. */
  const release = (key: string, entry: Held, at: number) => {
    if (at - entry.shownAt < windowMs) return;
    if (entry.latest === undefined) {
      held.delete(key);
      return;
    }
    const { level, msg, fields } = entry.latest;
    const others = entry.suppressed - 1;
    emit(level, msg, others > 0 ? { ...fields, suppressed: others } : fields);
    held.set(key, { shownAt: at, suppressed: 0 });
  };

  return {
    debug: (msg, fields) => emit("debug", msg, fields),
    info: (msg, fields) => emit("info", msg, fields),
    warn: (msg, fields) => emit("warn", msg, fields),
    error: (msg, fields) => emit("error", msg, fields),
    limited(level, key, msg, fields) {
      if (LEVELS.indexOf(level) < threshold) return;
      const at = now();
      const entry = held.get(key);
      if (entry !== undefined && at - entry.shownAt < windowMs) {
        entry.suppressed++;
        entry.latest = { level, msg, fields };
        return;
      }
      const suppressed = entry?.suppressed ?? 0;
      emit(level, msg, suppressed > 0 ? { ...fields, suppressed } : fields);
      held.set(key, { shownAt: at, suppressed: 0 });
    },
    flush() {
      const at = now();
      for (const [key, entry] of held) release(key, entry, at);
    },
  };
}

/** The names a line's own keys take; fields with these names are renamed, never let overwrite them. */
const RESERVED = new Set(["time", "level", "msg"]);

function renderJson(time: string, level: Level, msg: string, fields?: LogFields): string {
  const line: Record<string, unknown> = { time, level, msg };
  for (const [key, value] of Object.entries(fields ?? {})) {
    if (value !== undefined) line[RESERVED.has(key) ? `field_${key}` : key] = value;
  }
  return JSON.stringify(line);
}

/** `2025-01-01T00:00:00.000Z INFO  msg key=value key="a value"` */
function renderText(time: string, level: Level, msg: string, fields?: LogFields): string {
  let line = `${time} ${level.toUpperCase().padEnd(5)} ${escapeText(msg)}`;
  for (const [key, value] of Object.entries(fields ?? {})) {
    if (value !== undefined) line += ` ${key}=${textValue(value)}`;
  }
  return line;
}

/** A value as logfmt shows it: bare when it is one plain word, quoted (JSON-escaped) otherwise. */
function textValue(value: string | number | boolean | null): string {
  const text = String(value);
  return /^[\w.:/@+\-,=[\]]+$/.test(text) ? text : JSON.stringify(text);
}

/** Control characters in a message would let it forge lines; they are escaped. */
function escapeText(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1));
}
