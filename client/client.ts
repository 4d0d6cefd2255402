/**
 * The hubbub client: one connection that logs in, joins channels, sends and
 * receives messages, and comes back after a drop with every message it missed,
 * none twice.
 *
 * @module
 */
import { backoffDelay, type BackoffOptions } from "./backoff.ts";
import {
  type ChannelInfo,
  type Command,
  FINAL_CLOSE_CODES,
  type JoinedFrame,
  type Message,
  parseFrames,
  type Position,
  type Ref,
  type ServerFrame,
} from "./protocol.ts";

/** A function type whose parameter is checked both ways, so a runtime's own socket type fits. */
type Handler<E> = { bivariant(event: E): void }["bivariant"];

/**
 * The parts of a WebSocket the client uses. The `WebSocket` of browsers, Deno,
 * Bun and Node ≥ 22, and the `ws` package's, all have them.
 */
export interface WebSocketLike {
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onerror: Handler<unknown> | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket class, such as `globalThis.WebSocket` or the `ws` package's. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** The timer functions the client schedules reconnects and pings with; tests pass fakes. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** How to reach and log in to a hubbub server. */
export interface ClientOptions {
  /** The server's WebSocket endpoint, e.g. `ws://localhost:8000/ws`. */
  url: string | URL;
  /** The name to log in with, on a server that does not require tokens. */
  name?: string;
  /**
   * A JWT to log in with, or a function that returns a fresh one; it is called
   * before every login, so a client with a function also comes back after its
   * token expired (close 4401). With a plain string it does not.
   */
  token?: string | (() => string | Promise<string>);
  /** The WebSocket class to use; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Reconnect delays, or `false` never to reconnect by itself. */
  reconnect?: BackoffOptions | false;
  /**
   * Send a `ping` this often (ms) while connected and reconnect when a whole
   * period passes with nothing heard from the server, which finds a dead link
   * (a laptop that slept, a changed network) sooner than the runtime does.
   * Default 0: off, because pings count as activity for the server's
   * `--idle-timeout`.
   */
  heartbeatMs?: number;
  /** Timer functions; default the global `setTimeout` and `clearTimeout`. */
  timers?: Timers;
  /** A source of numbers in [0, 1) for the back-off's jitter; default `Math.random`. */
  random?: () => number;
}

/** An error the server answered a command with (`code` as in PROTOCOL.md), or `"closed"`. */
export class HubbubError extends Error {
  /** The server's error code, or `"closed"` when the client stopped before an answer came. */
  readonly code: string;
  /** The channel the failed command was about, when it was about one. */
  readonly channel?: string;

