/**
 * The servers under test, hubbub on Deno and on Bun and the reference
 * servers: which can run here, and starting, pinning and stopping them.
 *
 * hubbub runs with a history store chosen per target: SQLite (its default)
 * in a fresh temporary data directory for each server started, removed when
 * it stops, or memory (`--data-dir none`). Bun is `$BUN` when set, else
 * `bun` on the PATH, else the one `npx -y bun@1.4.5` fetches.
 *
 * @module
 */
import { progress } from "./format.ts";
import { AGAINST, BENCH, HISTORY, ONLY_TARGETS, QUICK, ROOT, STORE_TARGETS } from "./options.ts";
import { STORE_SCENARIOS } from "./scenarios.ts";
import { Lines, output, pinned } from "./processes.ts";

/** Limits lifted so that hubbub measures fan-out, not its own protections. */
const HUBBUB_FLAGS = [
  ...["--connect-rate", "1000000", "--max-connections", "200000"],
  ...["--max-connections-per-ip", "200000", "--rate-limit", "1000000"],
  ...["--rate-burst", "1000000", "--max-channel-members", "200000"],
  ...["--login-timeout", "600", "--port", "0", "--hostname", "127.0.0.1"],
];

/**
 * The `--v8-flags=…` of `deno task start` in the deno.json text `config`:
 * hubbub on Deno runs in the benchmark with the V8 flags its users run it
 * with (deno.json's tasks and the Dockerfile carry the same ones, which
 * tests/deno_flags_test.ts checks).
 */
export function startTaskV8Flags(config: string): string[] {
  return v8FlagsIn(JSON.parse(config).tasks?.start ?? "");
}

/** The `--v8-flags=…` arguments of a shell command line. */
export const v8FlagsIn = (command: string): string[] =>
  command.split(/\s+/).filter((arg) => arg.startsWith("--v8-flags="));

/** Stands for the server's data directory in a target's command. */
const DATA_DIR = "{data-dir}";

/** The Bun this machine runs, as the README says to get it. */
const BUN_VERSION = "1.4.5";

/** A server under test and how to start it. */
export interface Target {
  id: string;
  label: string;
  /**
   * `native`: hubbub's protocol; `room`: the references' `/?room=R`
   * echo-to-room; `wsify`: hubbub's wsify dialect, one frame per message.
   */
  protocol: "native" | "room" | "wsify";
  /** The scenarios it runs, when not all. */
  scenarios?: string[];
  path: string;
  /** The command; `{data-dir}` in it stands for a fresh temporary directory. */
  command: string[];
  /** hubbub's history store: SQLite in a temporary directory, or memory. */
  store?: "sqlite" | "memory";
  /** Why it cannot run here, if it cannot. */
  unavailable?: string;
}

/** A started server. */
export interface Server {
  target: Target;
  child: Deno.ChildProcess;
  /** The process doing the serving (not a wrapper). */
  pid: number;
  port: number;
  stderr: Lines;
  /** The temporary data directory, removed when the server stops. */
  dataDir?: string;
}

/** Starts a target pinned to core 0 and waits until it says where it listens. */
export async function startServer(target: Target): Promise<Server> {
  const dataDir = target.command.some((arg) => arg.includes(DATA_DIR))
    ? await Deno.makeTempDir({ prefix: "hubbub-bench-" })
    : undefined;
  try {
    return await start(target, dataDir);
  } catch (error) {
    if (dataDir !== undefined) await Deno.remove(dataDir, { recursive: true });
    throw error;
  }
}

async function start(target: Target, dataDir: string | undefined): Promise<Server> {
  const command = target.command.map((arg) =>
    dataDir === undefined ? arg : arg.replaceAll(DATA_DIR, dataDir)
  );
  const { cmd, args } = pinned(0, command);
  const child = new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = new Lines(child.stdout);
  const stderr = new Lines(child.stderr);
  const deadline = Date.now() + 20_000;
  for (;;) {
    let line: string | null;
    try {
      line = await stdout.next(Math.max(1, deadline - Date.now()));
    } catch {
      line = null;
    }
    if (line === null) {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      throw new Error(
        `${target.label} did not say it listens:\n${[...stdout.tail, ...stderr.tail].join("\n")}`,
      );
    }
    const match = /listening on http:\/\/(\S+?):(\d+)\//.exec(line);
    if (match && !storeAsAsked(target, line)) {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      throw new Error(
        `${target.label} does not use the ${target.store} store it was started for:\n${
          [...stderr.tail, ...stdout.tail].join("\n")
        }`,
      );
    }
    if (match) {
      // Keep reading stdout so that a chatty server never blocks on a full pipe.
      (async () => {
        while (await stdout.next(1e9).catch(() => null) !== null);
      })();
      const server = {
        target,
        child,
        pid: leafPid(child.pid),
        port: Number(match[2]),
        stderr,
        dataDir,
      };
      running.add(server);
      return server;
    }
  }
}

