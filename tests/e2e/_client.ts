/**
 * The client library against real server processes: a WebSocket class whose
 * sockets a test can hold back or cut off under a `HubbubClient` (as a
 * network would), recorders that turn a client's events into promises to
 * await (the seeded random source they take is `seeded` in tests/_helpers.ts).
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type ClientEvents,
  type ClientOptions,
  type Gap,
  HubbubClient,
  type HubbubError,
  type Joined,
  type Message,
  type StateEvent,
  type WebSocketConstructor,
  type WebSocketLike,
} from "../../client/mod.ts";
import { withTimeout } from "../_helpers.ts";

type Handler<E> = ((event: E) => void) | null;

/**
 * The sockets of one client: real WebSockets behind a wrapper the test
 * controls. `hold()` keeps new sockets connecting until `release()`; `drop()`
 * cuts the open one off: the client hears an abnormal close (1006) at once and
 * nothing more from it, what it writes meanwhile is lost, and the server sees
 * the connection close.
 */
export class Sockets {
  /** Every frame the client wrote, parsed, in order, on every socket. */
  readonly written: Record<string, unknown>[] = [];
  /** How many sockets `drop()` cut off. */
  dropped = 0;
  readonly #closed: Promise<unknown>[] = [];
  #open: CutSocket | null = null;
  #gate: PromiseWithResolvers<void> | null = null;
  readonly #route: (url: string) => string;

  /** `route` picks the URL each new socket really opens (default: the client's). */
  constructor(route: (url: string) => string = (url) => url) {
    this.#route = route;
  }

  /** The class to pass as the client's `WebSocket` option. */
  readonly WebSocket: WebSocketConstructor = ((owner: Sockets) =>
    class extends CutSocket {
      constructor(url: string) {
        super(url, owner);
      }
    })(this);

  /** New sockets stay connecting until {@linkcode release}. */
  hold(): void {
    this.#gate ??= Promise.withResolvers();
  }

  /** Lets held sockets connect. */
  release(): void {
    this.#gate?.resolve();
    this.#gate = null;
  }

  /** Cuts the client's open socket off; false when none is open. */
  drop(): boolean {
    const socket = this.#open;
    if (socket === null || !socket.cut()) return false;
    this.dropped++;
    return true;
  }

