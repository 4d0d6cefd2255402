/**
 * hubbub's own JavaScript per message in rooms of 10 (issue 17), without
 * sockets: 10,000 in-process sessions on fake sockets, driven through the
 * app as the Deno adapter drives it (`connection.message(text)`, the
 * history flushed after each batch of reads, the hub's timers run). What
 * a message costs here is what hubbub adds to the runtime's own work; the
 * reference, measured in the same run, is a naive loop doing what the
 * naive Deno server does per message (parse it, send it to each member).
 *
 * Usage: deno run -A bench/hot_path.ts [--store sqlite|memory] [--messages N] [--rounds R]
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { Connection } from "../lib/app.ts";
import type { Socket } from "../lib/core/socket.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    store: { type: "string", default: "sqlite" },
    messages: { type: "string", default: "200000" },
    rounds: { type: "string", default: "5" },
    clients: { type: "string", default: "10000" },
    room: { type: "string", default: "10" },
    /** Messages read per turn of the event loop (what one batch of socket reads brings). */
    burst: { type: "string", default: "20" },
    /** Another checkout of hubbub (e.g. a git worktree of an earlier commit), measured in turns. */
    against: { type: "string" },
  },
});
const CLIENTS = Number(values.clients);
const ROOM = Number(values.room);
const MESSAGES = Number(values.messages);
const BURST = Number(values.burst);
const HOST = "127.0.0.1:8000";

/** Counts what it is sent; its backlog is read as the runtime's would be (a getter call). */
class FakeSocket implements Socket {
  frames = 0;
  chars = 0;
  send(text: string) {
    this.frames++;
    this.chars += text.length;
  }
  close() {}
  get bufferedAmount() {
    return 0;
  }
}