/**
 * Whether the startup line names the store the target asks for: hubbub falls
 * back to memory when it cannot write its data directory, and a figure for
 * SQLite must not be memory's.
 */
function storeAsAsked(target: Target, line: string): boolean {
  if (target.store === undefined) return true;
  const store = /\bstore[=":]+([^\s",}]+)/.exec(line)?.[1] ?? "";
  return target.store === "memory" ? store === "memory" : store.startsWith("sqlite:");
}

/** The process under wrappers such as npx: follow only children down to the last. */
function leafPid(pid: number): number {
  for (let depth = 0; depth < 5; depth++) {
    let children: string[];
    try {
      children = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`)
        .trim().split(/\s+/)
        .filter(Boolean);
    } catch {
      return pid;
    }
    if (children.length !== 1) return pid;
    pid = Number(children[0]);
  }
  return pid;
}

/** `HUBBUB_CPU_PROF`: where hubbub on Deno writes a CPU profile (it must then exit, not be killed). */
const CPU_PROF = Deno.env.get("HUBBUB_CPU_PROF");

/** Servers started and not stopped yet: an interrupted run stops them (`stopAll`). */
const running = new Set<Server>();

/** Stops every server still running (their temporary data directories go with them). */
export async function stopAll() {
  for (const server of [...running]) await stopServer(server);
}

/** Kills a server and waits for it to exit (a profiled one is stopped with SIGTERM first). */
export async function stopServer(server: Server) {
  running.delete(server);
  if (CPU_PROF && server.target.command.includes("--cpu-prof")) {
    try {
      server.child.kill("SIGTERM");
    } catch { /* gone */ }
    const timer = setTimeout(() => {
      try {
        server.child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 30_000);
    await server.child.status;
    clearTimeout(timer);
  }
  try {
    server.child.kill("SIGKILL");
  } catch {
    // Already gone.
  }
  await server.child.status;
  if (server.dataDir !== undefined) await Deno.remove(server.dataDir, { recursive: true });
}

let bunFound: Promise<string | null> | undefined;

/**
 * The Bun executable: `$BUN`, else `bun` on the PATH, else the one npx keeps
 * in its cache (`npx -y bun@1.4.5`, fetched once); null when none runs.
 */
export function findBun(): Promise<string | null> {
  bunFound ??= (async () => {
    const asked = Deno.env.get("BUN");
    if (asked) return await output(asked, ["--version"]) !== null ? asked : null;
    if (await output("bun", ["--version"]) !== null) return "bun";
    const viaNpx = await output("npx", [
      "-y",
      `bun@${BUN_VERSION}`,
      "-e",
      "console.log(process.execPath)",
    ]);
    return viaNpx && await output(viaNpx, ["--version"]) !== null ? viaNpx : null;
  })();
  return bunFound;
}

/** The targets of this run, with the reason any of them cannot run here. */
export async function prepareTargets(): Promise<Target[]> {
  const deno = Deno.execPath();
  const bun = await findBun();
  const noBun = bun ? undefined : `no Bun: set BUN=path, put bun on the PATH, or let ` +
    `\`npx -y bun@${BUN_VERSION}\` fetch it`;
  // `checkout`: another hubbub's directory (`--against`), its own config with it.
  const onDeno = (store: "sqlite" | "memory", checkout = "") => [
    ...[deno, "run", "--allow-net", "--allow-env"],
    ...startTaskV8Flags(
      Deno.readTextFileSync(checkout ? `${checkout}/deno.json` : `${ROOT}deno.json`),
    ),
    ...(checkout ? ["--config", `${checkout}/deno.json`] : []),
    // HUBBUB_CPU_PROF=dir: a V8 CPU profile of each hubbub on Deno, written when it stops.
    ...(CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${CPU_PROF}`] : []),
    // HUBBUB_DENO_FLAGS: more flags for hubbub on Deno (e.g. --v8-flags=--perf-basic-prof for perf).
    // HUBBUB_AGAINST_FLAGS: the same for the `--against` target instead, to compare flags.
    ...(Deno.env.get(checkout ? "HUBBUB_AGAINST_FLAGS" : "HUBBUB_DENO_FLAGS")?.split(" ")
      .filter(Boolean) ?? []),
    // SQLite needs to read and write its directory, and nothing else.
    ...(store === "sqlite" ? [`--allow-read=${DATA_DIR}`, `--allow-write=${DATA_DIR}`] : []),
    ...[
      checkout ? `${checkout}/main.ts` : "main.ts",
      ...HUBBUB_FLAGS,
      ...["--data-dir", store === "sqlite" ? DATA_DIR : "none"],
    ],
  ];
  const onBun = (store: "sqlite" | "memory") => [
    bun ?? "bun",
    "main.ts",
    ...HUBBUB_FLAGS,
    ...["--data-dir", store === "sqlite" ? DATA_DIR : "none"],
  ];
  const targets: Target[] = [
    {
      id: "hubbub-deno",
      label: "hubbub on Deno",
      protocol: "native",
      path: "/ws",
      store: "sqlite",
      command: onDeno("sqlite"),
    },
    ...(AGAINST === undefined ? [] : [{
      // `--against DIR`: another checkout's hubbub, to compare two builds (with `--paired`).
      id: "hubbub-deno-against",
      label: `hubbub on Deno from ${AGAINST}`,
      protocol: "native" as const,
      path: "/ws",
      store: "sqlite" as const,
      command: onDeno("sqlite", AGAINST),
    }]),
    {
      // The same server with history in memory: what storing on disk costs.
      id: "hubbub-deno-memory",
      label: "hubbub on Deno, memory store",
      protocol: "native",
      path: "/ws",
      store: "memory",
      scenarios: STORE_SCENARIOS,
      command: onDeno("memory"),
    },
    {
      id: "hubbub-bun",
      label: "hubbub on Bun",
      protocol: "native",
      path: "/ws",
      store: "sqlite",
      command: onBun("sqlite"),
      unavailable: noBun,
    },
    {
      id: "hubbub-bun-memory",
      label: "hubbub on Bun, memory store",
      protocol: "native",
      path: "/ws",
      store: "memory",
      scenarios: STORE_SCENARIOS,
      command: onBun("memory"),
      unavailable: noBun,
    },
    {
      id: "ref-bun",
      label: "Bun server.publish (reference)",
      protocol: "room",
      path: "/",
      command: [bun ?? "bun", `${BENCH}ref_bun_publish.ts`],
      unavailable: noBun,
    },
    {
      id: "ref-node",
      label: "Node ws (reference)",
      protocol: "room",
      path: "/",
      command: ["node", `${BENCH}ref_node_ws.mjs`],
    },
    {
      id: "ref-deno",
      label: "Deno naive (reference)",
      protocol: "room",
      path: "/",
      command: [deno, "run", "--allow-net", `${BENCH}ref_deno_naive.ts`],
    },
    {
      // Deno's one-frame-per-message path (issue 17): nothing to coalesce, one send per delivery.
      id: "hubbub-deno-wsify",
      label: "hubbub on Deno, wsify dialect",
      protocol: "wsify",
      path: "/compat/wsify/ws",
      store: "sqlite",
      command: onDeno("sqlite"),
      scenarios: ["one-room-1k"],
    },
    {
      // Dialect clients get one WebSocket frame per message, as the references' clients do.
      id: "hubbub-bun-wsify",
      label: "hubbub on Bun, wsify dialect",
      protocol: "wsify",
      path: "/compat/wsify/ws",
      store: "sqlite",
      command: onBun("sqlite"),
      scenarios: ["one-room-1k"],
      unavailable: noBun,
    },
  ];
  const chosen = targets.filter((t) =>
    ONLY_TARGETS ? ONLY_TARGETS.includes(t.id) : HISTORY
      ? STORE_TARGETS.includes(t.id)
      // A quick run leaves the store comparison to `--history`: it stays about 2 minutes.
      : !(QUICK && t.store === "memory")
  );
  const byId = (id: string) => chosen.find((t) => t.id === id);
  // The Node reference needs ws; hubbub on Bun needs the npm packages it imports.
  const node = byId("ref-node");
  if (node && !exists(`${BENCH}node/node_modules/ws/package.json`)) {
    progress("installing ws for the Node reference (npm ci --prefix bench/node)");
    const args = ["ci", "--prefix", `${BENCH}node`, "--no-audit", "--no-fund"];
    if (await output("npm", args) === null) {
      node.unavailable = "npm ci --prefix bench/node failed";
    }
  }
  if (bun && !exists(`${ROOT}node_modules/zod/package.json`)) {
    progress(
      "installing hubbub's packages for Bun (bun install --frozen-lockfile)",
    );
    await output(bun, ["install", "--frozen-lockfile"]);
  }
  // hubbub on Bun runs only once it starts and says it listens.
  const onBunTargets = chosen.filter((t) => t.command[0] === bun && t.id.startsWith("hubbub"));
  if (bun && onBunTargets.length > 0) {
    try {
      await stopServer(await startServer(onBunTargets[0]));
    } catch (error) {
      const why = `\`bun main.ts\` does not start: ${
        (error as Error).message.split("\n").slice(-3).join(" ")
      }`;
      for (const t of onBunTargets) t.unavailable = why;
    }
  }
  return chosen;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