  /** An error with `code` and a message for people. */
  constructor(code: string, message: string, channel?: string) {
    super(message);
    this.name = "HubbubError";
    this.code = code;
    if (channel !== undefined) this.channel = channel;
  }
}

/** Where the connection is, for a UI to show. */
export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

/** A change of {@linkcode ConnectionState}. */
export type StateEvent =
  /** A socket is opening; `attempt` is 0 for the first, then counts failures in a row. */
  | { state: "connecting"; attempt: number }
  /** Logged in as `name`; channels are being re-joined and unsent messages re-sent. */
  | { state: "open"; name: string }
  /** The connection was lost (`code`, `reason`); the next attempt starts in `delayMs`. */
  | { state: "reconnecting"; attempt: number; delayMs: number; code: number; reason: string }
  /** Stopped for good: by `close()`, a refused login, or a close code not to reconnect after. */
  | { state: "closed"; code: number; reason: string; error: HubbubError };

/** What joining a channel found; its messages are also emitted as `message` events. */
export interface Joined {
  channel: string;
  members: string[];
  /** The channel history's epoch ("" when the server could not read it). */
  epoch: string;
  /** The channel's latest seq when the join took effect (0 for none). */
  seq: number;
  /** The messages this join delivered, oldest first, without any delivered before. */
  messages: Message[];
  /** After a re-join: whether no message was missed. */
  recovered?: boolean;
}

/** Messages may have been missed in `channel` while the client was away; those after come next. */
export interface Gap {
  channel: string;
  /** The epoch the channel's history has now. */
  epoch: string;
  /** Where the client was before the gap. */
  previous: Position;
}

/** Someone joined or left a channel the client is in. */
export interface Presence {
  channel: string;
  event: "join" | "leave";
  name: string;
}

/** A message the server stored: its `id` and `seq`, and the `key` it was sent with. */
export interface Sent {
  channel: string;
  id: string;
  seq: number;
  key: string;
}

/** A page of a channel's older messages, oldest first. */
export interface History {
  channel: string;
  epoch: string;
  messages: Message[];
}

/** The events the client emits, by name, and what each listener receives. */
export interface ClientEvents {
  state: StateEvent;
  message: Message;
  presence: Presence;
  joined: Joined;
  gap: Gap;
  /** An error no command of this client waits for (e.g. a failed re-join). */
  error: HubbubError;
}

/** A command waiting for its reply. */
interface Pending {
  frame: Command;
  resolve(frame: ServerFrame): void;
  reject(error: HubbubError): void;
  /** Called when the connection is lost before the reply; without it, sent again after a reconnect. */
  lost?: () => void;
}

/** A channel the client is in, or is joining. */
interface ChannelRecord {
  /** What `join` asked for, asked for again on every re-join. */
  history?: number;
  /** The last message delivered; null until the first `joined`. */
  position: Position | null;
  members: string[];
  /** `join()` calls waiting for the first `joined`. */
  waiters: { resolve(joined: Joined): void; reject(error: HubbubError): void }[];
}

/** The close code of an expired token (or of logins that kept failing). */
const UNAUTHORIZED = 4401;

/** Login errors after which a reconnecting client tries again later instead of stopping. */
const RETRY_LOGIN = new Set(["unavailable", "rate_limited"]);

/** Login errors a fresh token from a token function may cure. */
const TOKEN_ERRORS = new Set(["unauthorized", "token_expired"]);

const DEFAULT_TIMERS: Timers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/**
 * A connection to a hubbub server that survives drops: it reconnects with
 * back-off, logs in again, re-joins every channel from the last message it
 * delivered, and re-sends what the server has not acknowledged.
 *
 * @example
 * ```ts
 * const client = new HubbubClient({ url: "ws://localhost:8000/ws", name: "alice" });
 * client.on("message", (m) => console.log(`${m.from}: ${m.text}`));
 * await client.connect();
 * await client.join("lobby", { history: 50 });
 * await client.send("lobby", "Hello");
 * client.close();
 * ```
 */
export class HubbubClient {
  readonly #options: ClientOptions;
  readonly #WebSocket: WebSocketConstructor;
  readonly #timers: Timers;
  #state: ConnectionState = "idle";
  #socket: WebSocketLike | null = null;
  #name: string | null = null;
  /** Connection attempts that failed in a row. */
  #attempt = 0;
  #reconnectTimer: unknown = undefined;
  #heartbeatTimer: unknown = undefined;
  /** Whether any frame arrived since the last heartbeat. */
  #heard = false;
  #nextRef = 1;
  readonly #pending = new Map<Ref, Pending>();
  readonly #channels = new Map<string, ChannelRecord>();
  #connectWaiters: { resolve(name: string): void; reject(error: HubbubError): void }[] = [];
  readonly #listeners = new Map<keyof ClientEvents, Set<(payload: never) => void>>();

