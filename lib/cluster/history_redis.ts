/**
 * The history every node of a Redis cluster shares (`SharedLog`), kept the
 * way Centrifugo keeps its history streams. Per channel `C`, three kinds of
 * key (the braces are a Redis Cluster hash tag: a channel's keys share one
 * slot, so one script may touch them all):
 *
 * - `PREFIX:hist:{C}`: a stream of the stored `message` frames, entry id
 *   `SEQ-0` (so ranges by seq are ranges by id), field `f` holding the
 *   frame's JSON, and `b` and `n` what the bus carried it in and the node
 *   that sent it (for a node that missed it on the bus: `replay`); trimmed
 *   to the newest `maxPerChannel` entries;
 * - `PREFIX:hmeta:{C}`: a hash with the channel's `epoch`, `top` (the
 *   last seq given out) and `gen`, which names this run of the history: set
 *   when the hash is made (seq starts at 1), kept by a new epoch (a hash
 *   from before `gen` existed counts as gen "0");
 * - `PREFIX:hkey:{C}:FROM\0KEY` → `"SEQ ID"`: a sender's idempotency key,
 *   kept for `ttlMs`.
 *
 * One Lua script assigns the next seqs, appends, records the keys and
 * publishes the stored messages on the cluster bus as one payload, so every
 * node receives a channel's messages in seq order, whichever node sent them.
 *
 * Expiry is Centrifugo's `history_ttl`: each append sets the stream's and
 * the meta hash's TTL to `ttlMs` again, so a channel's whole history expires
 * `ttlMs` after its LAST message (a busy channel keeps messages older than
 * `ttlMs`, up to `maxPerChannel`; an idle one loses them all at once). When
 * the meta hash is gone (expired, or a Redis that lost its data), the next
 * read or append makes a new epoch and seq starts again at 1: the epoch
 * change is how clients learn that history was lost.
 *
 * Every operation resolves to null (or `{ok: false}`) when Redis cannot be
 * reached; none throws. An append that times out may still have happened in
 * Redis (stored and published): the caller cannot tell, which is what the
 * idempotency key is for.
 *
 * @module
 */
import type { Redis } from "ioredis";
import {
  canRecover,
  clampLimit,
  newEpoch,
  type Page,
  type SharedAppended,
  type SharedLog,
  type SharedMessage,
  type SharedRecovery,
  type StoredMessage,
} from "../store/store.ts";
import { busOpen } from "./cluster_bus.ts";
import type { Missed } from "../store/store.ts";

/** Where the log keeps its keys and publishes, and what it keeps. */
export interface RedisLogOptions {
  /** Prefix of every key (the engine's prefix). */
  prefix: string;
  /** The Redis pub/sub channel of the cluster bus. */
  busChannel: string;
  /** The most messages kept per channel. */
  maxPerChannel: number;
  /** How long a channel's history outlives its last message, and a key its message. */
  ttlMs: number;
}

/**
 * Creates the meta hash with a new epoch (`ARGV` names it) when it is
 * missing, dropping any stream left from the epoch that was lost.
 */
const ENSURE_META = `
local function ensureMeta(stream, meta, candidate, ttl)
  local head = redis.call('HMGET', meta, 'epoch', 'top', 'gen')
  if head[1] then return head[1], tonumber(head[2]) or 0, head[3] or '0' end
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'epoch', candidate, 'top', 0, 'gen', candidate)
  redis.call('PEXPIRE', meta, ttl)
  return candidate, 0, candidate
end
`;

/**
 * KEYS: stream, meta, then the idempotency keys of the keyed messages.
 * ARGV: bus channel, node as JSON, max per channel, ttl ms, candidate epoch,
 * then per message: its key's index in KEYS (0 for none), id, frameOpen, busOpen.
 * Returns the epoch, then per message: seq, id, 1 if a duplicate else 0.
 */
