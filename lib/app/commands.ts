/**
 * Command processing: one inbound frame of a session, in arrival order,
 * through parsing, the gate (tokens, the authorizer), a cluster-wide name
 * claim and the router, or through its dialect; frames that arrive while one
 * waits are drained afterwards.
 *
 * @module
 */
import type { GateResult, TokenGrant } from "../auth/gate.ts";
import type { ClaimOutcome } from "../cluster/engine.ts";
import { touch } from "../core/deadlines.ts";
import { checkName, nameKey } from "../core/names.ts";
import { parseClientFrame } from "../core/parse.ts";
import { CloseCode } from "../core/protocol.ts";
import { holderOf } from "../core/registry.ts";
import { disconnect, error, route, type RoutedCommand } from "../core/router.ts";
import type { Session } from "../core/session.ts";
import type { InboundFrame } from "../core/socket.ts";
import { type AppContext, NATIVE } from "./context.ts";
import { end, run } from "./effects.ts";

/** Logins refused in a row after which the connection is closed (4401). */
export const MAX_FAILED_LOGINS = 5;

/**
 * Handles one text or binary frame, in arrival order, after size and rate checks; it arrived
 * at `at` (it may have waited behind an earlier frame's check).
 */
export function processFrame(
  ctx: AppContext,
  session: Session,
  frame: InboundFrame,
  at: number,
): void {
  if (session.dialect !== NATIVE) return processDialect(ctx, session, frame, at);
  if (typeof frame !== "string") {
    return run(
      ctx,
      [error("bad_request", "Binary frames are not supported; send JSON text")],
      session.id,
    );
  }
  const parsed = parseClientFrame(frame, ctx.schemas);
  if (!parsed.ok) return run(ctx, [error(parsed.code, parsed.message, parsed.ref)], session.id);
  const { command } = parsed;
  const now = ctx.clock.now();
  // A refresh only ever goes through the gate: the router has no token state to change.
  if (command.type !== "refresh" && !ctx.gate.needsCheck(command)) {
    return admit(ctx, session, command, undefined, now);
  }
  // Frames arriving meanwhile wait, so every client's commands take effect in order.
  session.busy = true;
  ctx.gate.check(session, command, now).then(
    (result) => settle(ctx, session, result),
    (failure) => {
      ctx.metrics.internalErrors++;
      ctx.log.error("a gate check failed", { conn: session.id, error: describeError(failure) });
      end(ctx, session.id, CloseCode.InternalError, "Internal error");
    },
  );
}

/**
 * A dialect frame: its effects now, or once its promise settles, in arrival order. While the
 * dialect reads it, its clock says when the frame arrived: a frame that waited behind an
 * authorizer call must not break the dialect's own rate or deadline for that wait.
 */
function processDialect(
  ctx: AppContext,
  session: Session,
  frame: InboundFrame,
  at: number,
): void {
  const dialect = ctx.dialects.get(session.dialect)!;
  const state = ctx.dialectStates.get(session.id);
  // (A dialect frame that changes membership flushes the history first: `beforeChange`.)
  ctx.frameArrivedAt = at;
  let result;
  try {
    result = typeof frame === "string"
      ? dialect.receive(ctx.dialectContext, session, state, frame)
      : dialect.receiveBinary?.(ctx.dialectContext, session, state, frame.bytes) ?? [];
  } finally {
    ctx.frameArrivedAt = undefined;
  }
  if (Array.isArray(result)) {
    run(ctx, result, session.id);
    return keepIdleDeadline(ctx, session);
  }
  session.busy = true;
  result.then(
    (effects) => {
      if (!ctx.sessions.has(session.id)) {
        // It closed while we waited: undo whatever the dialect did to the core meanwhile
        // (joined a channel, claimed a name), without telling anyone of it.
        disconnect(ctx.core, session);
        return;
      }
      session.busy = false;
      run(ctx, effects, session.id);
      keepIdleDeadline(ctx, session);
      drain(ctx, session);
    },
    (failure) => {
      ctx.metrics.internalErrors++;
      ctx.log.error("a dialect failed", {
        conn: session.id,
        dialect: session.dialect,
        error: describeError(failure),
      });
      end(ctx, session.id, CloseCode.InternalError, "Internal error");
    },
  );
}

/**
 * After a dialect frame: a connection holding a name (a login-chat login, a GarinChat join) has
 * just been active, so `--idle-timeout` counts from now, as for a native session; one holding
 * none has no idle deadline.
 */
function keepIdleDeadline(ctx: AppContext, session: Session): void {
  if (ctx.config.idleTimeout === 0 || !ctx.sessions.has(session.id)) return;
  if (session.name === null) ctx.lastActive.delete(session.id);
  else touch(ctx.lastActive, session.id, ctx.clock.now());
}

