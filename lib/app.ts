/**
 * The runtime-free server: core state, hub and HTTP handler put together.
 * Runtime adapters feed it requests and socket events; it never touches a
 * runtime API itself.
 *
 * @module
 */
import { ASSETS } from "./assets.ts";
import { audience, createChannels } from "./channels.ts";
import type { Config } from "./config.ts";
import { createHttpHandler, type HttpHandler } from "./http.ts";
import { createHub } from "./hub.ts";
import { parseClientFrame } from "./parse.ts";
import { clientCommandSchemas, CloseCode, PROTOCOL_VERSION } from "./protocol.ts";
import { createRegistry, type SessionId } from "./registry.ts";
import { type Core, disconnect, type Effect, error, messageFrame, route } from "./router.ts";
import { createSession } from "./session.ts";
import type { InboundFrame, Socket } from "./socket.ts";
import { exceedsUtf8Bytes } from "./utf8.ts";

/** What the app needs from its surroundings. */
export interface AppDeps {
  /** The current time in milliseconds since the epoch (injected for tests). */
  now(): number;
  /** The server version announced in `hello`. */
  version: string;
}

/** The events of one open connection, called by a runtime adapter. */
export interface Connection {
  /** One inbound WebSocket message. */
  message(frame: InboundFrame): void;
  /** The socket has closed, for whatever reason. */
  closed(): void;
}

/** The server, minus the runtime. */
export interface App {
  /** Answers an HTTP request, or says it may be upgraded to a WebSocket. */
  fetch: HttpHandler;
  /** Starts a session on a newly opened WebSocket. */
  open(socket: Socket): Connection;
  /** Closes every socket with `code`, e.g. on shutdown. */
  closeAll(code: number, reason: string): void;
  /** Resolves once no WebSocket is open. */
  idle(): Promise<void>;
  /** How many WebSockets are open. */
  readonly connections: number;
}

/** Creates the server for `config`. */
export function createApp(config: Config, deps: AppDeps): App {
  const schemas = clientCommandSchemas(config.maxTextLength);
  const hub = createHub();
  const bootId = Math.floor(Math.random() * 36 ** 6).toString(36).padStart(6, "0");
  let messageSeq = 0;
  let nextSessionId: SessionId = 1;
  const idleWaiters: (() => void)[] = [];
  const core: Core = {
    registry: createRegistry(),
    channels: createChannels(),
    messageId: () => `${bootId}-${(++messageSeq).toString(36)}`,
    now: deps.now,
  };

  const run = (effects: Effect[], sender: SessionId) => {
    for (const effect of effects) {
      if (effect.kind === "reply") hub.send(sender, effect.frame);
      else hub.sendAll(audience(core.channels, effect.channel), effect.frame, effect.except);
    }
  };

  const fetch = createHttpHandler({
    config,
    assets: ASSETS,
    broadcast(channel, from, text) {
      return hub.sendAll(audience(core.channels, channel), messageFrame(core, channel, from, text));
    },
  });

  return {
    fetch,
    open(socket) {
      const session = createSession(nextSessionId++);
      hub.add(session.id, socket);
      hub.send(session.id, {
        type: "hello",
        protocol: PROTOCOL_VERSION,
        server: "hubbub",
        version: deps.version,
      });
      let open = true;
      return {
        message(frame) {
          if (!open) return;
          const tooBig = typeof frame === "string"
            ? exceedsUtf8Bytes(frame, config.maxMessageBytes)
            : frame.byteLength > config.maxMessageBytes;
          if (tooBig) {
            hub.close(
              session.id,
              CloseCode.MessageTooBig,
              `Message over ${config.maxMessageBytes} bytes`,
            );
            return;
          }
          if (typeof frame !== "string") {
            run(
              [error("bad_request", "Binary frames are not supported; send JSON text")],
              session.id,
            );
            return;
          }
          const parsed = parseClientFrame(frame, schemas);
          const effects = parsed.ok
            ? route(core, session, parsed.command)
            : [error(parsed.code, parsed.message, parsed.ref)];
          run(effects, session.id);
        },
        closed() {
          if (!open) return;
          open = false;
          hub.remove(session.id);
          run(disconnect(core, session), session.id);
          if (hub.size === 0) { for (const resolve of idleWaiters.splice(0)) resolve(); }
        },
      };
    },
    closeAll(code, reason) {
      for (const id of [...hub.ids()]) hub.close(id, code, reason);
    },
    idle() {
      if (hub.size === 0) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
    get connections() {
      return hub.size;
    },
  };
}
