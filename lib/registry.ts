/**
 * The login registry: which session holds which name. Names are unique
 * server-wide, compared case-insensitively after Unicode NFKC.
 *
 * Every operation is synchronous, so a check and the write that follows it
 * cannot interleave with another login: of many racing claims, one wins.
 *
 * @module
 */

/** Identifies one connection for as long as it is open. */
export type SessionId = number;

/** Who holds which name. */
export interface Registry {
  /** Folded name → the session holding it. */
  readonly owners: Map<string, SessionId>;
  /** Session → the folded name it holds. */
  readonly heldBy: Map<SessionId, string>;
  /** Told of every claim and release, whoever makes it (a cluster mirrors them). */
  watcher: RegistryWatcher | null;
}

/** Hears of the registry's changes, by folded name. */
export interface RegistryWatcher {
  claimed(key: string, owner: SessionId): void;
  released(key: string, owner: SessionId): void;
}

/** Creates an empty registry. */
export function createRegistry(): Registry {
  return { owners: new Map(), heldBy: new Map(), watcher: null };
}

/** The key two names collide on: NFKC, then case-folded. */
export function foldName(name: string): string {
  return name.normalize("NFKC").toLowerCase().normalize("NFKC");
}

/** Claims `name` for `owner`; false when someone holds it already. */
export function claimName(registry: Registry, name: string, owner: SessionId): boolean {
  const key = foldName(name);
  if (registry.owners.has(key) || registry.heldBy.has(owner)) return false;
  registry.owners.set(key, owner);
  registry.heldBy.set(owner, key);
  registry.watcher?.claimed(key, owner);
  return true;
}

/** Releases whatever name `owner` holds; does nothing when it holds none. */
export function releaseName(registry: Registry, owner: SessionId): void {
  const key = registry.heldBy.get(owner);
  if (key === undefined) return;
  registry.heldBy.delete(owner);
  registry.owners.delete(key);
  registry.watcher?.released(key, owner);
}

/** The session holding `name`, if any. */
export function ownerOf(registry: Registry, name: string): SessionId | undefined {
  return registry.owners.get(foldName(name));
}
