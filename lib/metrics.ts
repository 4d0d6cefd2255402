/**
 * Counters of what the server did, rendered as Prometheus text for
 * `GET /metrics`. Plain numbers bumped on the hot path; labels only where
 * their values are few and fixed (error and close codes, refusal reasons).
 *
 * @module
 */
import { CloseCode } from "./core/protocol.ts";

/** Everything the server counts. */
export interface Metrics {
  connectionsOpened: number;
  /** Upgrades refused before they became sockets, by reason. */
  refused: Map<string, number>;
  /**
   * Upgrades allowed whose socket never opened, their slots given back: "gone" (the client
   * left, as the runtime told us) or "deadline" (the runtime never told us anything).
   */
  abandoned: Map<string, number>;
  framesIn: number;
  messagesIn: number;
  /** Frames sent, after coalescing. */
  framesOut: number;
  /** Objects delivered to a recipient (one message to 10 members counts 10). */
  deliveries: number;
  errors: Map<string, number>;
  /** Closes by {@linkcode closeLabel}: a known code, or "other". */
  closes: Map<string, number>;
  slowConsumers: number;
  /** Chat messages stored in the history. */
  messagesStored: number;
  /** Writes to the history store (a transaction, or an append to a shared log): messages are batched. */
  historyWrites: number;
  /** Chat messages delivered live but not stored: the history store failed or was unreachable. */
  historyFailures: number;
  /** History writes put off because another thread held the store's lock (retried shortly). */
  historyBusy: number;
  rateLimited: number;
  internalErrors: number;
  acceptErrors: number;
  /** What crossed the cluster bus (all zero on a lone node). */
  cluster: ClusterCounters;
}

/** Counters of the cluster bus and name store. */
export interface ClusterCounters {
  messagesOut: number;
  messagesIn: number;
  /** Messages not sent because the engine was disconnected. */
  dropped: number;
  /** Payloads on the bus that were not valid cluster messages. */
  badPayloads: number;
  disconnects: number;
  /** Name claims, by outcome (claimed, taken, unavailable). */
  claims: Map<string, number>;
  /** Local sessions ended because another node held their name. */
  namesLost: number;
}

/** Creates zeroed metrics. */
export function createMetrics(): Metrics {
  return {
    connectionsOpened: 0,
    refused: new Map(),
    abandoned: new Map(),
    framesIn: 0,
    messagesIn: 0,
    framesOut: 0,
    deliveries: 0,
    errors: new Map(),
    closes: new Map(),
    slowConsumers: 0,
    messagesStored: 0,
    historyWrites: 0,
    historyFailures: 0,
    historyBusy: 0,
    rateLimited: 0,
    internalErrors: 0,
    acceptErrors: 0,
    cluster: {
      messagesOut: 0,
      messagesIn: 0,
      dropped: 0,
      badPayloads: 0,
      disconnects: 0,
      claims: new Map(),
      namesLost: 0,
    },
  };
}

/**
 * Close codes counted under their own label: hubbub's own, and the standard
 * 1000–1015 (1004 is reserved and never sent). Clients pick close codes too,
 * so any other code is counted as "other": a client cannot mint series.
 */
const KNOWN_CLOSE_CODES: ReadonlySet<number> = new Set([
  1000,
  1001,
  1002,
  1003,
  1005,
  1006,
  1007,
  1008,
  1009,
  1010,
  1011,
  1012,
  1013,
  1014,
  1015,
  ...Object.values(CloseCode),
]);

/** The `code` label a close is counted under: the code when known, else "other". */
export function closeLabel(code: number): string {
  return KNOWN_CLOSE_CODES.has(code) ? String(code) : "other";
}

/** Adds one to a labelled counter. */
export function bump<K>(counter: Map<K, number>, key: K): void {
  counter.set(key, (counter.get(key) ?? 0) + 1);
}

/** What was built and when it started, for `hubbub_build_info` and `process_start_time_seconds`. */
export interface BuildInfo {
  version: string;
  /** "deno" or "bun". */
  runtime: string;
  /** When the process started, in seconds since the Unix epoch. */
  startTimeSeconds: number;
}

/** Point-in-time values that are not counters. */
export interface Gauges {
  connections: number;
  /** Connections counted against the caps: open sockets plus upgrades not yet settled. */
  slots?: number;
  users: number;
  channels: number;
  residentBytes?: number;
  /** With a shared engine: 1 while connected, else 0. */
  clusterUp?: number;
  /** With a shared engine: other nodes seen alive. */
  clusterNodes?: number;
  /** With a shared engine: other nodes' sessions that are in a channel here. */
  clusterRemoteSessions?: number;
}

/** One metric: name, type, help text and samples (labels, value). */
type Family = [
  name: string,
  type: "counter" | "gauge",
  help: string,
  samples: [string, number][],
];

/** The cluster's counters, shown only on a node with a shared engine. */
function clusterFamilies(
  cluster: ClusterCounters,
  one: (value: number) => [string, number][],
  labelled: (label: string, counter: Map<string, number>) => [string, number][],
): Family[] {
  return [
    [
      "hubbub_cluster_messages_out_total",
      "counter",
      "Messages published to the other nodes.",
      one(cluster.messagesOut),
    ],
    [
      "hubbub_cluster_messages_in_total",
      "counter",
      "Messages received from other nodes.",
      one(cluster.messagesIn),
    ],
    [
      "hubbub_cluster_dropped_total",
      "counter",
      "Messages the other nodes missed: the engine was disconnected.",
      one(cluster.dropped),
    ],
    [
      "hubbub_cluster_bad_payloads_total",
      "counter",
      "Payloads on the bus that were not cluster messages.",
      one(cluster.badPayloads),
    ],
    [
      "hubbub_cluster_disconnects_total",
      "counter",
      "Times the engine connection was lost.",
      one(cluster.disconnects),
    ],
    [
      "hubbub_cluster_claims_total",
      "counter",
      "Cluster-wide name claims, by outcome.",
      labelled("outcome", cluster.claims),
    ],
    [
      "hubbub_cluster_names_lost_total",
      "counter",
      "Sessions ended because another node held their name.",
      one(cluster.namesLost),
    ],
  ];
}