  /** A client for the server at `options.url`; nothing happens until {@linkcode connect}. */
  constructor(options: ClientOptions) {
    const Socket = options.WebSocket ??
      (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (Socket === undefined) {
      throw new TypeError(
        "This runtime has no WebSocket: pass one as options.WebSocket (on Node before 22, the ws package's)",
      );
    }
    this.#options = options;
    this.#WebSocket = Socket;
    this.#timers = options.timers ?? DEFAULT_TIMERS;
  }

  /** Where the connection is. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** The name the server welcomed this client with (normalized), or null before the first login. */
  get name(): string | null {
    return this.#name;
  }

  /**
   * Connects and logs in; resolves with the name once the server welcomed it.
   * A server that cannot be reached is tried again with back-off; it rejects
   * when the login is refused, on a close code not to reconnect after, or on
   * {@linkcode close}. After a close, it connects again and re-joins the
   * channels the client was in.
   */
  connect(): Promise<string> {
    if (this.#state === "open" && this.#name !== null) return Promise.resolve(this.#name);
    const welcomed = new Promise<string>((resolve, reject) => {
      this.#connectWaiters.push({ resolve, reject });
    });
    if (this.#state === "idle" || this.#state === "closed") {
      this.#attempt = 0;
      this.#open();
    }
    return welcomed;
  }

  /**
   * Joins `channel`, with its latest `history` messages (default the server's
   * `--history-on-join`); they, and every later message, arrive as `message`
   * events. Called before `connect()` or while reconnecting, it joins once
   * logged in.
   */
  join(channel: string, options: { history?: number } = {}): Promise<Joined> {
    if (this.#state === "closed") return Promise.reject(closedError());
    const known = this.#channels.get(channel);
    if (known?.position) {
      const { epoch, seq } = known.position;
      return Promise.resolve({ channel, members: [...known.members], epoch, seq, messages: [] });
    }
    return new Promise((resolve, reject) => {
      if (known) return known.waiters.push({ resolve, reject });
      const record: ChannelRecord = { position: null, members: [], waiters: [{ resolve, reject }] };
      if (options.history !== undefined) record.history = options.history;
      this.#channels.set(channel, record);
      if (this.#state === "open") this.#sendJoin(channel, record);
    });
  }

  /** Leaves `channel`: no more of its messages, and no re-join after a reconnect. */
  leave(channel: string): Promise<void> {
    const record = this.#channels.get(channel);
    this.#channels.delete(channel);
    for (const waiter of record?.waiters ?? []) {
      waiter.reject(
        new HubbubError("left", `Left channel "${channel}" before it was joined`, channel),
      );
    }
    if (this.#state !== "open") return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#request({ type: "leave", channel }, () => resolve(), reject, () => resolve());
    });
  }

  /**
   * Sends `text` to `channel`; resolves once the server stored it. Until then
   * it waits in an outbox and is sent again after a reconnect, with the same
   * `key`, so the server publishes it once whatever happens to the connection.
   * Rejects with the server's error (`not_joined`, `too_large`, …).
   */
  send(channel: string, text: string, options: { key?: string } = {}): Promise<Sent> {
    if (this.#state === "closed") return Promise.reject(closedError());
    const key = options.key ?? randomKey();
    return new Promise((resolve, reject) => {
      this.#request({ type: "broadcast", channel, text, key }, (frame) => {
        if (frame.type !== "sent") return reject(unexpected(frame));
        resolve({ channel: frame.channel, id: frame.id, seq: frame.seq, key });
      }, reject);
    });
  }

  /**
   * Older messages of a channel the client is in, oldest first: the `limit`
   * (default and maximum the server's `--history-limit`) before seq `before`,
   * or the latest. Not emitted as `message` events.
   */
  history(channel: string, options: { before?: number; limit?: number } = {}): Promise<History> {
    if (this.#state === "closed") return Promise.reject(closedError());
    return new Promise((resolve, reject) => {
      this.#request({ type: "history", channel, ...options }, (frame) => {
        if (frame.type !== "history") return reject(unexpected(frame));
        resolve({ channel: frame.channel, epoch: frame.epoch, messages: frame.messages });
      }, reject);
    });
  }

  /** The server's channels and their member counts. */
  channels(): Promise<ChannelInfo[]> {
    if (this.#state === "closed") return Promise.reject(closedError());
    return new Promise((resolve, reject) => {
      this.#request({ type: "channels" }, (frame) => {
        if (frame.type !== "channels") return reject(unexpected(frame));
        resolve(frame.channels);
      }, reject);
    });
  }

