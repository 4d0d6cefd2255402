/**
 * The checks a command may need before the router applies it, and that
 * take a round trip: verifying a login token, asking the authorizer
 * webhook. Commands that need neither never come here, so an open server
 * pays nothing for it.
 *
 * @module
 */
import { channelMatcher, type JwtVerifier } from "./jwt.ts";
import type { Authorizer } from "./webhook.ts";
import { checkName, foldName } from "../core/names.ts";
import type { ClientCommand } from "../core/protocol.ts";
import { type Effect, error, type RoutedCommand } from "../core/router.ts";
import type { Session } from "../core/session.ts";

/** What the gate decided about one command. */
export type GateResult =
  /** Route the (possibly rewritten) command; apply `token` to the session if the login succeeds. */
  | { kind: "route"; command: RoutedCommand; token?: TokenGrant }
  /** Do not route; send these instead. */
  | { kind: "reply"; effects: Effect[]; failedLogin?: boolean }
  /** Close the connection: the authorizer is down, the client should come back later. */
  | { kind: "close"; code: number; reason: string };

/** What a verified token grants a session. */
export interface TokenGrant {
  expiresAt: number;
  channelFilter: ((channel: string) => boolean) | null;
}

/** The asynchronous checks of the commands that need them. */
export interface Gate {
  /** Whether `command` must pass through `check` before routing; a refresh always does. */
  needsCheck(command: ClientCommand): boolean;
  /** Checks one command of `session`. */
  check(session: Session, command: ClientCommand, now: number): Promise<GateResult>;
}

/** The commands the authorizer is asked about: those that grant something. */
const AUTHORIZED = new Set(["login", "join", "broadcast"]);

/** Creates the gate; either part may be absent. */
export function createGate(
  { jwt, authorizer, downCloseCode }: {
    jwt: JwtVerifier | null;
    authorizer: Authorizer | null;
    /** The close code for "authorizer down, come back later". */
    downCloseCode: number;
  },
): Gate {
  const authorize = async (session: Session, command: RoutedCommand): Promise<GateResult> => {
    if (authorizer === null || !AUTHORIZED.has(command.type)) return { kind: "route", command };
    const { type, ref: _ref, ...args } = command;
    // Keyed by address: one client's flood waits behind itself, not in front of the others.
    const decision = await authorizer.decide(
      { command: type, args, name: session.name, dialect: "native" },
      session.ip,
    );
    if (decision === "allow") return { kind: "route", command };
    if (decision === "down") {
      return { kind: "close", code: downCloseCode, reason: "Authorizer unavailable" };
    }
    return {
      kind: "reply",
      effects: [error("forbidden", `The authorizer refused "${type}"`, command.ref)],
      failedLogin: type === "login",
    };
  };

  return {
    needsCheck(command) {
      if (command.type === "refresh") return true;
      if (command.type === "login") return jwt !== null || authorizer !== null;
      return authorizer !== null && AUTHORIZED.has(command.type);
    },

    async check(session, command, now) {
      if (command.type === "refresh") {
        if (jwt === null) {
          return {
            kind: "reply",
            effects: [error("bad_request", "This server does not use tokens", command.ref)],
          };
        }
        if (session.name === null) {
          return {
            kind: "reply",
            effects: [error("not_logged_in", 'Log in before "refresh"', command.ref)],
          };
        }
        const verified = await jwt.verify(command.token, now);
        if (!verified.ok) {
          return { kind: "reply", effects: [error(verified.code, verified.message, command.ref)] };
        }
        if (foldName(verified.identity.name) !== foldName(session.name)) {
          const message = `Token is for "${verified.identity.name}", not "${session.name}"`;
          return { kind: "reply", effects: [error("unauthorized", message, command.ref)] };
        }
        const grant = grantOf(verified.identity);
        session.tokenExpiresAt = grant.expiresAt;
        session.channelFilter = grant.channelFilter;
        const expires = new Date(grant.expiresAt).toISOString();
        return {
          kind: "reply",
          effects: [{ kind: "reply", frame: { type: "refreshed", expires, ref: command.ref } }],
        };
      }
      if (command.type !== "login" || jwt === null) return await authorize(session, command);

      if (session.name !== null) return { kind: "route", command }; // the router answers already_logged_in
      if (command.token === undefined) {
        const effects = [
          error("unauthorized", 'This server requires a "token" to log in', command.ref),
        ];
        return { kind: "reply", effects, failedLogin: true };
      }
      const verified = await jwt.verify(command.token, now);
      if (!verified.ok) {
        return {
          kind: "reply",
          effects: [error(verified.code, verified.message, command.ref)],
          failedLogin: true,
        };
      }
      // The name comes from the token, never from the client, and keeps to the same rules.
      const checked = checkName(verified.identity.name);
      if (!checked.ok) {
        return {
          kind: "reply",
          effects: [error("invalid_name", `Token name refused: ${checked.reason}`, command.ref)],
          failedLogin: true,
        };
      }
      const login: RoutedCommand = { type: "login", name: checked.name, ref: command.ref };
      const result = await authorize(session, login);
      return result.kind === "route" ? { ...result, token: grantOf(verified.identity) } : result;
    },
  };
}

function grantOf(identity: { expiresAt: number; channels: string[] | null }): TokenGrant {
  return {
    expiresAt: identity.expiresAt,
    channelFilter: identity.channels === null ? null : channelMatcher(identity.channels),
  };
}
