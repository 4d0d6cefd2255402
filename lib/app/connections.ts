/**
 * The connection lifecycle: a socket opening (or arriving too late), each
 * inbound frame's size and rate checks and backlog, the socket closing, the
 * slots of upgrades that never open, and shutdown.
 *
 * @module
 */
import { touch } from "../core/deadlines.ts";
import { CloseCode, PROTOCOL_VERSION } from "../core/protocol.ts";
import { error } from "../core/router.ts";
import { createSession } from "../core/session.ts";
import type { InboundFrame, Socket } from "../core/socket.ts";
import { createBucket, take } from "../core/token_bucket.ts";
import { exceedsUtf8Bytes } from "../core/utf8.ts";
import type { Upgrade } from "../http/http.ts";
import { bump, closeLabel } from "../metrics.ts";
import { processFrame } from "./commands.ts";
import { type AppContext, NATIVE } from "./context.ts";
import { end, run } from "./effects.ts";

/** Refused commands in a row after which a flooding client is disconnected (4429). */
export const RATE_LIMIT_STRIKES = 10;

/** Frames a session may have waiting behind a token check or authorizer call. */
const MAX_BACKLOG = 256;

/** The events of one open connection, called by a runtime adapter. */
export interface Connection {
  /** One inbound WebSocket message. */
  message(frame: InboundFrame): void;
  /** The socket has closed, with the code the close event carried. */
  closed(code: number): void;
}

/** Starts a session on a newly opened socket, or closes one that comes too late. */
export function openConnection(ctx: AppContext, socket: Socket, upgrade: Upgrade): Connection {
  const { config, clock, metrics, sessions } = ctx;
  const reserved = ctx.upgrading.delete(upgrade);
  if (!reserved || ctx.shuttingDown) {
    // Too late: its slot went back at the deadline (counting it again could pass the caps),
    // or the server is stopping.
    if (reserved) ctx.admission.closed(upgrade.ip);
    if (ctx.shuttingDown) socket.close(CloseCode.ServiceRestart, "Server restarting");
    else socket.close(CloseCode.TryAgainLater, "The connection took too long to open");
    return { message() {}, closed() {} };
  }
  const now = clock.now();
  const dialectName = upgrade.dialect ?? NATIVE;
  const session = createSession(
    ctx.nextSessionId++,
    upgrade.ip,
    createBucket(ctx.commandRate, now),
    dialectName,
  );
  const { id } = session;
  sessions.set(id, session);
  metrics.connectionsOpened++;
  ctx.log.debug("connection opened", { conn: id, ip: upgrade.ip, dialect: dialectName });
  ctx.hub.add(id, socket, dialectName);
  ctx.openSockets++;
  let socketOpen = true;
  const dialect = ctx.dialects.get(dialectName);
  if (dialect !== undefined) {
    let own = ctx.sessionsByDialect.get(dialectName);
    if (own === undefined) ctx.sessionsByDialect.set(dialectName, own = new Map());
    own.set(id, session);
    const opened = dialect.open(ctx.dialectContext, session, {
      path: upgrade.path,
      search: upgrade.search,
    });
    ctx.dialectStates.set(id, opened.state);
    run(ctx, opened.effects, id);
  } else {
    touch(ctx.awaitingLogin, id, now);
  }
  if (dialect === undefined) {
    run(ctx, [{
      kind: "reply",
      frame: {
        type: "hello",
        protocol: PROTOCOL_VERSION,
        server: "hubbub",
        version: ctx.version,
        // Which node of a cluster a client reached, for its logs and for support.
        ...(ctx.cluster !== null && { node: ctx.nodeId }),
      },
    }], id);
  }
  return {
    message(frame) {
      if (!sessions.has(id)) return;
      metrics.framesIn++;
      const now = clock.now();
      const tooBig = typeof frame === "string"
        ? exceedsUtf8Bytes(frame, config.maxMessageBytes)
        : frame.bytes.byteLength > config.maxMessageBytes;
      if (tooBig) {
        return end(
          ctx,
          id,
          CloseCode.MessageTooBig,
          `Message over ${config.maxMessageBytes} bytes`,
        );
      }
      if (!take(session.bucket, ctx.commandRate, now)) {
        metrics.rateLimited++;
        if (++session.strikes >= RATE_LIMIT_STRIKES) {
          return end(ctx, id, CloseCode.TooManyRequests, "Rate limit");
        }
        return run(ctx, [
          error("rate_limited", `Over ${config.rateLimit} commands a second; dropped`),
        ], id);
      }
      session.strikes = 0;
      if (!session.busy) return processFrame(ctx, session, frame, now);
      if (session.backlog.length >= MAX_BACKLOG) {
        return run(ctx, [error("rate_limited", "Too many commands waiting; dropped")], id);
      }
      session.backlog.push({ frame, at: now });
    },
    closed(code) {
      if (!socketOpen) return;
      socketOpen = false;
      if (sessions.has(id)) {
        bump(metrics.closes, closeLabel(code));
        ctx.log.debug("the client closed its connection", { conn: id, code });
        end(ctx, id);
      }
      if (--ctx.openSockets === 0) { for (const resolve of ctx.idleWaiters.splice(0)) resolve(); }
    },
  };
}

/** Gives back the slot of an upgrade whose socket will not open; false if it was given already. */
export function unreserve(
  ctx: AppContext,
  upgrade: Upgrade,
  reason: "gone" | "deadline",
): boolean {
  if (!ctx.upgrading.delete(upgrade)) return false;
  ctx.admission.closed(upgrade.ip);
  bump(ctx.metrics.abandoned, reason);
  return true;
}

/** Refuses new connections and closes every socket with `code` (no presence storm). */
export function shutdown(ctx: AppContext, code: number, reason: string): void {
  ctx.history.flush(); // what was accepted goes out (and is stored) before the sockets close
  ctx.shuttingDown = true;
  ctx.admission.drain();
  for (const id of [...ctx.sessions.keys()]) end(ctx, id, code, reason);
}

/** Resolves once every socket has finished closing. */
export function idle(ctx: AppContext): Promise<void> {
  if (ctx.openSockets === 0) return Promise.resolve();
  return new Promise((resolve) => ctx.idleWaiters.push(resolve));
}
