/**
 * Joins with history: how many `join` round trips that each bring back 50
 * messages of history one server answers per second, with their latency.
 *
 * Each client is alone in a channel that already holds 100 messages; it
 * leaves and joins again with `"history":50`, as soon as its last `joined`
 * came (a closed loop: the rate is what the server sustains with that many
 * joins in flight). Every `joined` is checked to carry the 50 messages.
 *
 * The servers compared (hubbub with SQLite and with memory) are started
 * side by side, each with its own idle load generator, and take turns round
 * by round, so that whatever else the machine does meanwhile hits both.
 *
 * @module
 */
import { fmtMs, pct, progress, sleep } from "./format.ts";
import { Generator, type Ready, type StepResult } from "./generator.ts";
import { FOREIGN, SOURCES } from "./options.ts";
import { coreBusy, cpuBetween, type Sample, sample } from "./proc.ts";
import type { JoinScenario } from "./scenarios.ts";
import { type Server, startServer, stopServer, type Target } from "./servers.ts";

/** What the generator reports for one round of rejoins. */
export interface JoinRound {
  seconds: number;
  clients: number;
  joins: number;
  joinsPerSec: number;
  p50Us: number | null;
  p99Us: number | null;
  maxUs: number;
  /** The fewest and most messages one `joined` carried. */
  minMessages: number | null;
  maxMessages: number;
  /** Joins still unanswered 10 s after the window. */
  outstanding: number;
  errors: number;
  firstError: string;
  closed: number;
  genCpu: number;
  // Filled in here:
  serverCpu: number;
  rssKiB: number;
  /** The largest share of a core that processes other than ours took during the round. */
  foreign: number;
}

/** One server through the joins scenario. */
export interface JoinRun {
  target: Target;
  rounds: JoinRound[];
  /** The round with the median rate. */
  median?: JoinRound;
  error?: string;
}

/** A server with its clients in their channels, ready for rounds. */
interface Session {
  run: JoinRun;
  server?: Server;
  gen?: Generator;
}

/**
 * Runs the servers through the joins scenario side by side, taking turns
 * round by round; a failure is kept in its server's run, not thrown.
 */
export async function runJoins(
  targets: Target[],
  sc: JoinScenario,
): Promise<Map<string, JoinRun>> {
  const sessions: Session[] = targets.map((target) => ({ run: { target, rounds: [] } }));
  try {
    for (const session of sessions) await guarded(session, () => open(session, sc));
    for (let round = 0; round <= sc.rounds; round++) {
      for (const session of sessions) {
        await guarded(session, async () => {
          if (round === 0) return void await measure(session, sc, " (warm-up)");
          // As a fan-out step: a round that other processes disturbed is tried again, twice at most.
          for (let attempt = 0;; attempt++) {
            const result = await measure(session, sc, "");
            if (result.foreign <= FOREIGN || attempt === 2) {
              return void session.run.rounds.push(result);
            }
            progress("    (repeating the round: the machine is busy with something else)");
            await sleep(3000);
          }
        });
      }
    }
  } finally {
    for (const { server, gen } of sessions) {
      await gen?.quit();
      if (server) await stopServer(server);
    }
  }
  for (const { run } of sessions) {
    const sorted = run.rounds.slice().sort((a, b) => a.joinsPerSec - b.joinsPerSec);
    run.median = sorted[Math.floor((sorted.length - 1) / 2)];
  }
  return new Map(sessions.map(({ run }) => [run.target.id, run]));
}

/** Runs `work` unless the session failed already; a failure is recorded in its run. */
async function guarded(session: Session, work: () => Promise<void>) {
  if (session.run.error !== undefined) return;
  try {
    await work();
  } catch (error) {
    session.run.error = (error as Error).message;
    progress(`    ${session.run.target.label}: error: ${session.run.error}`);
  }
}

/** Starts the server, connects the clients and fills their channels. */
async function open(session: Session, sc: JoinScenario) {
  const { target } = session.run;
  progress(`  ${target.label}: ${sc.clients} clients, ${sc.fill} messages in each channel`);
  const server = session.server = await startServer(target);
  const gen = session.gen = new Generator();
  await sleep(500);
  await gen.command({
    cmd: "setup",
    host: "127.0.0.1",
    port: server.port,
    path: target.path,
    protocol: target.protocol,
    clients: sc.clients,
    roomSize: 1,
    sendersPerRoom: 1,
    sources: SOURCES,
    timeoutMs: 30_000,
  });
  const ready = await gen.event<Ready>("ready", 60_000);
  if (ready.ready < sc.clients) throw new Error(`${ready.ready}/${sc.clients} clients ready`);
  // The history: chat-sized lines (about 100 characters of text each), all of them delivered.
  const total = sc.fill * sc.clients;
  await gen.command({ cmd: "step", rate: total, seconds: 1, drainMs: 10_000, padTo: 100 });
  const filled = await gen.event<StepResult>("step", 60_000);
  if (filled.sent < total || filled.delivered < filled.expected) {
    throw new Error(`filling the channels: ${filled.sent} sent, ${filled.delivered} delivered`);
  }
}

/** One round of rejoins on one server. */
async function measure(session: Session, sc: JoinScenario, label: string): Promise<JoinRound> {
  const { run } = session;
  const server = session.server!, gen = session.gen!;
  const marks: Record<string, Sample> = {};
  gen.onMark = (at) => marks[at] = sample(server.pid);
  await gen.command({ cmd: "rejoin", seconds: sc.seconds, history: sc.history });
  const round = await gen.event<JoinRound>("rejoin", sc.seconds * 1000 + 30_000);
  round.serverCpu = cpuBetween(marks.start, marks.end);
  round.rssKiB = marks.end.rssKiB;
  round.foreign = Math.max(
    coreBusy(marks.start, marks.end, 0) - round.serverCpu,
    coreBusy(marks.start, marks.end, 1) - round.genCpu,
    0,
  );
  progress(
    `    ${run.target.label}: ${Math.round(round.joinsPerSec)} joins/s, p50 ${
      fmtMs(round.p50Us)
    } p99 ${fmtMs(round.p99Us)}, ${round.minMessages}–${round.maxMessages} messages each, server ${
      pct(round.serverCpu)
    } gen ${pct(round.genCpu)}${label}${
      round.foreign > FOREIGN ? ` {other processes took ${pct(round.foreign)} of a core}` : ""
    }`,
  );
  if (round.errors > 0 || round.closed > 0 || round.outstanding > 0) {
    throw new Error(
      `${round.errors} errors (${round.firstError}), ${round.closed} closed, ` +
        `${round.outstanding} unanswered`,
    );
  }
  if (round.minMessages !== sc.history) {
    throw new Error(`a joined carried ${round.minMessages} messages, not ${sc.history}`);
  }
  return round;
}
