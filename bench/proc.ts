/**
 * What /proc says about the server and the cores: CPU time, RSS, per-core
 * busy time and the bytes queued on the server's sockets.
 *
 * @module
 */
import { output } from "./processes.ts";

const CLK_TCK = Number(await output("getconf", ["CLK_TCK"]) ?? "100");

/** The server's and the cores' counters at one moment. */
export interface Sample {
  at: number;
  /** The server's CPU time, in seconds. */
  serverCpu: number;
  rssKiB: number;
  /** Per core: [busy, total] jiffies. */
  cores: [number, number][];
}

/** Reads the counters of the server `pid` and of every core. */
export function sample(pid: number): Sample {
  const at = performance.now();
  let serverCpu = NaN, rssKiB = NaN;
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    serverCpu = (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
  } catch {
    // The server died; the figures say so as NaN.
  }
  const cores: [number, number][] = [];
  for (const line of Deno.readTextFileSync("/proc/stat").split("\n")) {
    const match = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!match) continue;
    const v = match[2].split(/\s+/).map(Number);
    const idle = v[3] + v[4];
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    cores[Number(match[1])] = [total - idle, total];
  }
  return { at, serverCpu, rssKiB, cores };
}

/**
 * Bytes waiting in the kernel on the server's connections, from /proc/net/tcp:
 * `toGenerator` is written by the server but not yet read by the generator
 * (in the clients' receive queues, or held in the server's send queues by a
 * full receive window); `toServer` is sent by the generator but not yet read
 * by the server. Bytes the server has not written yet are in its own memory,
 * where only its RSS shows them.
 */
export function socketQueues(port: number): { toGenerator: number; toServer: number } {
  const portHex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  let toGenerator = 0, toServer = 0;
  let text = "";
  try {
    text = Deno.readTextFileSync("/proc/net/tcp");
  } catch {
    return { toGenerator: NaN, toServer: NaN };
  }
  for (const line of text.split("\n")) {
    // sl local rem st tx_queue:rx_queue ...; addresses are little-endian hex.
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || f[3] !== "01") continue; // established only
    const [tx, rx] = f[4].split(":").map((h) => parseInt(h, 16));
    if (f[1].endsWith(portHex) && f[1].startsWith("0100007F")) {
      toGenerator += tx; // the server's send queue: the client's window is full
      toServer += rx;
    } else if (f[2].endsWith(portHex) && f[1].slice(2, 8) === "01007F") {
      toGenerator += rx; // a client's receive queue: the generator has not read it
      toServer += tx;
    }
  }
  return { toGenerator, toServer };
}

/** The server's CPU use between two samples, in cores (1 = one core all the time). */
export const cpuBetween = (a: Sample, b: Sample) =>
  (b.serverCpu - a.serverCpu) / ((b.at - a.at) / 1000);

/** How busy `core` was between two samples (0..1), whoever kept it busy (softirqs included). */
export function coreBusy(a: Sample, b: Sample, core: number): number {
  const [busyA, totalA] = a.cores[core] ?? [0, 0];
  const [busyB, totalB] = b.cores[core] ?? [0, 0];
  return totalB > totalA ? (busyB - busyA) / (totalB - totalA) : NaN;
}
