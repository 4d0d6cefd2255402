/**
 * One node's part in a cluster, over any engine: it forwards what this node
 * publishes, delivers what other nodes publish, keeps the members of other
 * nodes in the channel map (so `joined`, member counts and the API list the
 * whole cluster), and holds this node's names as renewed leases.
 *
 * Remote members live in the same channel map as local ones, under
 * negative session ids that no socket has: the hubs skip them, and every
 * listing counts them. A node that stops beating for a lease is dropped,
 * and its members leave with a presence `leave` for the members here.
 *
 * Numbered messages (a shared log's) must reach this node's members all, in
 * seq order: a node keeps, per channel it has members in, the last seq it
 * delivered, and when the bus skipped some (its connection dropped and came
 * back: `up`; or a seq that does not follow on), it reads them back from the
 * log (`Engine.replay`) and delivers them before what the bus brings
 * meanwhile, each once. When they cannot be read back (trimmed, the history
 * started over, the log out of reach), its members there are told
 * (`missed`) rather than left with a silent gap.
 *
 * After the engine comes back (a Redis restart may have forgotten every
 * name), a node admits no new login until every node it knows has put its
 * names back in the store: each node re-asserts its own names before it
 * tells the others its state, and a node that hears a `hello` re-asserts
 * before it answers. Names given out locally while the store could not be
 * asked (dialect logins) are claimed only then, so a name held before the
 * outage never loses to one taken during it.
 *
 * Runtime-free: time comes from the clock, the network from the engine.
 *
 * @module
 */
import { type Channels, joinChannel, leaveChannel } from "../core/channels.ts";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../log.ts";
import { type BusMessage, decodePayload, encodePayload } from "./cluster_bus.ts";
import type { Claim, ClaimOutcome, Engine } from "./engine.ts";
import { bump, type Metrics } from "../metrics.ts";
import type { ServerFrame } from "../core/protocol.ts";
import type { SessionId } from "../core/registry.ts";
import type { Origin } from "../core/router.ts";

/** What the cluster needs from the node. */
export interface ClusterOptions {
  engine: Engine;
  clock: Clock;
  /** This node's id, unique in the cluster. */
  nodeId: string;
  /** How long a name claim and a node's silence last before they expire. */
  leaseMs: number;
  channels: Channels;
  metrics: Metrics;
  /**
   * Delivers a frame published to `channel` to this node's members: one
   * another node published, or one of this node's messages that a shared
   * log numbered and published (then `except` is the sender to skip).
   */
  deliver(channel: string, frame: ServerFrame, origin?: Origin, except?: SessionId): void;
  /** Another owner holds the name of local session `id` now: end that session. */
  nameLost(id: SessionId): void;
  /** An operator on another node kicked the holder of this folded name. */
  kick(key: string): void;
  /** Where cluster events are logged. */
  log: Logger;
  /** The engine is connected (again): what waited for the shared store may go ahead. */
  reconnected?(): void;
  /**
   * Numbered messages of `channel` never reached this node and cannot be
   * read back: its members here must learn of the gap (rejoin with `since`).
   */
  missed?(channel: string): void;
}

/** This node's view of the cluster. */
export interface Cluster {
  /** Claims folded `key` cluster-wide for local session `id`. */
  claim(key: string, id: SessionId): ClaimOutcome | Promise<ClaimOutcome>;
  /** The registry gave `key` to `id`: claim it cluster-wide too unless `claim` did already. */
  claimed(key: string, id: SessionId): void;
  /** The registry freed `key` of `id`: free it cluster-wide. */
  released(key: string, id: SessionId): void;
  /** This node published `frame` to `channel`: tell the others. */
  published(channel: string, frame: ServerFrame, origin?: Origin): void;
  /** Local session `id` entered `channel` under `name` ("" for nameless). */
  joined(channel: string, id: SessionId, name: string): void;
  /** Local session `id` left `channel`. */
  left(channel: string, id: SessionId): void;
  /**
   * A read of `channel`'s log for a local join found its head at `seq` (of
   * run `gen`, if the log tells it): members here have all up to it.
   */
  head(channel: string, seq: number, gen?: string): void;
  /**
   * This node delivered message `id` as not stored after its append failed,
   * which may have stored it all the same (a timeout): if the log publishes it,
   * members here do not get it again.
   */
  unstored(id: string): void;
  /** Asks every other node to remove the holder of folded `key`. */
  kick(key: string): void;
  /** Members of `channel` on other nodes. */
  remoteMembers(channel: string): number;
  /** Whether the engine is connected. */
  readonly up: boolean;
  /** Whether names can be claimed: connected, and every known node's names are in the store again. */
  readonly admitting: boolean;
  /** Other nodes seen alive. */
  readonly nodes: number;
  /** Sessions of other nodes that are in a channel here (what this node keeps of them). */
  readonly remoteSessions: number;
  /** Says goodbye and disconnects. */
  stop(): Promise<void>;
}

