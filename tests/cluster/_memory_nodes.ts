/**
 * Nodes in one process on one memory cluster (lib/cluster/engine.ts), sharing
 * a manual clock so that leases, retries and history ages move when a test
 * says, not after real seconds.
 *
 * @module
 */
import type { Config } from "../../lib/config.ts";
import { createMemoryCluster, type Engine, type MemoryCluster } from "../../lib/cluster/engine.ts";
import { createManualClock, type ManualClock } from "../../lib/core/clock.ts";
import type { Dialect } from "../../lib/dialects/dialect.ts";
import { startServer, type TestServer } from "../_helpers.ts";

/** The nodes, their engines, the cluster and its clock; disposed together. */
export interface MemoryNodes extends AsyncDisposable {
  readonly nodes: TestServer[];
  readonly engines: Engine[];
  readonly cluster: MemoryCluster;
  readonly clock: ManualClock;
}

/** Starts `count` nodes (`node0`, `node1`, …) with `config` over the test defaults. */
export function startMemoryNodes(
  { count = 2, config = {}, history, dialects }: {
    count?: number;
    config?: Partial<Config>;
    /** The shared log's limits (the cluster's defaults otherwise). */
    history?: { maxPerChannel: number; ttlMs: number };
    dialects?: readonly Dialect[];
  } = {},
): MemoryNodes {
  const clock = createManualClock(Date.UTC(2026, 0, 1));
  const cluster = createMemoryCluster({ history, clock });
  const engines = Array.from({ length: count }, () => cluster.engine());
  // The manual clock refills no rate limit: the burst covers a whole test.
  const settings = { rateBurst: 100_000, idleTimeout: 0, ...config };
  const nodes = engines.map((engine, i) =>
    startServer(settings, { engine, nodeId: `node${i}`, clock, dialects })
  );
  return {
    nodes,
    engines,
    cluster,
    clock,
    async [Symbol.asyncDispose]() {
      for (const node of nodes) await node[Symbol.asyncDispose]();
    },
  };
}
