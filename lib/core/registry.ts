/**
 * The login registry: which session holds which name. Names are unique
 * server-wide: two names collide when they are one name in another case or
 * width, or when they look alike (`lib/core/names.ts` says which keys a name
 * holds).
 *
 * Every operation is synchronous, so a check and the write that follows it
 * cannot interleave with another login: of many racing claims, one wins.
 *
 * @module
 */
import { nameKey, nameKeys } from "./names.ts";

/** Identifies one connection for as long as it is open. */
export type SessionId = number;

/** Who holds which name. */
export interface Registry {
  /** Primary key (case-folded skeleton, what a cluster claims) → the session holding it. */
  readonly owners: Map<string, SessionId>;
  /** Session → the primary key it holds. */
  readonly heldBy: Map<SessionId, string>;
  /** Every key of every held name, look-alike keys included → the session holding it. */
  readonly keys: Map<string, SessionId>;
  /** Session → every key it holds. */
  readonly keysOf: Map<SessionId, readonly string[]>;
  /** Told of every claim and release, whoever makes it (a cluster mirrors them). */
  watcher: RegistryWatcher | null;
}

/** Hears of the registry's changes, by primary key. */
export interface RegistryWatcher {
  claimed(key: string, owner: SessionId): void;
  released(key: string, owner: SessionId): void;
}

/** Creates an empty registry. */
export function createRegistry(): Registry {
  return {
    owners: new Map(),
    heldBy: new Map(),
    keys: new Map(),
    keysOf: new Map(),
    watcher: null,
  };
}

/**
 * Claims `name` (one that passed `checkName`, or its `unprovenName`) for `owner`; false when a
 * name colliding with it is held, or `owner` holds a name already.
 */
export function claimName(registry: Registry, name: string, owner: SessionId): boolean {
  if (registry.heldBy.has(owner)) return false;
  const keys = nameKeys(name);
  if (keys.some((key) => registry.keys.has(key))) return false;
  const key = keys[0];
  registry.owners.set(key, owner);
  registry.heldBy.set(owner, key);
  for (const each of keys) registry.keys.set(each, owner);
  registry.keysOf.set(owner, keys);
  registry.watcher?.claimed(key, owner);
  return true;
}

/** Releases whatever name `owner` holds; does nothing when it holds none. */
export function releaseName(registry: Registry, owner: SessionId): void {
  const key = registry.heldBy.get(owner);
  if (key === undefined) return;
  registry.heldBy.delete(owner);
  registry.owners.delete(key);
  for (const each of registry.keysOf.get(owner) ?? []) registry.keys.delete(each);
  registry.keysOf.delete(owner);
  registry.watcher?.released(key, owner);
}

/** The session holding `name` by primary key (any case or width, or a lowercase look-alike). */
export function ownerOf(registry: Registry, name: string): SessionId | undefined {
  return registry.owners.get(nameKey(name));
}

/** The session holding `name` or a name colliding with it, if any. */
export function holderOf(registry: Registry, name: string): SessionId | undefined {
  for (const key of nameKeys(name)) {
    const owner = registry.keys.get(key);
    if (owner !== undefined) return owner;
  }
  return undefined;
}