/** Renders the Prometheus text exposition format (version 0.0.4). */
export function renderMetrics(metrics: Metrics, gauges: Gauges, build: BuildInfo): string {
  const one = (value: number | undefined): [string, number][] =>
    value === undefined ? [] : [["", value]];
  const labelled = <K>(label: string, counter: Map<K, number>): [string, number][] =>
    [...counter].map(([key, value]) => [`{${label}="${key}"}`, value]);
  const families: Family[] = [
    [
      "hubbub_build_info",
      "gauge",
      "The version and runtime of this process; always 1.",
      [[`{version="${labelValue(build.version)}",runtime="${labelValue(build.runtime)}"}`, 1]],
    ],
    ["hubbub_connections", "gauge", "Open WebSocket connections.", one(gauges.connections)],
    [
      "hubbub_connection_slots",
      "gauge",
      "Connections counted against the caps: open sockets plus upgrades in flight.",
      one(gauges.slots),
    ],
    ["hubbub_users", "gauge", "Logged-in users.", one(gauges.users)],
    ["hubbub_channels", "gauge", "Channels with at least one member.", one(gauges.channels)],
    [
      "hubbub_connections_opened_total",
      "counter",
      "WebSocket connections accepted.",
      one(metrics.connectionsOpened),
    ],
    [
      "hubbub_upgrades_refused_total",
      "counter",
      "Upgrades refused, by reason.",
      labelled("reason", metrics.refused),
    ],
    [
      "hubbub_upgrades_abandoned_total",
      "counter",
      "Upgrades allowed whose socket never opened (gone: the client left; deadline: never heard of).",
      labelled("reason", metrics.abandoned),
    ],
    ["hubbub_frames_in_total", "counter", "WebSocket messages received.", one(metrics.framesIn)],
    [
      "hubbub_messages_in_total",
      "counter",
      "Chat messages accepted for delivery.",
      one(metrics.messagesIn),
    ],
    [
      "hubbub_frames_out_total",
      "counter",
      "WebSocket messages sent (after coalescing).",
      one(metrics.framesOut),
    ],
    [
      "hubbub_deliveries_total",
      "counter",
      "Frames delivered, counted per recipient.",
      one(metrics.deliveries),
    ],
    [
      "hubbub_errors_total",
      "counter",
      "Error frames sent, by code.",
      labelled("code", metrics.errors),
    ],
    [
      "hubbub_closes_total",
      "counter",
      "Connections closed, by close code.",
      labelled("code", metrics.closes),
    ],
    [
      "hubbub_slow_consumers_total",
      "counter",
      "Connections dropped for reading too slowly.",
      one(metrics.slowConsumers),
    ],
    [
      "hubbub_messages_stored_total",
      "counter",
      "Chat messages stored in the channel history.",
      one(metrics.messagesStored),
    ],
    [
      "hubbub_history_writes_total",
      "counter",
      "Writes to the history store; messages stored ÷ writes is the batch size.",
      one(metrics.historyWrites),
    ],
    [
      "hubbub_history_failures_total",
      "counter",
      "Chat messages delivered live but not stored (history store failed or unreachable).",
      one(metrics.historyFailures),
    ],
    [
      "hubbub_history_busy_total",
      "counter",
      "History writes put off (and retried 1 ms later) while the checkpointer held the store's lock.",
      one(metrics.historyBusy),
    ],
    [
      "hubbub_rate_limited_total",
      "counter",
      "Frames refused by a rate limit.",
      one(metrics.rateLimited),
    ],
    [
      "hubbub_internal_errors_total",
      "counter",
      "Bugs caught in socket callbacks.",
      one(metrics.internalErrors),
    ],
    [
      "hubbub_accept_errors_total",
      "counter",
      "Listener failures (e.g. out of file descriptors).",
      one(metrics.acceptErrors),
    ],
    [
      "hubbub_cluster_up",
      "gauge",
      "1 while the cluster engine is connected.",
      one(gauges.clusterUp),
    ],
    ["hubbub_cluster_nodes", "gauge", "Other nodes seen alive.", one(gauges.clusterNodes)],
    [
      "hubbub_cluster_remote_sessions",
      "gauge",
      "Sessions of other nodes that are in a channel here.",
      one(gauges.clusterRemoteSessions),
    ],
    ...(gauges.clusterUp === undefined ? [] : clusterFamilies(metrics.cluster, one, labelled)),
    [
      "process_resident_memory_bytes",
      "gauge",
      "Resident memory size in bytes.",
      one(gauges.residentBytes),
    ],
    [
      "process_start_time_seconds",
      "gauge",
      "Start time of the process since unix epoch in seconds.",
      one(build.startTimeSeconds),
    ],
  ];
  const lines: string[] = [];
  for (const [name, type, help, samples] of families) {
    if (samples.length === 0 && type === "gauge") continue; // a gauge the runtime cannot tell
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
  }
  return lines.join("\n") + "\n";
}

/** Escapes a label value as the text format requires (backslash, quote, newline). */
function labelValue(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}