const APPEND_SCRIPT = ENSURE_META + `
local stream, meta = KEYS[1], KEYS[2]
local ttl = ARGV[4]
local epoch, _, gen = ensureMeta(stream, meta, ARGV[5], ttl)
local results, parts = {epoch}, {}
for i = 6, #ARGV, 4 do
  local k, id = tonumber(ARGV[i]), ARGV[i + 1]
  local first = false
  if k > 0 then first = redis.call('GET', KEYS[k]) end
  if first then
    local seq, firstId = string.match(first, '^(%d+) (.*)$')
    results[#results + 1] = tonumber(seq)
    results[#results + 1] = firstId
    results[#results + 1] = 1
  else
    local seq = redis.call('HINCRBY', meta, 'top', 1)
    local frame = ARGV[i + 2] .. ',"seq":' .. seq .. '}'
    redis.call('XADD', stream, seq .. '-0', 'f', frame, 'b', ARGV[i + 3], 'n', ARGV[2])
    if k > 0 then redis.call('SET', KEYS[k], seq .. ' ' .. id, 'PX', ttl) end
    parts[#parts + 1] = ARGV[i + 3] .. frame .. ',"g":"' .. gen .. '"}'
    results[#results + 1] = seq
    results[#results + 1] = id
    results[#results + 1] = 0
  end
end
if #parts > 0 then
  redis.call('XTRIM', stream, 'MAXLEN', ARGV[3])
  redis.call('PEXPIRE', stream, ttl)
  redis.call('PEXPIRE', meta, ttl)
  redis.call('PUBLISH', ARGV[1], '{"n":' .. ARGV[2] .. ',"m":[' .. table.concat(parts, ',') .. ']}')
end
return results`;

/**
 * KEYS: stream, meta. ARGV: ttl ms, candidate epoch, mode, then per mode:
 * latest LIMIT; before END LIMIT (entries up to seq END); since EPOCH SEQ LIMIT.
 * Returns epoch, top, the oldest kept seq (0 for none), what the frames are
 * ("after": every entry after SEQ up to LIMIT, since the epoch matched;
 * "latest" otherwise), the gen, then the frames oldest first.
 */
const READ_SCRIPT = ENSURE_META + `
local stream, meta = KEYS[1], KEYS[2]
local epoch, top, gen = ensureMeta(stream, meta, ARGV[2], ARGV[1])
local mode = ARGV[3]
local oldest = 0
local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
if first[1] then oldest = tonumber(string.match(first[1][1], '^(%d+)')) end
local entries, kind = {}, 'latest'
local function newest(finish, limit)
  if tonumber(limit) < 1 then return {} end
  local found = redis.call('XREVRANGE', stream, finish, '-', 'COUNT', limit)
  local ordered = {}
  for i = #found, 1, -1 do ordered[#ordered + 1] = found[i] end
  return ordered
end
if mode == 'before' then
  if tonumber(ARGV[4]) >= 1 then entries = newest(ARGV[4], ARGV[5]) end
elseif mode == 'since' and ARGV[4] == epoch then
  kind = 'after'
  if tonumber(ARGV[6]) >= 1 then
    entries = redis.call('XRANGE', stream, (tonumber(ARGV[5]) + 1) .. '-0', '+', 'COUNT', ARGV[6])
  end
elseif mode == 'since' then
  entries = newest('+', ARGV[6])
else
  entries = newest('+', ARGV[4])
end
local result = {epoch, top, oldest, kind, gen}
for _, entry in ipairs(entries) do result[#result + 1] = entry[2][2] end
return result`;

/**
 * KEYS: stream, meta. ARGV: ttl ms, two candidate epochs (the second for when
 * the first is the current one). Sets a new epoch, keeping `top`.
 */
const NEW_EPOCH_SCRIPT = ENSURE_META + `
local current = ensureMeta(KEYS[1], KEYS[2], ARGV[2], ARGV[1])
local epoch = ARGV[2]
if epoch == current then epoch = ARGV[3] end
redis.call('HSET', KEYS[2], 'epoch', epoch)
return epoch`;