/** CPU seconds of this process's main thread (utime + stime; Linux), where hubbub's JS runs. */
function mainThreadCpu(): number {
  const stat = Deno.readTextFileSync(`/proc/self/task/${Deno.pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The parts of one checkout of hubbub that a run needs. */
async function load(root: string) {
  const url = (path: string) => new URL(path, `file://${root.replace(/\/?$/, "/")}`).href;
  return {
    createApp: (await import(url("lib/app.ts")))
      .createApp as typeof import("../lib/app.ts").createApp,
    parseConfig: (await import(url("lib/config.ts")))
      .parseConfig as typeof import("../lib/config.ts").parseConfig,
    systemClock: (await import(url("lib/core/clock.ts"))).systemClock,
    DIALECTS: (await import(url("lib/dialects/index.ts"))).DIALECTS,
    silentLogger: (await import(url("lib/log.ts"))).silentLogger,
    afterIo: (await import(url("lib/runtime/deno.ts"))).denoRuntime.afterIo,
    openDataDir: (await import(url("lib/store/open.ts")))
      .openDataDir as typeof import("../lib/store/open.ts").openDataDir,
  };
}
type Hubbub = Awaited<ReturnType<typeof load>>;

async function hubbub(
  { createApp, parseConfig, systemClock, DIALECTS, silentLogger, afterIo, openDataDir }: Hubbub,
): Promise<{ perMessageUs: number; frames: number }> {
  const dataDir = values.store === "sqlite" ? await Deno.makeTempDir() : "none";
  const parsed = parseConfig(
    [
      ...["--data-dir", dataDir, "--rate-limit", "1000000", "--rate-burst", "1000000"],
      ...["--max-connections", "200000", "--max-connections-per-ip", "200000"],
      ...["--connect-rate", "1000000", "--login-timeout", "600"],
    ],
    {},
    DIALECTS,
  );
  if (parsed.kind !== "config") throw new Error("bad config");
  const store = dataDir === "none" ? undefined : openDataDir(dataDir);
  if (store !== undefined && !store.ok) throw new Error(store.message);
  const app = createApp(parsed.config, {
    clock: systemClock,
    version: "bench",
    afterIo,
    dialects: DIALECTS,
    log: silentLogger,
    store: store?.store,
  });
  const sockets: FakeSocket[] = [];
  const connections: Connection[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    const upgrade = await app.fetch(
      new Request(`http://${HOST}/ws`, { headers: { upgrade: "websocket", host: HOST } }),
      { ip: "127.0.0.1" },
    );
    if (upgrade instanceof Response) throw new Error(`refused: ${upgrade.status}`);
    const socket = new FakeSocket();
    const connection = app.open(socket, upgrade);
    connection.message(`{"type":"login","name":"u${i}"}`);
    connection.message(`{"type":"join","channel":"r${Math.floor(i / ROOM)}"}`);
    sockets.push(socket);
    connections.push(connection);
    if (i % 100 === 0) await turn();
  }
  await turn();
  const frames = () => sockets.reduce((sum, s) => sum + s.frames, 0);
  const run = async (count: number) => {
    let sender = 0;
    for (let sent = 0; sent < count;) {
      for (let i = 0; i < BURST; i++, sent++) {
        const at = sender;
        sender = (sender + ROOM + 1) % CLIENTS; // another room each time
        connections[at].message(
          `{"type":"broadcast","channel":"r${Math.floor(at / ROOM)}","text":"${at}:${sent}:${
            "x".repeat(80)
          }"}`,
        );
      }
      await turn();
    }
    await turn();
    await turn();
  };
  await run(MESSAGES / 4); // warm-up
  const before = frames();
  const start = mainThreadCpu();
  await run(MESSAGES);
  const elapsed = (mainThreadCpu() - start) * 1000;
  const delivered = frames() - before;
  await app.stop();
  if (dataDir !== "none") await Deno.remove(dataDir, { recursive: true });
  return { perMessageUs: elapsed * 1000 / MESSAGES, frames: delivered / MESSAGES };
}

/** What the naive server does per message: parse it, send it to the room's other members. */
async function naive(): Promise<number> {
  const sockets = Array.from({ length: CLIENTS }, () => new FakeSocket());
  const rooms = new Map<string, Set<FakeSocket>>();
  for (let i = 0; i < CLIENTS; i++) {
    const room = `r${Math.floor(i / ROOM)}`;
    if (!rooms.has(room)) rooms.set(room, new Set());
    rooms.get(room)!.add(sockets[i]);
  }
  const run = async (count: number) => {
    let sender = 0;
    for (let sent = 0; sent < count;) {
      for (let i = 0; i < BURST; i++, sent++) {
        const at = sender;
        sender = (sender + ROOM + 1) % CLIENTS;
        const text = `${at}:${sent}:${"x".repeat(80)}`;
        const members = rooms.get(`r${Math.floor(at / ROOM)}`)!;
        for (const socket of members) {
          if (socket.bufferedAmount < 1 << 20) socket.send(text);
        }
      }
      await turn();
    }
  };
  await run(MESSAGES / 4);
  const start = mainThreadCpu();
  await run(MESSAGES);
  return (mainThreadCpu() - start) * 1e6 / MESSAGES;
}

const here = await load(new URL("../", import.meta.url).pathname);
const other = values.against === undefined ? undefined : await load(values.against);
const own: number[] = [];
const otherOwn: number[] = [];
for (let round = 0; round < Number(values.rounds); round++) {
  const reference = await naive();
  const ours = await hubbub(here);
  own.push(ours.perMessageUs - reference);
  let line = `round ${round + 1}: naive ${reference.toFixed(2)} µs/message; hubbub ${
    ours.perMessageUs.toFixed(2)
  } µs (${ours.frames.toFixed(2)} frames), its own ${own.at(-1)!.toFixed(2)} µs`;
  if (other !== undefined) {
    const theirs = await hubbub(other);
    otherOwn.push(theirs.perMessageUs - reference);
    line += `; --against ${theirs.perMessageUs.toFixed(2)} µs, its own ${
      otherOwn.at(-1)!.toFixed(2)
    } µs`;
  }
  console.log(line);
}
const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
console.log(`median of hubbub's own: ${median(own).toFixed(2)} µs/message`);
if (other !== undefined) {
  console.log(`median of --against's own: ${median(otherOwn).toFixed(2)} µs/message`);
}