  /** The members of a channel the client is in, in join order; empty for others. */
  members(channel: string): string[] {
    return [...(this.#channels.get(channel)?.members ?? [])];
  }

  /** The epoch and seq of the last message delivered from `channel`; null before it is joined. */
  position(channel: string): Position | null {
    const position = this.#channels.get(channel)?.position;
    return position ? { ...position } : null;
  }

  /**
   * Listens to `event`; returns the function that stops listening. A listener
   * that throws does not disturb the client: the error is rethrown in a microtask.
   */
  on<E extends keyof ClientEvents>(
    event: E,
    listener: (payload: ClientEvents[E]) => void,
  ): () => void {
    const set = this.#listeners.get(event) ?? new Set();
    this.#listeners.set(event, set);
    const added = listener as (payload: never) => void;
    set.add(added);
    return () => void set.delete(added);
  }

  /**
   * Closes the connection and stops reconnecting. Commands still waiting,
   * unacknowledged sends included, reject with code `"closed"`. The channels
   * are remembered: a later `connect()` re-joins them from where they were.
   */
  close(): void {
    if (this.#state === "closed") return;
    const error = new HubbubError("closed", "The client was closed");
    this.#disconnect(1000, "Closed by the client", error);
  }

  #open(): void {
    this.#emit("state", { state: "connecting", attempt: this.#attempt });
    let socket: WebSocketLike;
    try {
      socket = new this.#WebSocket(String(this.#options.url));
    } catch (error) {
      const message = `Cannot open a WebSocket to "${this.#options.url}": ${error}`;
      return this.#end(1006, message, new HubbubError("connect_failed", message));
    }
    this.#socket = socket;
    socket.onopen = () => {
      if (socket === this.#socket) void this.#login(socket);
    };
    socket.onmessage = (event) => {
      if (socket !== this.#socket) return;
      this.#heard = true;
      const data = typeof event.data === "string" ? event.data : String(event.data);
      for (const frame of parseFrames(data)) {
        if (socket === this.#socket) this.#receive(frame);
      }
    };
    socket.onclose = (event) => {
      if (socket === this.#socket) this.#disconnect(event.code, event.reason);
    };
    // Every error is followed by a close, which is where the client acts.
    socket.onerror = () => {};
  }

  async #login(socket: WebSocketLike): Promise<void> {
    const { token, name } = this.#options;
    let fresh: string | undefined;
    if (typeof token === "function") {
      try {
        fresh = await token();
      } catch (error) {
        if (socket === this.#socket) this.#disconnect(1006, `The token function failed: ${error}`);
        return;
      }
      if (socket !== this.#socket) return;
    } else fresh = token;
    const frame: Command = fresh !== undefined
      ? { type: "login", token: fresh }
      : { type: "login", name };
    const ref = this.#nextRef++;
    this.#pending.set(ref, {
      frame,
      resolve: (reply) => {
        if (reply.type === "welcome") this.#welcomed(reply.name);
      },
      reject: (error) => this.#loginRefused(error),
      lost: () => {},
    });
    this.#write({ ...frame, ref });
  }

  #welcomed(name: string): void {
    this.#name = name;
    this.#attempt = 0;
    this.#state = "open";
    this.#emit("state", { state: "open", name });
    for (const waiter of this.#connectWaiters.splice(0)) waiter.resolve(name);
    if (this.#state !== "open") return; // a listener closed the client
    // Commands take effect in the order they are sent: the joins first, so that
    // re-sent broadcasts find their channels joined.
    const waiting = [...this.#pending].filter(([, pending]) => !pending.lost);
    for (const [channel, record] of this.#channels) this.#sendJoin(channel, record);
    for (const [ref, pending] of waiting) this.#write({ ...pending.frame, ref });
    this.#heartbeat();
  }

  #loginRefused(error: HubbubError): void {
    // A client that was logged in before may find its old connection still
    // holding the name until the server notices it is gone.
    const retry = RETRY_LOGIN.has(error.code) ||
      (error.code === "name_taken" && this.#name !== null) ||
      (TOKEN_ERRORS.has(error.code) && typeof this.#options.token === "function");
    this.#disconnect(1000, error.message, retry ? "retry" : error);
  }

  #sendJoin(channel: string, record: ChannelRecord): void {
    const since = record.position?.epoch ? { ...record.position } : undefined;
    const frame: Command = { type: "join", channel };
    if (record.history !== undefined) frame.history = record.history;
    if (since) frame.since = since;
    this.#request(
      frame,
      (reply) => {
        if (reply.type === "joined") this.#joined(reply, since !== undefined);
      },
      (error) => this.#joinRefused(channel, error),
      () => {},
    );
  }

  #joined(frame: JoinedFrame, withSince: boolean): void {
    const record = this.#channels.get(frame.channel);
    if (!record) return;
    const previous = record.position;
    const sameEpoch = previous !== null && previous.epoch !== "" && previous.epoch === frame.epoch;
    const position = { epoch: frame.epoch, seq: sameEpoch ? previous.seq : 0 };
    const messages = (frame.messages ?? []).filter((message) => advance(position, message));
    position.seq = Math.max(position.seq, frame.seq ?? 0);
    record.position = position;
    record.members = [...frame.members];
    const joined: Joined = {
      channel: frame.channel,
      members: [...frame.members],
      epoch: frame.epoch,
      seq: frame.seq,
      messages,
    };
    if (frame.recovered !== undefined) joined.recovered = frame.recovered;
    this.#emit("joined", joined);
    // A re-join that did not prove it recovered everything may have missed messages.
    if (previous !== null && !(withSince && frame.recovered === true)) {
      this.#emit("gap", { channel: frame.channel, epoch: frame.epoch, previous });
    }
    for (const message of messages) this.#emit("message", message);
    for (const waiter of record.waiters.splice(0)) waiter.resolve(joined);
  }

  #joinRefused(channel: string, error: HubbubError): void {
    const record = this.#channels.get(channel);
    if (!record) return;
    this.#channels.delete(channel);
    const refused = new HubbubError(error.code, error.message, channel);
    if (record.waiters.length === 0) this.#emit("error", refused);
    for (const waiter of record.waiters) waiter.reject(refused);
  }

  #receive(frame: ServerFrame): void {
    switch (frame.type) {
      case "message": {
        const record = this.#channels.get(frame.channel);
        if (record?.position && advance(record.position, frame)) this.#emit("message", frame);
        return;
      }
      case "presence": {
        const record = this.#channels.get(frame.channel);
        if (!record) return;
        record.members = record.members.filter((name) => name !== frame.name);
        if (frame.event === "join") record.members.push(frame.name);
        return this.#emit("presence", {
          channel: frame.channel,
          event: frame.event,
          name: frame.name,
        });
      }
      case "error": {
        const error = new HubbubError(frame.code, frame.message);
        const { ref } = frame;
        const pending = ref === undefined ? undefined : this.#pending.get(ref);
        if (ref === undefined || !pending) return this.#emit("error", error);
        this.#pending.delete(ref);
        return pending.reject(error);
      }
    }
    if (!("ref" in frame) || frame.ref === undefined) return;
    const pending = this.#pending.get(frame.ref);
    if (!pending) return;
    this.#pending.delete(frame.ref);
    pending.resolve(frame);
  }

  /** Sends `frame` with a fresh ref now when logged in, else after the next login. */
  #request(
    frame: Command,
    resolve: (frame: ServerFrame) => void,
    reject: (error: HubbubError) => void,
    lost?: () => void,
  ): void {
    const ref = this.#nextRef++;
    const pending: Pending = { frame, resolve, reject };
    if (lost) pending.lost = lost;
    this.#pending.set(ref, pending);
    if (this.#state === "open") this.#write({ ...frame, ref });
  }

  #write(frame: Command): void {
    try {
      this.#socket?.send(JSON.stringify(frame));
    } catch {
      // The socket is closing; its close event starts the reconnect.
    }
  }

  #heartbeat(): void {
    const every = this.#options.heartbeatMs ?? 0;
    if (every <= 0) return;
    this.#heard = true;
    const beat = () => {
      if (!this.#heard) return this.#disconnect(1006, "The server did not answer a ping");
      this.#heard = false;
      this.#write({ type: "ping" });
      this.#heartbeatTimer = this.#timers.setTimeout(beat, every);
    };
    this.#heartbeatTimer = this.#timers.setTimeout(beat, every);
  }

  /**
   * Lets go of the socket (closed by the server, or to be closed here) and
   * reconnects after a back-off, or stops: with an `error` as the outcome, or
   * by default after a close code not to reconnect after.
   */
  #disconnect(
    code: number,
    reason: string,
    outcome: "auto" | "retry" | HubbubError = "auto",
  ): void {
    const socket = this.#socket;
    this.#socket = null;
    if (socket) {
      socket.onopen =
        socket.onmessage =
        socket.onclose =
        socket.onerror =
          null;
      try {
        socket.close(1000);
      } catch {
        // Closed already.
      }
    }
    this.#timers.clearTimeout(this.#heartbeatTimer);
    this.#timers.clearTimeout(this.#reconnectTimer);
    for (const [ref, pending] of this.#pending) {
      if (!pending.lost) continue;
      this.#pending.delete(ref);
      pending.lost();
    }
    if (outcome instanceof HubbubError) return this.#end(code, reason, outcome);
    const final = FINAL_CLOSE_CODES.get(code);
    const renewable = code === UNAUTHORIZED && typeof this.#options.token === "function";
    if (outcome === "auto" && final !== undefined && !renewable) {
      return this.#end(code, reason, new HubbubError("closed", reason || final));
    }
    if (this.#options.reconnect === false) {
      return this.#end(code, reason, new HubbubError("closed", reason || "The connection closed"));
    }
    this.#state = "reconnecting";
    const attempt = ++this.#attempt;
    const delayMs = backoffDelay(attempt, this.#options.reconnect, this.#options.random);
    this.#reconnectTimer = this.#timers.setTimeout(() => {
      if (this.#state === "reconnecting") this.#open();
    }, delayMs);
    this.#emit("state", { state: "reconnecting", attempt, delayMs, code, reason });
  }

