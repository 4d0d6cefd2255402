// deno-fmt-ignore-file
// deno-lint-ignore-file
// @hubbub/client 0.1.0, built from client/*.ts by `deno task client:build`: edit those, not this.
// client/backoff.ts
var DEFAULT_BACKOFF = {
  initialMs: 500,
  maxMs: 3e4
};
function backoffDelay(attempt, options = {}, random = Math.random) {
  const { initialMs, maxMs } = {
    ...DEFAULT_BACKOFF,
    ...options
  };
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + random() * ceiling / 2);
}

// client/protocol.ts
function parseFrames(data) {
  const frames = [];
  for (const line of data.split("\n")) {
    if (line.trim() === "") continue;
    let value;
    try {
      value = JSON.parse(line);
    } catch {
      continue;
    }
    if (typeof value === "object" && value !== null && typeof Reflect.get(value, "type") === "string") {
      frames.push(value);
    }
  }
  return frames;
}
var FINAL_CLOSE_CODES = /* @__PURE__ */ new Map([
  [
    1e3,
    "The server closed the connection"
  ],
  [
    1003,
    "The server does not take this kind of frame"
  ],
  [
    1008,
    "The server saw a protocol violation"
  ],
  [
    1009,
    "A message was larger than the server allows"
  ],
  [
    4401,
    "The token expired, or logins kept failing"
  ],
  [
    4403,
    "Removed by an operator"
  ],
  [
    4408,
    "No login in time"
  ],
  [
    4409,
    "Another connection holds this name now"
  ],
  [
    4410,
    "Idle for too long"
  ]
]);

