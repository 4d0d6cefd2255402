/**
 * Effect execution and delivery: what the router's and the dialects'
 * effects do (reply, publish, subscribe, close), publishing on this node and
 * across the cluster, and ending a session.
 *
 * @module
 */
import { audience, memberCount } from "../core/channels.ts";
import { CloseCode, type ServerFrame } from "../core/protocol.ts";
import type { SessionId } from "../core/registry.ts";
import { disconnect, type Effect, type Origin } from "../core/router.ts";
import type { Session } from "../core/session.ts";
import { bump, closeLabel } from "../metrics.ts";
import { type AppContext, NATIVE } from "./context.ts";

/**
 * Closes that say something is wrong (a flood, a slow reader, a token run
 * out, failed logins, a bug): logged at warn, rate-limited per code and reason.
 */
const OPERATOR_CLOSES: ReadonlySet<number> = new Set([
  CloseCode.TooManyRequests,
  CloseCode.TryAgainLater,
  CloseCode.Unauthorized,
  CloseCode.InternalError,
]);

/** Publishes to a channel's members on this node and counts the deliveries; returns how many. */
export function publishLocal(
  ctx: AppContext,
  channel: string,
  frame: ServerFrame,
  except?: SessionId,
  origin?: Origin,
): number {
  const { core, cluster } = ctx;
  let recipients = memberCount(core.channels, channel) -
    (cluster?.remoteMembers(channel) ?? 0) - (except === undefined ? 0 : 1);
  if (recipients <= 0) return 0;
  let members = audience(core.channels, channel);
  const joining = ctx.joining.get(channel);
  if (joining !== undefined) {
    // Members whose `joined` is not sent yet get this after it (see history_shared.ts).
    for (const [id, held] of joining) {
      if (id === except) continue;
      held.push(frame);
      recipients--;
    }
    members = [...members].filter((id) => !joining.has(id));
  }
  ctx.hub.publish(channel, members, frame, except, origin);
  ctx.metrics.deliveries += recipients;
  return recipients;
}

/** Publishes to a channel's members on every node; returns how many it reaches. */
export function publish(
  ctx: AppContext,
  channel: string,
  frame: ServerFrame,
  except?: SessionId,
  origin?: Origin,
): number {
  const local = publishLocal(ctx, channel, frame, except, origin);
  const { cluster } = ctx;
  if (cluster === null) return local;
  // Always on the bus: a member that joined elsewhere a moment ago may not be counted here yet.
  cluster.published(channel, frame, origin);
  return local + cluster.remoteMembers(channel);
}

/** Carries out `effects` on behalf of session `sender` (0: the server itself). */
export function run(ctx: AppContext, effects: Effect[], sender: SessionId): void {
  const { hub, metrics, cluster, history } = ctx;
  for (const effect of effects) {
    const isMessage = effect.kind === "publish" && effect.frame.type === "message";
    // Messages waiting to be stored go out before anything that follows them.
    if (!isMessage) history.flush();
    switch (effect.kind) {
      case "reply":
        if (effect.frame.type === "error") bump(metrics.errors, effect.frame.code);
        // Dialect clients would not understand native frames (e.g. a rate_limited error).
        if (ctx.sessions.get(sender)?.dialect !== NATIVE) break;
        hub.send(sender, effect.frame);
        metrics.deliveries++;
        break;
      case "raw":
        hub.sendText(sender, effect.text);
        metrics.deliveries++;
        break;
      case "close":
        end(ctx, sender, effect.code, effect.reason);
        break;
      case "publish":
        if (effect.frame.type !== "message") {
          publish(ctx, effect.channel, effect.frame, effect.except, effect.origin);
          break;
        }
        metrics.messagesIn++;
        history.submit(effect.channel, effect.frame, {
          except: effect.except,
          origin: effect.origin,
          key: effect.key,
          ack: effect.ack && { session: sender, ref: effect.ack.ref },
        });
        break;
      case "joined":
      case "history": {
        const session = ctx.sessions.get(sender);
        if (session === undefined) break;
        if (effect.kind === "joined") history.join(session, effect);
        else history.page(session, effect);
        break;
      }
      case "subscribe":
        hub.subscribe(sender, effect.channel);
        history.follow?.(effect.channel);
        cluster?.joined(
          effect.channel,
          sender,
          ctx.core.channels.members.get(effect.channel)?.get(sender) ?? "",
        );
        break;
      case "unsubscribe":
        hub.unsubscribe(sender, effect.channel);
        history.unfollow?.(effect.channel);
        cluster?.left(effect.channel, sender);
    }
  }
}

/** Ends a session; with a code, the server closes its socket. Safe to call twice. */
export function end(ctx: AppContext, id: SessionId, code?: number, reason = ""): void {
  const session = ctx.sessions.get(id);
  if (session === undefined) return;
  ctx.sessions.delete(id);
  if (code === undefined) ctx.hub.remove(id);
  else {
    bump(ctx.metrics.closes, closeLabel(code));
    ctx.hub.close(id, code, reason);
    if (!ctx.shuttingDown) logClose(ctx, session, code, reason);
  }
  ctx.awaitingLogin.delete(id);
  ctx.lastActive.delete(id);
  ctx.dialectStates.delete(id);
  ctx.sessionsByDialect.get(session.dialect)?.delete(id);
  ctx.admission.closed(session.ip);
  if (!ctx.shuttingDown) run(ctx, disconnect(ctx.core, session), id);
}

/** Logs a close the server chose: those an operator must see rate-limited at warn, the rest at debug. */
function logClose(ctx: AppContext, session: Session, code: number, reason: string): void {
  const fields = {
    conn: session.id,
    ip: session.ip,
    name: session.name ?? undefined,
    code,
    reason,
  };
  if (OPERATOR_CLOSES.has(code)) {
    ctx.log.limited("warn", `close:${code}:${reason}`, "closed a connection", fields);
  } else ctx.log.debug("closed a connection", fields);
}