/** Whether a published frame is a message a shared log numbered. */
function isNumbered(frame: { type: string; seq?: unknown }): boolean {
  return frame.type === "message" && typeof frame.seq === "number";
}

/** Ids of messages delivered as not stored kept at most, in case the log numbers them after all. */
const MAX_UNSTORED = 10_000;

/** Missed messages read back per replay call. */
const REPLAY_PAGE = 500;

type Pub = Extract<BusMessage, { t: "pub" }>;

/** Where this node is in a channel's numbered messages (a channel with members here). */
interface Track {
  /** The run of the history `seq` counts in; undefined while only a join's read has told it. */
  gen: string | undefined;
  /** The last seq delivered here, or the head a join's read found. */
  seq: number;
  /** While missed messages are read back: what the bus brings meanwhile, in order. */
  held?: { message: Pub; own: boolean }[];
  /** Whether a replay read is under way. */
  reading?: boolean;
}

/** What this node knows of another. */
interface RemoteNode {
  lastSeen: number;
  /** Its session → our negative id for it. */
  readonly ids: Map<number, SessionId>;
  /** Our id for its session → the channels it is in. */
  readonly memberships: Map<SessionId, Set<string>>;
}

/** Creates this node's part of the cluster and starts the engine. */
export function createCluster(options: ClusterOptions): Cluster {
  const { engine, clock, nodeId, leaseMs, channels, metrics } = options;
  const nodes = new Map<string, RemoteNode>();
  /** Local sessions → the folded name they hold cluster-wide. */
  const held = new Map<SessionId, string>();
  /** Sessions of `held` whose name was given out while claims were not admitted: not in the store yet. */
  const deferred = new Set<SessionId>();
  /** Since the engine last came up: whether this node's names are in the store again. */
  let asserted = false;
  /** Since the engine last came up: the known nodes whose names may not be in the store yet. */
  const awaited = new Set<string>();
  /** Whether claims are admitted (see `admitting`). */
  let admitting = false;
  const remoteCounts = new Map<string, number>();
  let nextRemoteId: SessionId = -1;
  let outbox: BusMessage[] = [];
  let up = false;
  /** Whether the engine has been connected once; until then, being down is told once. */
  let everUp = false;
  let toldUnreachable = false;
  let stopped = false;
  /** How many times claims were admitted after coming up; the first is the start, not logged. */
  let recoveries = 0;
  /** Channels with members here, where this node is in their numbered messages. */
  const tracks = new Map<string, Track>();
  const { replay } = engine;
  /** Ids of this node's messages delivered as not stored, oldest first (see `unstored`). */
  const unstoredIds = new Set<string>();

  const ownerOf = (id: SessionId) => `${nodeId}:${id}`;

  const send = (message: BusMessage) => {
    if (stopped) return;
    if (outbox.length === 0) queueMicrotask(flush);
    outbox.push(message);
  };
  const flush = () => {
    const messages = outbox;
    outbox = [];
    if (messages.length === 0) return;
    if (up && engine.publish(encodePayload({ n: nodeId, m: messages }))) {
      metrics.cluster.messagesOut += messages.length;
    } else {
      // Local delivery went ahead; the other nodes miss these (they resynchronize state later).
      metrics.cluster.dropped += messages.length;
    }
  };

  /** Every membership of a local session, for a node that asks. */
  const localState = (): [string, number, string][] => {
    const state: [string, number, string][] = [];
    for (const [channel, members] of channels.members) {
      for (const [id, name] of members) if (id > 0) state.push([channel, id, name]);
    }
    return state;
  };

  const nodeFor = (id: string): RemoteNode => {
    let node = nodes.get(id);
    if (node === undefined) {
      node = { lastSeen: clock.now(), ids: new Map(), memberships: new Map() };
      nodes.set(id, node);
    }
    return node;
  };

  const addMember = (node: RemoteNode, channel: string, session: number, name: string) => {
    let id = node.ids.get(session);
    if (id === undefined) {
      id = nextRemoteId--;
      node.ids.set(session, id);
      node.memberships.set(id, new Set());
    }
    if (!joinChannel(channels, channel, id, name)) return forgetIfOut(node, session, id);
    node.memberships.get(id)!.add(channel);
    remoteCounts.set(channel, (remoteCounts.get(channel) ?? 0) + 1);
  };

  /** Takes a remote member out of a channel; its name, for a presence leave, if it was in. */
  const removeMember = (node: RemoteNode, channel: string, id: SessionId): string | undefined => {
    const name = channels.members.get(channel)?.get(id);
    if (!leaveChannel(channels, channel, id)) return undefined;
    const count = (remoteCounts.get(channel) ?? 1) - 1;
    if (count === 0) remoteCounts.delete(channel);
    else remoteCounts.set(channel, count);
    node.memberships.get(id)?.delete(channel);
    return name;
  };

  /**
   * Forgets a remote session that is in no channel here: sessions come and go on other nodes
   * for as long as they run, and each would otherwise stay in these maps until its node leaves.
   */
  const forgetIfOut = (node: RemoteNode, session: number, id: SessionId) => {
    if (node.memberships.get(id)?.size !== 0) return;
    node.memberships.delete(id);
    node.ids.delete(session);
  };

  /** Forgets every member of a node; with `announce`, members here hear them leave. */
  const clearNode = (node: RemoteNode, announce: boolean) => {
    for (const [id, memberships] of node.memberships) {
      for (const channel of [...memberships]) {
        const name = removeMember(node, channel, id);
        if (announce && name) {
          options.deliver(channel, { type: "presence", channel, event: "leave", name });
        }
      }
    }
    node.ids.clear();
    node.memberships.clear();
  };

  /** Members of `channel` on this node (sessions joining included). */
  const localMembers = (channel: string) =>
    (channels.members.get(channel)?.size ?? 0) - (remoteCounts.get(channel) ?? 0);

  const deliverPub = (message: Pub, own: boolean) => {
    // Its members had it already, unnumbered: its append timed out, yet it was stored.
    if (own && unstoredIds.size > 0 && unstoredIds.delete(message.f.id as string)) return;
    if (own) options.deliver(message.c, message.f as ServerFrame, message.o, message.x);
    else options.deliver(message.c, message.f as ServerFrame, message.o);
  };

  /** Delivers a numbered message once and in seq order, reading back what the bus skipped. */
  const numbered = (message: Pub, own: boolean) => {
    const { c: channel, g: gen } = message;
    const seq = message.f.seq as number;
    // Without a run (Deno KV's log delivers each channel in order itself), as it comes.
    if (gen === undefined || replay === undefined) return deliverPub(message, own);
    const track = tracks.get(channel);
    if (track === undefined) {
      if (localMembers(channel) > 0) tracks.set(channel, { gen, seq });
      return deliverPub(message, own);
    }
    if (track.held !== undefined) return void track.held.push({ message, own });
    // A history that started over (it expired with members here, or a store lost it) counts
    // from 1 again: members here would take those seqs for ones they have seen, if any.
    if (track.gen !== undefined && track.gen !== gen && track.seq > 0) {
      return lost(channel, track, { message, own });
    }
    const last = track.seq;
    if (seq <= last) return; // read back already, or older than the join that began the track
    track.gen = gen;
    if (seq === last + 1) {
      track.seq = seq;
      return deliverPub(message, own);
    }
    track.held = [{ message, own }];
    catchUp(channel, track);
  };

  /** Reads back from the log what `channel`'s members here missed, then what was held meanwhile. */
  const catchUp = (channel: string, track: Track) => {
    track.held ??= [];
    if (track.reading) return;
    track.reading = true;
    const step = () => {
      replay!(channel, track.seq, REPLAY_PAGE).then((found) => {
        track.reading = false;
        if (stopped || tracks.get(channel) !== track) return;
        if (found === null && !up) return; // cut off again: the next `up` reads again
        // Members here saw nothing yet, or what they saw is of the run the log has now.
        const same = found !== null && (track.seq === 0 ||
          found.gen !== "" && (track.gen === undefined || found.gen === track.gen));
        if (!same) return lost(channel, track);
        for (const { node, message } of found.messages) {
          const payload = decodePayload(`{"n":${JSON.stringify(node || "?")},"m":[${message}]}`);
          const pub = payload?.m[0];
          if (pub?.t !== "pub" || (pub.f as { seq?: unknown }).seq !== track.seq + 1) {
            return lost(channel, track);
          }
          track.gen = found.gen;
          track.seq++;
          deliverPub(pub, node === nodeId);
        }
        if (found.top > track.seq) {
          if (found.messages.length < REPLAY_PAGE) return lost(channel, track);
          track.reading = true;
          return step();
        }
        release(track);
      });
    };
    step();
  };

  /** Delivers what was held during a read back, in order (a gap in it reads back again). */
  const release = (track: Track) => {
    const held = track.held ?? [];
    track.held = undefined;
    for (const { message, own } of held) numbered(message, own);
  };

  /**
   * `channel`'s missed messages cannot be read back, or its history started
   * over: its members here are told, then what came after goes out as usual.
   */
  const lost = (channel: string, track: Track, next?: { message: Pub; own: boolean }) => {
    options.log.warn(
      "cluster: numbered messages never reached this node; members here must rejoin",
      { channel },
    );
    tracks.delete(channel);
    options.missed?.(channel);
    for (const { message, own } of track.held ?? []) numbered(message, own);
    if (next !== undefined) numbered(next.message, next.own);
  };

  /** Forgets where this node is in `channel` once no member here is left. */
  const untrack = (channel: string) => {
    const track = tracks.get(channel);
    if (track === undefined || localMembers(channel) > 0) return;
    tracks.delete(channel);
    for (const { message, own } of track.held ?? []) deliverPub(message, own);
  };

  /**
   * Replaces what this node knows of another's members with its `state`, and
   * announces the difference to the members here (it may follow an outage or
   * a silence in which joins and leaves were lost): who left, then who joined.
   */
  const replaceState = (node: RemoteNode, state: [string, number, string][]) => {
    const key = (channel: string, session: number) => `${session} ${channel}`;
    const before = new Map<string, { channel: string; name: string }>();
    for (const [session, id] of node.ids) {
      for (const channel of node.memberships.get(id) ?? []) {
        before.set(key(channel, session), {
          channel,
          name: channels.members.get(channel)?.get(id) ?? "",
        });
      }
    }
    clearNode(node, false);
    const joins: { channel: string; name: string }[] = [];
    for (const [channel, session, name] of state) {
      addMember(node, channel, session, name);
      const id = node.ids.get(session);
      if (id === undefined || !node.memberships.get(id)?.has(channel)) continue; // channel full
      const was = before.get(key(channel, session));
      if (was?.name === name) before.delete(key(channel, session));
      else joins.push({ channel, name });
    }
    const announce = (
      event: "join" | "leave",
      { channel, name }: { channel: string; name: string },
    ) => name && options.deliver(channel, { type: "presence", channel, event, name });
    for (const left of before.values()) announce("leave", left);
    for (const joined of joins) announce("join", joined);
  };

  const receive = (from: string, message: BusMessage) => {
    const node = nodeFor(from);
    switch (message.t) {
      case "pub":
        if (isNumbered(message.f)) numbered(message, false);
        else options.deliver(message.c, message.f as ServerFrame, message.o);
        break;
      case "join":
        addMember(node, message.c, message.s, message.m);
        break;
      case "leave": {
        const id = node.ids.get(message.s);
        if (id === undefined) break;
        removeMember(node, message.c, id);
        forgetIfOut(node, message.s, id);
        break;
      }
      case "state":
        // Whoever it is for, a node sends its state only once its names are in the store.
        if (awaited.delete(from)) admitIfRecovered();
        if (message.to !== undefined && message.to !== nodeId) break;
        replaceState(node, message.m);
        break;
      case "hello":
        // The asker may have found the store empty: our names go back in before we answer.
        if (message.to === undefined || message.to === nodeId) reassert(from);
        break;
      case "beat":
        break;
      case "bye":
        clearNode(node, true);
        nodes.delete(from);
        if (awaited.delete(from)) admitIfRecovered();
        break;
      case "kick":
        options.kick(message.k);
    }
  };

  /** A local session's name turned out held elsewhere: end the session. */
  const lose = (id: SessionId, key: string) => {
    held.delete(id);
    deferred.delete(id);
    metrics.cluster.namesLost++;
    options.log.warn("cluster: the name of a session is held on another node now; ending it", {
      conn: id,
      name: key,
    });
    options.nameLost(id);
  };

  /**
   * Extends this node's leases, claiming again what the store forgot; true
   * once done (at once when there is nothing to renew), false when the
   * store could not be reached.
   */
  const renew = (): boolean | Promise<boolean> => {
    if (!up) return false;
    const claims: Claim[] = [];
    for (const [id, key] of held) if (!deferred.has(id)) claims.push({ key, owner: ownerOf(id) });
    if (claims.length === 0) return true;
    return engine.renew(claims, leaseMs).then((lost) => {
      if (lost === null) return false; // unreachable: the next beat tries again
      for (const claim of lost) {
        const id = Number(claim.owner.slice(nodeId.length + 1));
        if (held.get(id) === claim.key && !deferred.has(id)) lose(id, claim.key);
      }
      return true;
    });
  };

  /**
   * Renews this node's names, then tells the others (`to`, or all) its
   * state, which says its names are in the store; claims may then be
   * admitted. Not answered when the store cannot be reached: the asker
   * hears our state once we are connected again.
   */
  const reassert = (to?: string) => {
    const renewed = () => {
      if (!up) return;
      send(
        to === undefined ? { t: "state", m: localState() } : { t: "state", to, m: localState() },
      );
      if (!asserted) {
        asserted = true;
        admitIfRecovered();
      }
    };
    const result = renew();
    if (result === true) renewed();
    else if (result !== false) {
      result.then((done) => done && renewed()).catch((error) =>
        options.log.error("cluster: re-asserting names failed", { error: String(error) })
      );
    }
  };

  /** Admits claims once this node and every node awaited have their names in the store again. */
  const admitIfRecovered = () => {
    if (admitting || !up || !asserted || awaited.size > 0) return;
    admitting = true;
    if (recoveries++ > 0) {
      options.log.info("cluster: every node's names are in the store again; admitting logins", {
        engine: engine.kind,
      });
    }
    // Names given out meanwhile are claimed now, after those held before: the later one loses.
    for (const id of deferred) {
      const key = held.get(id);
      deferred.delete(id);
      if (key === undefined) continue;
      Promise.resolve(engine.claim({ key, owner: ownerOf(id) }, leaseMs)).then((outcome) => {
        bump(metrics.cluster.claims, outcome);
        if (held.get(id) !== key || deferred.has(id)) return;
        if (outcome === "taken") lose(id, key);
        // Cut off again before the answer: claimed after the next recovery.
        else if (outcome === "unavailable") deferred.add(id);
      });
    }
  };

  const beat = () => {
    if (!up) return;
    send({ t: "beat" });
    const deadline = clock.now() - leaseMs;
    for (const [id, node] of nodes) {
      if (node.lastSeen >= deadline) continue;
      options.log.warn("cluster: a node fell silent; its members leave", { node: id });
      clearNode(node, true);
      nodes.delete(id);
      // Its names are free once its leases run out, as a crashed node's are.
      if (awaited.delete(id)) admitIfRecovered();
    }
    // Until our names are back, each beat tries again (and tells the others when done).
    if (!asserted) return reassert();
    const result = renew();
    if (typeof result !== "boolean") {
      result.catch((error) =>
        options.log.error("cluster: renewing names failed", { error: String(error) })
      );
    }
  };
  const stopBeat = clock.every(Math.max(1, Math.floor(leaseMs / 3)), beat);

  engine.start({
    message(payload) {
      if (stopped) return;
      const decoded = decodePayload(payload);
      if (decoded === null) {
        metrics.cluster.badPayloads++;
        return;
      }
      if (decoded.n === nodeId) {
        // Our own, echoed by the bus: only messages a shared log numbered are delivered here (in
        // the log's order, the channel's order); everything else went out locally already.
        for (const message of decoded.m) {
          if (message.t === "pub" && isNumbered(message.f)) numbered(message, true);
        }
        return;
      }
      metrics.cluster.messagesIn += decoded.m.length;
      const known = nodes.has(decoded.n);
      const node = nodeFor(decoded.n);
      node.lastSeen = clock.now();
      // A node we have not heard from tells us its state when asked (it may have missed our hello).
      if (!known && !decoded.m.some((m) => m.t === "state" || m.t === "bye")) {
        send({ t: "hello", to: decoded.n });
      }
      for (const message of decoded.m) receive(decoded.n, message);
    },
    up() {
      if (stopped) return;
      up = true;
      everUp = true;
      options.log.info(`cluster: connected to ${engine.kind}`, {
        engine: engine.kind,
        node: nodeId,
      });
      // We could not tell who was alive while cut off: everyone gets a fresh lease.
      const now = clock.now();
      for (const node of nodes.values()) node.lastSeen = now;
      // The store may have forgotten every name: no claim until every node we know has put its
      // names back (its state says so), or has been dropped for silence.
      asserted = false;
      admitting = false;
      awaited.clear();
      for (const id of nodes.keys()) awaited.add(id);
      // What we missed of the others (they re-assert, then answer), then what they missed of us.
      send({ t: "hello" });
      reassert();
      options.reconnected?.();
      // What the bus dropped meanwhile is read back before anything it brings from now on.
      for (const [channel, track] of tracks) {
        if (localMembers(channel) > 0) catchUp(channel, track);
        else untrack(channel);
      }
    },
    missed(channel, reason) {
      if (stopped) return;
      options.log.warn(
        "cluster: numbered messages were gone before this node read them, or the history started over; members here must rejoin",
        { channel, reason },
      );
      options.missed?.(channel);
    },
    down(reason) {
      if (stopped) return;
      if (!up) {
        // Never connected yet: said once, then the engine keeps trying; `up` follows when it can.
        if (!everUp && !toldUnreachable) {
          toldUnreachable = true;
          options.log.error(`cluster: cannot reach ${engine.kind}; serving locally, retrying`, {
            engine: engine.kind,
            reason,
          });
        }
        return;
      }
      up = false;
      admitting = false;
      metrics.cluster.disconnects++;
      options.log.error(`cluster: lost the ${engine.kind} connection; serving locally`, {
        engine: engine.kind,
        reason,
      });
    },
  });

  return {
    claim(key, id) {
      if (!admitting) {
        bump(metrics.cluster.claims, "unavailable");
        return "unavailable";
      }
      const count = (outcome: ClaimOutcome) => {
        bump(metrics.cluster.claims, outcome);
        if (outcome === "claimed") held.set(id, key);
        return outcome;
      };
      const outcome = engine.claim({ key, owner: ownerOf(id) }, leaseMs);
      return typeof outcome === "string" ? count(outcome) : outcome.then(count);
    },
    claimed(key, id) {
      if (held.get(id) === key) return;
      // A dialect claimed it locally: hold it, and end the session if it turns out held elsewhere.
      held.set(id, key);
      if (!admitting) {
        deferred.add(id); // claimed once every node's names are back in the store
        return;
      }
      Promise.resolve(engine.claim({ key, owner: ownerOf(id) }, leaseMs)).then((outcome) => {
        bump(metrics.cluster.claims, outcome);
        if (outcome === "taken" && held.get(id) === key && !deferred.has(id)) lose(id, key);
      });
    },
    released(key, id) {
      if (held.get(id) !== key) return;
      held.delete(id);
      if (deferred.delete(id)) return; // never reached the store
      if (up) engine.release({ key, owner: ownerOf(id) });
    },
    published(channel, frame, origin) {
      send(
        origin === undefined ? { t: "pub", c: channel, f: frame } : {
          t: "pub",
          c: channel,
          f: frame,
          o: origin as { dialect: string; original?: Record<string, unknown> },
        },
      );
    },
    joined(channel, id, name) {
      send({ t: "join", c: channel, s: id, m: name });
    },
    left(channel, id) {
      send({ t: "leave", c: channel, s: id });
      untrack(channel);
    },
    unstored(id) {
      unstoredIds.add(id);
      if (unstoredIds.size > MAX_UNSTORED) unstoredIds.delete(unstoredIds.values().next().value!);
    },
    head(channel, seq, gen) {
      if (replay === undefined || tracks.has(channel) || localMembers(channel) === 0) return;
      tracks.set(channel, { gen, seq });
    },
    kick(key) {
      send({ t: "kick", k: key });
    },
    remoteMembers(channel) {
      return remoteCounts.get(channel) ?? 0;
    },
    get up() {
      return up;
    },
    get admitting() {
      return admitting;
    },
    get nodes() {
      return nodes.size;
    },
    get remoteSessions() {
      let count = 0;
      for (const node of nodes.values()) count += node.ids.size;
      return count;
    },
    async stop() {
      if (stopped) return;
      send({ t: "bye" });
      flush();
      stopped = true;
      stopBeat();
      for (const [id, key] of held) engine.release({ key, owner: ownerOf(id) });
      held.clear();
      await engine.stop();
    },
  };
}