/** Processes what waited behind an asynchronous check, until the next one. */
export function drain(ctx: AppContext, session: Session): void {
  while (!session.busy && session.backlog.length > 0 && ctx.sessions.has(session.id)) {
    const { frame, at } = session.backlog.shift()!;
    processFrame(ctx, session, frame, at);
  }
}

/** Carries out what the gate decided for a command, then what waited behind it. */
function settle(ctx: AppContext, session: Session, result: GateResult): void {
  if (!ctx.sessions.has(session.id)) return;
  session.busy = false;
  const now = ctx.clock.now();
  if (result.kind === "route") admit(ctx, session, result.command, result.token, now);
  else if (result.kind === "close") return end(ctx, session.id, result.code, result.reason);
  else {
    run(ctx, result.effects, session.id);
    if (result.failedLogin) loginFailed(ctx, session);
  }
  drain(ctx, session);
}

/**
 * Applies a routed command; in a cluster, a login first claims its name
 * cluster-wide, and frames that arrive meanwhile wait their turn.
 */
function admit(
  ctx: AppContext,
  session: Session,
  command: RoutedCommand,
  grant: TokenGrant | undefined,
  now: number,
): void {
  const { cluster } = ctx;
  const key = cluster === null ? null : clusterKeyOf(ctx, session, command);
  if (key === null) return apply(ctx, session, command, grant, now);
  const outcome = cluster!.claim(key, session.id);
  if (typeof outcome === "string") {
    return claimSettled(ctx, session, command, grant, now, outcome, key);
  }
  session.busy = true;
  outcome.then((settled) => {
    if (!ctx.sessions.has(session.id)) {
      cluster!.released(key, session.id);
      return;
    }
    session.busy = false;
    claimSettled(ctx, session, command, grant, now, settled, key);
    drain(ctx, session);
  });
}

/** The name's key a login must claim cluster-wide, or null when the router answers it alone. */
function clusterKeyOf(ctx: AppContext, session: Session, command: RoutedCommand): string | null {
  if (command.type !== "login" || command.name === undefined || session.name !== null) {
    return null;
  }
  const checked = checkName(command.name);
  if (!checked.ok) return null; // invalid_name
  // name_taken, here; a look-alike held on another node is only caught by its primary key.
  return holderOf(ctx.core.registry, checked.name) === undefined ? nameKey(checked.name) : null;
}

/** Applies a login whose cluster-wide claim settled, or tells the client why it cannot. */
function claimSettled(
  ctx: AppContext,
  session: Session,
  command: RoutedCommand,
  grant: TokenGrant | undefined,
  now: number,
  outcome: ClaimOutcome,
  key: string,
): void {
  if (outcome === "claimed") {
    apply(ctx, session, command, grant, now);
    // The router may still refuse it: a look-alike (another key) took the name here meanwhile.
    // Kept, the claim would lock the name cluster-wide with nobody holding it.
    if (session.name === null) ctx.cluster!.released(key, session.id);
    return;
  }
  const name = (command as { name: string }).name.normalize("NFKC");
  if (outcome === "taken") {
    run(ctx, [error("name_taken", `Name "${name}" is taken`, command.ref)], session.id);
    return loginFailed(ctx, session);
  }
  run(ctx, [
    error(
      "unavailable",
      "Names cannot be claimed right now (the cluster store is down or recovering); try again",
      command.ref,
    ),
  ], session.id);
}

/** Routes one command and keeps deadlines and token state in step with its login state. */
function apply(
  ctx: AppContext,
  session: Session,
  command: RoutedCommand,
  grant: TokenGrant | undefined,
  now: number,
): void {
  const wasLoggedIn = session.name !== null;
  // A command that may change membership sees every message before it delivered first.
  if (command.type !== "broadcast") ctx.history.flush();
  run(ctx, route(ctx.core, session, command), session.id);
  const isLoggedIn = session.name !== null;
  if (isLoggedIn && !wasLoggedIn) {
    ctx.awaitingLogin.delete(session.id);
    session.failedLogins = 0;
    if (grant) {
      session.tokenExpiresAt = grant.expiresAt;
      session.channelFilter = grant.channelFilter;
    }
  } else if (!isLoggedIn && wasLoggedIn) {
    ctx.lastActive.delete(session.id);
    session.tokenExpiresAt = null;
    session.channelFilter = null;
    touch(ctx.awaitingLogin, session.id, now);
  } else if (!isLoggedIn && command.type === "login") {
    loginFailed(ctx, session);
  }
  if (isLoggedIn && ctx.config.idleTimeout > 0) touch(ctx.lastActive, session.id, now);
}

/** Counts a refused login; too many in a row end the connection. */
function loginFailed(ctx: AppContext, session: Session): void {
  if (++session.failedLogins >= MAX_FAILED_LOGINS) {
    end(ctx, session.id, CloseCode.Unauthorized, "Too many failed logins");
  }
}

/** An error for the log: its stack when it has one (never a request's content). */
function describeError(error: unknown): string {
  return error instanceof Error ? error.stack ?? error.message : String(error);
}