/**
 * KEYS: stream, meta. ARGV: after, limit. Makes nothing. Returns the gen
 * ("" when the channel has no history) and top, then per entry after seq
 * AFTER (at most LIMIT): its node's JSON, bus opening and frame ("" for
 * the first two in entries stored before they were).
 */
const REPLAY_SCRIPT = `
local head = redis.call('HMGET', KEYS[2], 'top', 'gen')
if not head[1] then return {'', 0} end
local result = {head[2] or '0', tonumber(head[1])}
local entries = redis.call('XRANGE', KEYS[1], (tonumber(ARGV[1]) + 1) .. '-0', '+', 'COUNT', ARGV[2])
for _, entry in ipairs(entries) do
  local fields = {}
  for i = 1, #entry[2], 2 do fields[entry[2][i]] = entry[2][i + 1] end
  result[#result + 1] = fields['n'] or ''
  result[#result + 1] = fields['b'] or ''
  result[#result + 1] = fields['f']
end
return result`;

type Scripted = Redis & {
  hubbubHistReplay(
    stream: string,
    meta: string,
    ...args: (string | number)[]
  ): Promise<(string | number)[]>;
  hubbubHistAppend(keyCount: number, ...args: (string | number)[]): Promise<(string | number)[]>;
  hubbubHistRead(
    stream: string,
    meta: string,
    ...args: (string | number)[]
  ): Promise<(string | number)[]>;
  hubbubHistEpoch(stream: string, meta: string, ...args: (string | number)[]): Promise<string>;
};

/** What the read script found. */
type Read = {
  epoch: string;
  seq: number;
  gen: string;
  oldest: number | null;
  kind: string;
  messages: StoredMessage[];
};

const reason = (error: unknown): string => error instanceof Error ? error.message : String(error);

/**
 * Creates the shared history on `redis`, a commands connection (not a
 * subscribed one). It uses the connection as it is: with no offline queue,
 * an outage answers at once with null or `{ok: false}`.
 *
 * @example
 * ```ts
 * import { Redis } from "ioredis";
 * import { createRedisLog } from "./history_redis.ts";
 * const redis = new Redis("redis://127.0.0.1:6379");
 * const log = createRedisLog(redis, {
 *   prefix: "hubbub",
 *   busChannel: "hubbub:bus",
 *   maxPerChannel: 1000,
 *   ttlMs: 7 * 24 * 3600 * 1000,
 * });
 * await log.latest("lobby", 50); // { epoch: "k3…", seq: 0, messages: [] }
 * ```
 */
