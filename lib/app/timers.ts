/**
 * The app's timers: the sweep that enforces deadlines (upgrades that never
 * open, login, idle, token expiry), the dialects' ticks, and forgetting idle
 * per-IP admission records.
 *
 * @module
 */
import { expired } from "../core/deadlines.ts";
import { CloseCode } from "../core/protocol.ts";
import type { Session } from "../core/session.ts";
import { unreserve } from "./connections.ts";
import type { AppContext } from "./context.ts";
import { end, run } from "./effects.ts";

/** How often deadlines are checked. */
const SWEEP_INTERVAL_MS = 1000;

/** How often dialect timers run. */
const DIALECT_TICK_MS = 250;

/** How often idle per-IP records are forgotten. */
const ADMISSION_SWEEP_MS = 60_000;

/** Starts the timers; returns what stops them. */
export function startTimers(ctx: AppContext): () => void {
  const { clock } = ctx;
  const stopSweep = clock.every(SWEEP_INTERVAL_MS, () => sweep(ctx));
  const stopDialectTicks = [...ctx.dialects.values()].some((dialect) => dialect.tick)
    ? clock.every(DIALECT_TICK_MS, () => tickDialects(ctx))
    : () => {};
  const stopAdmissionSweep = clock.every(
    ADMISSION_SWEEP_MS,
    () => ctx.admission.sweep(clock.now()),
  );
  return () => {
    stopSweep();
    stopDialectTicks();
    stopAdmissionSweep();
  };
}

/** Ends what is past its deadline: upgrades that never opened, logins, idle sessions, tokens. */
function sweep(ctx: AppContext): void {
  const { config } = ctx;
  const now = ctx.clock.now();
  ctx.log.flush();
  // In the order they were allowed: the first one still in time ends the search.
  for (const [upgrade, since] of ctx.upgrading) {
    if (now - since < ctx.openDeadlineMs) break;
    unreserve(ctx, upgrade, "deadline");
    ctx.log.limited("warn", "upgrade:never_opened", "an upgrade never opened; its slot is free", {
      ip: upgrade.ip,
      dialect: upgrade.dialect,
    });
  }
  for (const id of expired(ctx.awaitingLogin, now, config.loginTimeout * 1000)) {
    end(ctx, id, CloseCode.LoginTimeout, "Login timeout");
  }
  if (config.idleTimeout > 0) {
    for (const id of expired(ctx.lastActive, now, config.idleTimeout * 1000)) {
      end(ctx, id, CloseCode.IdleTimeout, "Idle timeout");
    }
  }
  if (ctx.jwt !== null) {
    const deadline = now - config.jwtClockSkew * 1000;
    for (const session of ctx.sessions.values()) {
      if (session.tokenExpiresAt !== null && session.tokenExpiresAt <= deadline) {
        end(ctx, session.id, CloseCode.Unauthorized, "Token expired");
      }
    }
  }
}

/** Runs the dialects' timers, each over its own sessions only. */
function tickDialects(ctx: AppContext): void {
  for (const [name, dialect] of ctx.dialects) {
    if (dialect.tick === undefined) continue;
    const own = ctx.sessionsByDialect.get(name);
    if (own === undefined || own.size === 0) continue;
    const states = [...own.values()].map((session) =>
      [session, ctx.dialectStates.get(session.id)] as [Session, unknown]
    );
    for (const [id, effects] of dialect.tick(ctx.dialectContext, states)) run(ctx, effects, id);
  }
}