  /** Stops for good: every waiting command rejects; joined channels are kept for a later connect. */
  #end(code: number, reason: string, error: HubbubError): void {
    this.#state = "closed";
    this.#socket = null;
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
    for (const [channel, record] of this.#channels) {
      for (const waiter of record.waiters.splice(0)) waiter.reject(error);
      if (!record.position) this.#channels.delete(channel);
    }
    for (const waiter of this.#connectWaiters.splice(0)) waiter.reject(error);
    this.#emit("state", { state: "closed", code, reason, error });
  }

  #emit<E extends keyof ClientEvents>(event: E, payload: ClientEvents[E]): void {
    if (event === "state") this.#state = (payload as StateEvent).state;
    for (const listener of [...this.#listeners.get(event) ?? []]) {
      try {
        (listener as (payload: ClientEvents[E]) => void)(payload);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}

/**
 * Whether `message` is new at `position`, moving `position` past it if so: a
 * message whose seq is not above the last one delivered was delivered already.
 * A message without a seq (delivered live, not stored) is always new.
 */
function advance(position: Position, message: Message): boolean {
  if (message.seq === undefined) return true;
  if (message.seq <= position.seq) return false;
  position.seq = message.seq;
  return true;
}

/** 32 random hex digits: an idempotency key no other send will have. */
function randomKey(): string {
  // getRandomValues, unlike randomUUID, also works on pages served over plain http.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function closedError(): HubbubError {
  return new HubbubError("closed", "The client is closed: call connect() first");
}

function unexpected(frame: ServerFrame): HubbubError {
  return new HubbubError("bad_reply", `Unexpected reply "${frame.type}"`);
}