export function createRedisLog(
  redis: Redis,
  options: RedisLogOptions,
): SharedLog & { replay(channel: string, after: number, limit: number): Promise<Missed | null> } {
  const { prefix, busChannel } = options;
  const maxPerChannel = Math.max(1, Math.floor(options.maxPerChannel));
  const ttlMs = Math.max(1, Math.floor(options.ttlMs));
  redis.defineCommand("hubbubHistAppend", { lua: APPEND_SCRIPT });
  redis.defineCommand("hubbubHistRead", { lua: READ_SCRIPT, numberOfKeys: 2 });
  redis.defineCommand("hubbubHistEpoch", { lua: NEW_EPOCH_SCRIPT, numberOfKeys: 2 });
  redis.defineCommand("hubbubHistReplay", { lua: REPLAY_SCRIPT, numberOfKeys: 2 });
  const scripted = redis as Scripted;

  const streamOf = (channel: string) => `${prefix}:hist:{${channel}}`;
  const metaOf = (channel: string) => `${prefix}:hmeta:{${channel}}`;
  const keyOf = (channel: string, from: string, key: string) =>
    `${prefix}:hkey:{${channel}}:${from}\0${key}`;

  /** Runs the read script; null when Redis cannot be reached. */
  const read = async (channel: string, ...args: (string | number)[]): Promise<Read | null> => {
    try {
      const [epoch, seq, oldest, kind, gen, ...frames] = await scripted.hubbubHistRead(
        streamOf(channel),
        metaOf(channel),
        ttlMs,
        newEpoch(),
        ...args,
      );
      return {
        epoch: String(epoch),
        seq: Number(seq),
        oldest: Number(oldest) === 0 ? null : Number(oldest),
        kind: String(kind),
        gen: String(gen),
        messages: frames.map((frame) => JSON.parse(String(frame)) as StoredMessage),
      };
    } catch {
      return null;
    }
  };
  const page = (found: Read | null): Page | null =>
    found === null
      ? null
      : { epoch: found.epoch, seq: found.seq, messages: found.messages, gen: found.gen };

  return {
    async replay(channel, after, limit) {
      try {
        const [gen, top, ...flat] = await scripted.hubbubHistReplay(
          streamOf(channel),
          metaOf(channel),
          after,
          limit,
        );
        const tail = `,"g":${JSON.stringify(String(gen))}}`;
        const messages: Missed["messages"] = [];
        for (let i = 0; i < flat.length; i += 3) {
          const [node, open, frame] = [String(flat[i]), String(flat[i + 1]), String(flat[i + 2])];
          messages.push({
            node: node === "" ? "" : JSON.parse(node),
            message: `${open === "" ? busOpen(channel) : open}${frame}${tail}`,
          });
        }
        return { gen: String(gen), top: Number(top), messages };
      } catch {
        return null;
      }
    },
    async append(node, channel, messages: readonly SharedMessage[]): Promise<SharedAppended> {
      const keys = [streamOf(channel), metaOf(channel)];
      const args: (string | number)[] = [
        busChannel,
        JSON.stringify(node),
        maxPerChannel,
        ttlMs,
        newEpoch(),
      ];
      for (const message of messages) {
        let index = 0;
        if (message.key !== undefined) {
          keys.push(keyOf(channel, message.from, message.key));
          index = keys.length;
        }
        args.push(index, message.id, message.frameOpen, message.busOpen);
      }
      try {
        const [epoch, ...flat] = await scripted.hubbubHistAppend(keys.length, ...keys, ...args);
        const results: { seq: number; id: string; duplicate: boolean }[] = [];
        for (let i = 0; i < flat.length; i += 3) {
          results.push({
            seq: Number(flat[i]),
            id: String(flat[i + 1]),
            duplicate: flat[i + 2] === 1,
          });
        }
        return { ok: true, epoch: String(epoch), results };
      } catch (error) {
        return { ok: false, message: `Cannot store messages in Redis: ${reason(error)}` };
      }
    },
    async latest(channel, limit) {
      return page(await read(channel, "latest", clampLimit(limit)));
    },
    async before(channel, seq, limit) {
      if (seq === Infinity) return page(await read(channel, "latest", clampLimit(limit)));
      // Entries before `seq` are those up to the greatest whole seq below it.
      const end = Number.isNaN(seq) ? 0 : Math.max(0, Math.ceil(seq) - 1);
      return page(await read(channel, "before", end, clampLimit(limit)));
    },
    async since(channel, epoch, seq, limit): Promise<SharedRecovery | null> {
      const n = clampLimit(limit);
      if (Number.isInteger(seq) && seq >= 0) {
        const found = await read(channel, "since", epoch, seq, n);
        if (found === null) return null;
        const head = { epoch: found.epoch, seq: found.seq };
        if (found.kind === "after" && canRecover(head, found.oldest, epoch, seq, n)) {
          return { recovered: true, ...page(found)! };
        }
        if (found.kind === "latest") return { recovered: false, ...page(found)! };
      }
      // The epoch matched but the gap cannot be filled: the latest, with their own head.
      const latest = await read(channel, "latest", n);
      return latest === null ? null : { recovered: false, ...page(latest)! };
    },
    async newEpoch(channel) {
      try {
        await scripted.hubbubHistEpoch(
          streamOf(channel),
          metaOf(channel),
          ttlMs,
          newEpoch(),
          newEpoch(),
        );
        return true;
      } catch {
        return false;
      }
    },
  };
}