  /** Resolves once every real socket this client opened has closed (for the resource sanitizer). */
  async closed(): Promise<void> {
    await withTimeout(Promise.all(this.#closed), "the client's sockets to close");
  }

  /** @internal */
  route(url: string): string {
    return this.#route(url);
  }

  /** @internal */
  gate(): Promise<void> {
    return this.#gate?.promise ?? Promise.resolve();
  }

  /** @internal */
  opened(socket: CutSocket, real: WebSocket): void {
    this.#open = socket;
    this.#closed.push(new Promise((resolve) => real.addEventListener("close", resolve)));
  }

  /** @internal */
  gone(socket: CutSocket): void {
    if (this.#open === socket) this.#open = null;
  }
}

class CutSocket implements WebSocketLike {
  onopen: Handler<unknown> = null;
  onmessage: Handler<{ data: unknown }> = null;
  onclose: Handler<{ code: number; reason: string }> = null;
  onerror: Handler<unknown> = null;
  #real: WebSocket | null = null;
  /** Closed by the client, or cut off by the test: nothing more passes either way. */
  #over = false;
  readonly #owner: Sockets;

  constructor(url: string, owner: Sockets) {
    this.#owner = owner;
    void owner.gate().then(() => {
      if (this.#over) return;
      const real = new WebSocket(owner.route(url));
      this.#real = real;
      owner.opened(this, real);
      real.onopen = (event) => {
        if (!this.#over) this.onopen?.(event);
      };
      real.onmessage = (event) => {
        if (!this.#over) this.onmessage?.(event);
      };
      real.onerror = (event) => {
        if (!this.#over) this.onerror?.(event);
      };
      real.onclose = (event) => {
        owner.gone(this);
        if (!this.#over) this.onclose?.({ code: event.code, reason: event.reason });
      };
    });
  }

  send(data: string): void {
    if (this.#over) return; // lost on the way, as on a dead link
    this.#owner.written.push(JSON.parse(data));
    this.#real?.send(data);
  }

  close(code?: number, reason?: string): void {
    this.#over = true;
    this.#owner.gone(this);
    this.#real?.close(code, reason);
  }

  /** The test cuts the open socket off; false when it is not open. */
  cut(): boolean {
    if (this.#over || this.#real?.readyState !== WebSocket.OPEN) return false;
    this.#over = true;
    this.#owner.gone(this);
    this.#real.close();
    // After the frame being handled, as a dead link is noticed between two reads.
    queueMicrotask(() => this.onclose?.({ code: 1006, reason: "Cut off by the test" }));
    return true;
  }
}

/** What one client emitted, in order, with ways to await more of it. */
export class Recorder {
  readonly messages: Message[] = [];
  readonly gaps: Gap[] = [];
  readonly joined: Joined[] = [];
  readonly states: StateEvent[] = [];
  readonly errors: HubbubError[] = [];

  constructor(readonly client: HubbubClient, readonly label: string) {
    client.on("message", (message) => this.messages.push(message));
    client.on("gap", (gap) => this.gaps.push(gap));
    client.on("joined", (joined) => this.joined.push(joined));
    client.on("state", (state) => this.states.push(state));
    client.on("error", (error) => this.errors.push(error));
  }

  /** The next `event` from now on that `match` accepts, within `ms`. */
  async next<E extends keyof ClientEvents>(
    event: E,
    match: (payload: ClientEvents[E]) => boolean = () => true,
    ms?: number,
  ): Promise<ClientEvents[E]> {
    const { promise, resolve } = Promise.withResolvers<ClientEvents[E]>();
    const off = this.client.on(event, (payload) => {
      if (match(payload)) resolve(payload);
    });
    try {
      return await withTimeout(promise, `${this.label}: a "${event}" event`, ms);
    } finally {
      off();
    }
  }

  /** Resolves once `count` messages were delivered in all (at once if they were). */
  async delivered(count: number, ms?: number): Promise<void> {
    if (this.messages.length >= count) return;
    await this.next("message", () => this.messages.length >= count, ms);
  }
}

/** The seqs of `messages`, to compare at a glance. */
export function seqs(messages: readonly Message[]): (number | undefined)[] {
  return messages.map((message) => message.seq);
}

/** Asserts `messages` are exactly seq 1, 2, …, `count`: none missing, none twice. */
export function assertFullRange(messages: readonly Message[], count: number, what: string): void {
  const wrong = messages.findIndex((message, i) => message.seq !== i + 1);
  if (wrong >= 0) {
    const around = seqs(messages.slice(Math.max(0, wrong - 3), wrong + 4));
    assert.fail(`${what}: seq ${messages[wrong].seq} at position ${wrong + 1} (around: ${around})`);
  }
  assert.equal(messages.length, count, `${what}: ${messages.length} of ${count} messages`);
}

/** A client made by {@linkcode clientPool}: the client, what it emitted, and its sockets. */
export interface PoolClient {
  client: HubbubClient;
  seen: Recorder;
  sockets: Sockets;
}

/**
 * Clients whose sockets the test controls, with quick reconnects (a restart takes a second
 * or two) and jitter from `random`; `await using` closes them and awaits their sockets.
 */
export function clientPool(random: () => number): AsyncDisposable & {
  /** A client of `url` named `name`; `route` picks where each of its sockets really goes. */
  add(
    url: string,
    name: string,
    extra?: Partial<ClientOptions>,
    route?: (url: string) => string,
  ): PoolClient;
} {
  const made: PoolClient[] = [];
  return {
    add(url, name, extra = {}, route) {
      const sockets = new Sockets(route);
      const client = new HubbubClient({
        url,
        name,
        WebSocket: sockets.WebSocket,
        reconnect: { initialMs: 50, maxMs: 400 },
        random,
        ...extra,
      });
      const one = { client, seen: new Recorder(client, name), sockets };
      made.push(one);
      return one;
    },
    async [Symbol.asyncDispose]() {
      for (const { client } of made) client.close();
      await Promise.all(made.map(({ sockets }) => sockets.closed()));
    },
  };
}