// client/client.ts
var HubbubError = class extends Error {
  /** The server's error code, or `"closed"` when the client stopped before an answer came. */
  code;
  /** The channel the failed command was about, when it was about one. */
  channel;
  /** An error with `code` and a message for people. */
  constructor(code, message, channel) {
    super(message);
    this.name = "HubbubError";
    this.code = code;
    if (channel !== void 0) this.channel = channel;
  }
};
var UNAUTHORIZED = 4401;
var RETRY_LOGIN = /* @__PURE__ */ new Set([
  "unavailable",
  "rate_limited"
]);
var TOKEN_ERRORS = /* @__PURE__ */ new Set([
  "unauthorized",
  "token_expired"
]);
var DEFAULT_TIMERS = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle)
};
var HubbubClient = class {
  #options;
  #WebSocket;
  #timers;
  #state = "idle";
  #socket = null;
  #name = null;
  /** Connection attempts that failed in a row. */
  #attempt = 0;
  #reconnectTimer = void 0;
  #heartbeatTimer = void 0;
  /** Whether any frame arrived since the last heartbeat. */
  #heard = false;
  #nextRef = 1;
  #pending = /* @__PURE__ */ new Map();
  #channels = /* @__PURE__ */ new Map();
  #connectWaiters = [];
  #listeners = /* @__PURE__ */ new Map();
  /** A client for the server at `options.url`; nothing happens until {@linkcode connect}. */
  constructor(options) {
    const Socket = options.WebSocket ?? globalThis.WebSocket;
    if (Socket === void 0) {
      throw new TypeError("This runtime has no WebSocket: pass one as options.WebSocket (on Node before 22, the ws package's)");
    }
    this.#options = options;
    this.#WebSocket = Socket;
    this.#timers = options.timers ?? DEFAULT_TIMERS;
  }
  /** Where the connection is. */
  get state() {
    return this.#state;
  }
  /** The name the server welcomed this client with (normalized), or null before the first login. */
  get name() {
    return this.#name;
  }
  /**
   * Connects and logs in; resolves with the name once the server welcomed it.
   * A server that cannot be reached is tried again with back-off; it rejects
   * when the login is refused, on a close code not to reconnect after, or on
   * {@linkcode close}. After a close, it connects again and re-joins the
   * channels the client was in.
   */
  connect() {
    if (this.#state === "open" && this.#name !== null) return Promise.resolve(this.#name);
    const welcomed = new Promise((resolve, reject) => {
      this.#connectWaiters.push({
        resolve,
        reject
      });
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
  join(channel, options = {}) {
    if (this.#state === "closed") return Promise.reject(closedError());
    const known = this.#channels.get(channel);
    if (known?.position) {
      const { epoch, seq } = known.position;
      return Promise.resolve({
        channel,
        members: [
          ...known.members
        ],
        epoch,
        seq,
        messages: []
      });
    }
    return new Promise((resolve, reject) => {
      if (known) return known.waiters.push({
        resolve,
        reject
      });
      const record = {
        position: null,
        members: [],
        waiters: [
          {
            resolve,
            reject
          }
        ]
      };
      if (options.history !== void 0) record.history = options.history;
      this.#channels.set(channel, record);
      if (this.#state === "open") this.#sendJoin(channel, record);
    });
  }
  /** Leaves `channel`: no more of its messages, and no re-join after a reconnect. */
  leave(channel) {
    const record = this.#channels.get(channel);
    this.#channels.delete(channel);
    for (const waiter of record?.waiters ?? []) {
      waiter.reject(new HubbubError("left", `Left channel "${channel}" before it was joined`, channel));
    }
    if (this.#state !== "open") return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#request({
        type: "leave",
        channel
      }, () => resolve(), reject, () => resolve());
    });
  }
  /**
   * Sends `text` to `channel`; resolves once the server stored it. Until then
   * it waits in an outbox and is sent again after a reconnect, with the same
   * `key`, so the server publishes it once whatever happens to the connection.
   * Rejects with the server's error (`not_joined`, `too_large`, …).
   */
  send(channel, text, options = {}) {
    if (this.#state === "closed") return Promise.reject(closedError());
    const key = options.key ?? randomKey();
    return new Promise((resolve, reject) => {
      this.#request({
        type: "broadcast",
        channel,
        text,
        key
      }, (frame) => {
        if (frame.type !== "sent") return reject(unexpected(frame));
        resolve({
          channel: frame.channel,
          id: frame.id,
          seq: frame.seq,
          key
        });
      }, reject);
    });
  }
  /**
   * Older messages of a channel the client is in, oldest first: the `limit`
   * (default and maximum the server's `--history-limit`) before seq `before`,
   * or the latest. Not emitted as `message` events.
   */
  history(channel, options = {}) {
    if (this.#state === "closed") return Promise.reject(closedError());
    return new Promise((resolve, reject) => {
      this.#request({
        type: "history",
        channel,
        ...options
      }, (frame) => {
        if (frame.type !== "history") return reject(unexpected(frame));
        resolve({
          channel: frame.channel,
          epoch: frame.epoch,
          messages: frame.messages
        });
      }, reject);
    });
  }
  /** The server's channels and their member counts. */
  channels() {
    if (this.#state === "closed") return Promise.reject(closedError());
    return new Promise((resolve, reject) => {
      this.#request({
        type: "channels"
      }, (frame) => {
        if (frame.type !== "channels") return reject(unexpected(frame));
        resolve(frame.channels);
      }, reject);
    });
  }
  /** The members of a channel the client is in, in join order; empty for others. */
  members(channel) {
    return [
      ...this.#channels.get(channel)?.members ?? []
    ];
  }
  /** The epoch and seq of the last message delivered from `channel`; null before it is joined. */
  position(channel) {
    const position = this.#channels.get(channel)?.position;
    return position ? {
      ...position
    } : null;
  }
  /**
   * Listens to `event`; returns the function that stops listening. A listener
   * that throws does not disturb the client: the error is rethrown in a microtask.
   */
  on(event, listener) {
    const set = this.#listeners.get(event) ?? /* @__PURE__ */ new Set();
    this.#listeners.set(event, set);
    const added = listener;
    set.add(added);
    return () => void set.delete(added);
  }
  /**
   * Closes the connection and stops reconnecting. Commands still waiting,
   * unacknowledged sends included, reject with code `"closed"`. The channels
   * are remembered: a later `connect()` re-joins them from where they were.
   */
  close() {
    if (this.#state === "closed") return;
    const error = new HubbubError("closed", "The client was closed");
    this.#disconnect(1e3, "Closed by the client", error);
  }
  #open() {
    this.#emit("state", {
      state: "connecting",
      attempt: this.#attempt
    });
    let socket;
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
    socket.onerror = () => {
    };
  }
  async #login(socket) {
    const { token, name } = this.#options;
    let fresh;
    if (typeof token === "function") {
      try {
        fresh = await token();
      } catch (error) {
        if (socket === this.#socket) this.#disconnect(1006, `The token function failed: ${error}`);
        return;
      }
      if (socket !== this.#socket) return;
    } else fresh = token;
    const frame = fresh !== void 0 ? {
      type: "login",
      token: fresh
    } : {
      type: "login",
      name
    };
    const ref = this.#nextRef++;
    this.#pending.set(ref, {
      frame,
      resolve: (reply) => {
        if (reply.type === "welcome") this.#welcomed(reply.name);
      },
      reject: (error) => this.#loginRefused(error),
      lost: () => {
      }
    });
    this.#write({
      ...frame,
      ref
    });
  }
  #welcomed(name) {
    this.#name = name;
    this.#attempt = 0;
    this.#state = "open";
    this.#emit("state", {
      state: "open",
      name
    });
    for (const waiter of this.#connectWaiters.splice(0)) waiter.resolve(name);
    if (this.#state !== "open") return;
    const waiting = [
      ...this.#pending
    ].filter(([, pending]) => !pending.lost);
    for (const [channel, record] of this.#channels) this.#sendJoin(channel, record);
    for (const [ref, pending] of waiting) this.#write({
      ...pending.frame,
      ref
    });
    this.#heartbeat();
  }
  #loginRefused(error) {
    const retry = RETRY_LOGIN.has(error.code) || error.code === "name_taken" && this.#name !== null || TOKEN_ERRORS.has(error.code) && typeof this.#options.token === "function";
    this.#disconnect(1e3, error.message, retry ? "retry" : error);
  }
  #sendJoin(channel, record) {
    const since = record.position?.epoch ? {
      ...record.position
    } : void 0;
    const frame = {
      type: "join",
      channel
    };
    if (record.history !== void 0) frame.history = record.history;
    if (since) frame.since = since;
    this.#request(frame, (reply) => {
      if (reply.type === "joined") this.#joined(reply, since !== void 0);
    }, (error) => this.#joinRefused(channel, error), () => {
    });
  }
  #joined(frame, withSince) {
    const record = this.#channels.get(frame.channel);
    if (!record) return;
    const previous = record.position;
    const sameEpoch = previous !== null && previous.epoch !== "" && previous.epoch === frame.epoch;
    const position = {
      epoch: frame.epoch,
      seq: sameEpoch ? previous.seq : 0
    };
    const messages = (frame.messages ?? []).filter((message) => advance(position, message));
    position.seq = Math.max(position.seq, frame.seq ?? 0);
    record.position = position;
    record.members = [
      ...frame.members
    ];
    const joined = {
      channel: frame.channel,
      members: [
        ...frame.members
      ],
      epoch: frame.epoch,
      seq: frame.seq,
      messages
    };
    if (frame.recovered !== void 0) joined.recovered = frame.recovered;
    this.#emit("joined", joined);
    if (previous !== null && !(withSince && frame.recovered === true)) {
      this.#emit("gap", {
        channel: frame.channel,
        epoch: frame.epoch,
        previous
      });
    }
    for (const message of messages) this.#emit("message", message);
    for (const waiter of record.waiters.splice(0)) waiter.resolve(joined);
  }
  #joinRefused(channel, error) {
    const record = this.#channels.get(channel);
    if (!record) return;
    this.#channels.delete(channel);
    const refused = new HubbubError(error.code, error.message, channel);
    if (record.waiters.length === 0) this.#emit("error", refused);
    for (const waiter of record.waiters) waiter.reject(refused);
  }
  #receive(frame) {
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
          name: frame.name
        });
      }
      case "error": {
        const error = new HubbubError(frame.code, frame.message);
        const { ref } = frame;
        const pending2 = ref === void 0 ? void 0 : this.#pending.get(ref);
        if (ref === void 0 || !pending2) return this.#emit("error", error);
        this.#pending.delete(ref);
        return pending2.reject(error);
      }
    }
    if (!("ref" in frame) || frame.ref === void 0) return;
    const pending = this.#pending.get(frame.ref);
    if (!pending) return;
    this.#pending.delete(frame.ref);
    pending.resolve(frame);
  }
  /** Sends `frame` with a fresh ref now when logged in, else after the next login. */
  #request(frame, resolve, reject, lost) {
    const ref = this.#nextRef++;
    const pending = {
      frame,
      resolve,
      reject
    };
    if (lost) pending.lost = lost;
    this.#pending.set(ref, pending);
    if (this.#state === "open") this.#write({
      ...frame,
      ref
    });
  }
  #write(frame) {
    try {
      this.#socket?.send(JSON.stringify(frame));
    } catch {
    }
  }
  #heartbeat() {
    const every = this.#options.heartbeatMs ?? 0;
    if (every <= 0) return;
    this.#heard = true;
    const beat = () => {
      if (!this.#heard) return this.#disconnect(1006, "The server did not answer a ping");
      this.#heard = false;
      this.#write({
        type: "ping"
      });
      this.#heartbeatTimer = this.#timers.setTimeout(beat, every);
    };
    this.#heartbeatTimer = this.#timers.setTimeout(beat, every);
  }
  /**
   * Lets go of the socket (closed by the server, or to be closed here) and
   * reconnects after a back-off, or stops: with an `error` as the outcome, or
   * by default after a close code not to reconnect after.
   */
  #disconnect(code, reason, outcome = "auto") {
    const socket = this.#socket;
    this.#socket = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try {
        socket.close(1e3);
      } catch {
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
    if (outcome === "auto" && final !== void 0 && !renewable) {
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
    this.#emit("state", {
      state: "reconnecting",
      attempt,
      delayMs,
      code,
      reason
    });
  }
  /** Stops for good: every waiting command rejects; joined channels are kept for a later connect. */
  #end(code, reason, error) {
    this.#state = "closed";
    this.#socket = null;
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
    for (const [channel, record] of this.#channels) {
      for (const waiter of record.waiters.splice(0)) waiter.reject(error);
      if (!record.position) this.#channels.delete(channel);
    }
    for (const waiter of this.#connectWaiters.splice(0)) waiter.reject(error);
    this.#emit("state", {
      state: "closed",
      code,
      reason,
      error
    });
  }
  #emit(event, payload) {
    if (event === "state") this.#state = payload.state;
    for (const listener of [
      ...this.#listeners.get(event) ?? []
    ]) {
      try {
        listener(payload);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
};
function advance(position, message) {
  if (message.seq === void 0) return true;
  if (message.seq <= position.seq) return false;
  position.seq = message.seq;
  return true;
}
function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}
function closedError() {
  return new HubbubError("closed", "The client is closed: call connect() first");
}
function unexpected(frame) {
  return new HubbubError("bad_reply", `Unexpected reply "${frame.type}"`);
}
export {
  DEFAULT_BACKOFF,
  FINAL_CLOSE_CODES,
  HubbubClient,
  HubbubError,
  backoffDelay,
  parseFrames
};
