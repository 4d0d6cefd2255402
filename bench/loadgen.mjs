/**
 * The benchmark's load generator, for Node, driven by bench/run.ts over
 * stdin/stdout (one JSON object per line each way).
 *
 * It speaks WebSocket itself over `node:net` (handshake, masked client frames,
 * server frames parsed incrementally out of one shared read buffer) because a
 * client built on a WebSocket library halves the rate one core can measure.
 * Everything on the receive path works on bytes: no string is decoded and no
 * JSON is parsed for a delivered message.
 *
 * Two wire protocols:
 * - `native` (hubbub): on open, `login` and `join` are sent; the client is
 *   ready at `joined`. Messages are sent as `broadcast` commands and arrive as
 *   `message` lines, several to a frame (split on `\n`).
 * - `room` (the reference servers): `/?room=R` joins at the upgrade; every
 *   text frame sent is delivered to the room, one frame per message.
 * - `wsify` (hubbub's wsify dialect): on open, `join` the room and a private
 *   channel, then `broadcast` "ready" to the private one; the client is ready
 *   when that comes back (so its join has been applied). Messages are
 *   `broadcast` commands; each arrives as its JSON-quoted content, one frame
 *   per message.
 *
 * A message's text is `slot:seq:sentAtUs[:padding]`: the sender's slot in its
 * room, its own sequence number, and the time the open-loop schedule meant
 * it to be sent (µs since this process started). From these every receiver
 * measures latency and notices loss and reordering per sender.
 *
 * Commands (stdin) and what they answer (stdout):
 * - `{"cmd":"setup",...}`: opens every client at once (a connect storm),
 *   joins them, then `{"ev":"ready",...}` with the storm's figures. With a
 *   `senderPort`, the senders connect there and everyone else to `port`.
 * - `{"cmd":"step","rate":R,"seconds":T,"drainMs":D}`: sends R messages/s for
 *   T s, spread over the senders; `{"ev":"mark","at":"start"|"end"}` brackets
 *   the sending window (so the runner can sample the server's CPU), then
 *   `{"ev":"step",...}` once everything sent has arrived or D ms have passed.
 * - `{"cmd":"settle","quietMs":Q,"maxMs":M}`: waits until nothing has arrived
 *   for Q ms; `{"ev":"settled",...}`.
 * - `{"cmd":"rejoin","seconds":T,"history":H}` (native): every ready client
 *   leaves its room and joins it again asking for H messages of history,
 *   again as soon as its `joined` arrives (a closed loop), for T s between
 *   two marks; then `{"ev":"rejoin",...}`: joins completed in the window,
 *   their round-trip latency, and how many messages each `joined` carried.
 * - `{"cmd":"quit"}`: closes everything and exits.
 */
import { Buffer } from "node:buffer";
import net from "node:net";
import { performance } from "node:perf_hooks";
import process from "node:process";
import readline from "node:readline";

// ---------------------------------------------------------------- latency histogram

/**
 * Latencies in µs, log-linear: exact below 64 µs, then 32 buckets per power
 * of two (3% wide). Recording is an array increment, cheap enough to do for
 * every delivery.
 */
const HIST_SIZE = 64 + 27 * 32;
const hist = new Float64Array(HIST_SIZE);
let histMax = 0;

function bucketOf(us) {
  if (us < 64) return us < 0 ? 0 : us;
  const e = 31 - Math.clz32(us);
  return 64 + (e - 6) * 32 + ((us >>> (e - 5)) & 31);
}

/** The middle of a bucket, in µs. */
function valueOf(bucket) {
  if (bucket < 64) return bucket;
  const e = ((bucket - 64) >>> 5) + 6;
  const sub = (bucket - 64) & 31;
  return ((32 + sub) * 2 ** (e - 5)) + 2 ** (e - 6);
}

function percentile(q) {
  let total = 0;
  for (let i = 0; i < HIST_SIZE; i++) total += hist[i];
  if (total === 0) return null;
  const want = Math.ceil(total * q);
  let seen = 0;
  for (let i = 0; i < HIST_SIZE; i++) {
    seen += hist[i];
    if (seen >= want) return valueOf(i);
  }
  return histMax;
}

// ---------------------------------------------------------------- run state

const T0 = performance.now();
/** µs since this process started, as the message texts carry it. */
const nowUs = () => Math.round((performance.now() - T0) * 1000);

let config;
let protocolNative = true;
/** The wsify dialect: one frame per message, its text JSON-quoted. */
let protocolWsify = false;
/** Every client, by index. */
let clients = [];
/** The senders, in the order the open-loop schedule takes turns. */
let senders = [];
/** Senders per room (slots 0..S-1 of each room send); lastSeq has S entries per client. */
let slotsPerRoom = 0;
/** Per client and sender slot: the last sequence number received, -1 before any. */
let lastSeq;
/** Per room: members that are ready, i.e. how many deliveries one of its messages makes. */
let roomReady;

const stats = {
  /** Deliveries (message lines or frames) received since setup. */
  delivered: 0,
  /** Deliveries the messages sent so far should make. */
  expected: 0,
  /** Deliveries received inside the current sending window. */
  inWindow: 0,
  windowOpen: false,
  outOfOrder: 0,
  /** Sequence numbers skipped when received (a loss, unless they show up later). */
  gaps: 0,
  /** Error frames from the server (native), e.g. rate_limited. */
  errors: 0,
  firstError: "",
  /** Lines we could not make sense of. */
  unparsed: 0,
  /** Clients whose socket closed after they were ready. */
  closedAfterReady: 0,
  closeCodes: {},
  lastArrival: 0,
  /** Socket reads and the bytes they returned, to tell kernel cost from ours. */
  reads: 0,
  bytes: 0,
};

function emit(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

// ---------------------------------------------------------------- frames out

/** A masked text frame. The mask key is zero: servers accept any key, and XOR with 0 is a copy. */
function textFrame(text) {
  const length = text.length; // ASCII only
  const header = length < 126 ? 6 : 8;
  const frame = Buffer.allocUnsafe(header + length);
  frame[0] = 0x81;
  if (length < 126) {
    frame[1] = 0x80 | length;
  } else {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  }
  frame.writeUInt32BE(0, header - 4);
  frame.latin1Write(text, header);
  return frame;
}

function controlFrame(opcode, payload) {
  const frame = Buffer.alloc(6 + payload.length);
  frame[0] = 0x80 | opcode;
  frame[1] = 0x80 | payload.length;
  payload.copy(frame, 6);
  return frame;
}

// ---------------------------------------------------------------- frames in

const QUOTE = 0x22;
const COLON = 0x3a;
const NEWLINE = 0x0a;
const TEXT_KEY = Buffer.from('"text":"');

/** What `parseText` read: the sender's slot, its sequence number, the planned send time. */
let textSlot = 0, textSeq = 0, textSent = 0;

/**
 * Reads `slot:seq:sentAtUs` starting at `p`; returns the position after it,
 * or -1 when the bytes are not that.
 */
function parseText(buf, p, end) {
  let c, slot = 0, seq = 0, sent = 0;
  const start = p;
  while (p < end && (c = buf[p]) >= 48 && c <= 57) {
    slot = slot * 10 + c - 48, p++;
  }
  if (p === start || p >= end || buf[p++] !== COLON) return -1;
  const seqAt = p;
  while (p < end && (c = buf[p]) >= 48 && c <= 57) seq = seq * 10 + c - 48, p++;
  if (p === seqAt || p >= end || buf[p++] !== COLON) return -1;
  const sentAt = p;
  while (p < end && (c = buf[p]) >= 48 && c <= 57) {
    sent = sent * 10 + c - 48, p++;
  }
  if (p === sentAt || slot >= slotsPerRoom) return -1;
  textSlot = slot;
  textSeq = seq;
  textSent = sent;
  return p;
}

/** Counts the message `parseText` read: its latency, and its place in its sender's sequence. */
function record(client, arrivedUs) {
  stats.delivered++;
  if (stats.windowOpen) stats.inWindow++;
  const latency = arrivedUs - textSent;
  hist[bucketOf(latency)]++;
  if (latency > histMax) histMax = latency;
  const i = client.trackBase + textSlot;
  const last = lastSeq[i];
  if (textSeq === last + 1) lastSeq[i] = textSeq;
  else if (textSeq > last) {
    stats.gaps += textSeq - last - 1;
    lastSeq[i] = textSeq;
  } else stats.outOfOrder++;
}

/**
 * A hubbub `message` line starting at `s`, laid out as hubbub writes it:
 * `{"type":"message","channel":C,"from":N,"text":"slot:seq:t","id":I,"ts":
 * "<24 chars>"}`. Walks only the variable parts, checks that the line ends
 * where that layout says (at `\n`, or at the end of its frame), counts it
 * and returns that end; -1 (nothing counted) when the layout is not that
 * one, and the caller takes the general path, which searches.
 */
function nativeMessageFast(client, buf, s, end, frameEnds, arrivedUs) {
  let p = s + 29 + client.roomBytes; // past {"type":"message","channel":"<room>
  if (p + 10 >= end || buf[p] !== QUOTE || buf[p + 1] !== 0x2c) return -1;
  p += 10; // ","from":"
  while (p < end && buf[p] !== QUOTE) p++;
  p += 10; // ","text":"
  if (p >= end || buf[p - 2] !== COLON) return -1;
  p = parseText(buf, p, end);
  if (p === -1) return -1;
  while (p < end && buf[p] !== QUOTE) p++; // past any padding
  p += 8; // ","id":"
  while (p < end && buf[p] !== QUOTE) p++;
  p += 8 + 24 + 2; // ","ts":"2026-11-23T12:00:00.250Z"}
  if (p > end || buf[p - 1] !== 0x7d) return -1;
  if (p < end ? buf[p] !== NEWLINE : !frameEnds) return -1;
  record(client, arrivedUs);
  return p;
}

/**
 * The first `\n` in buf[s, e), or -1. Not `buf.indexOf`: that searches on
 * to the end of the read buffer, which for one-line frames makes every line
 * cost a whole read.
 */
function newlineIn(buf, s, e) {
  for (let p = s; p < e; p++) if (buf[p] === NEWLINE) return p;
  return -1;
}

/** Any complete native line in buf[s, e): a message (searched for), or a reply, presence or error. */
function nativeLine(client, buf, s, e, arrivedUs) {
  const kind = buf[s + 9]; // the first letter of the type, after {"type":"
  if (kind === 0x6d) { // message
    const at = buf.subarray(s, e).indexOf(TEXT_KEY);
    if (at !== -1 && parseText(buf, s + at + 8, e) !== -1) {
      record(client, arrivedUs);
    } else stats.unparsed++;
  } else if (kind === 0x6a) { // joined
    if (!client.ready) markReady(client);
    else if (client.rejoinAt > 0) rejoined(client, buf, s, e);
  } else if (kind === 0x65) { // error
    stats.errors++;
    if (stats.firstError === "") {
      stats.firstError = buf.latin1Slice(s, Math.min(e, s + 200));
    }
  }
  // hello, welcome, presence: nothing to count.
}

/** Bytes of a message that spans reads, kept until its end arrives. */
function carryAppend(client, buf, s, e) {
  const need = client.carryLen + (e - s);
  if (client.carry === null || client.carry.length < need) {
    const grown = Buffer.allocUnsafe(Math.max(256, need * 2));
    if (client.carry !== null) client.carry.copy(grown, 0, 0, client.carryLen);
    client.carry = grown;
  }
  buf.copy(client.carry, client.carryLen, s, e);
  client.carryLen = need;
}

/** The message kept by `carryAppend`, now complete. */
function carriedMessage(client, arrivedUs) {
  const { carry, carryLen } = client;
  client.carryLen = 0;
  if (protocolNative) nativeLine(client, carry, 0, carryLen, arrivedUs);
  else roomMessage(client, carry, 0, carryLen, arrivedUs);
}

/** One whole message of the one-frame-per-message protocols, in buf[s, e). */
function roomMessage(client, buf, s, e, arrivedUs) {
  if (protocolWsify) {
    if (!client.ready) {
      if (buf.latin1Slice(s, e) === '"ready"') markReady(client);
      else stats.unparsed++;
      return;
    }
    s++; // the opening quote of the JSON string
  }
  if (parseText(buf, s, e) !== -1) record(client, arrivedUs);
  else stats.unparsed++;
}

/**
 * Text payload bytes buf[s, e) of the current frame; `frameEnds` when they
 * are its last. A message ends at `\n` (native) or at the end of its frame.
 */
function textSegment(client, buf, s, e, frameEnds, arrivedUs) {
  if (!protocolNative) {
    // One message per frame: its numbers come first, the rest is padding.
    if (client.frameStart && frameEnds) {
      roomMessage(client, buf, s, e, arrivedUs);
    } else {
      carryAppend(client, buf, s, e);
      if (frameEnds) carriedMessage(client, arrivedUs);
    }
    return;
  }
  if (client.carryLen > 0) {
    const nl = newlineIn(buf, s, e);
    if (nl === -1) {
      carryAppend(client, buf, s, e);
      if (frameEnds) carriedMessage(client, arrivedUs);
      return;
    }
    carryAppend(client, buf, s, nl);
    carriedMessage(client, arrivedUs);
    s = nl + 1;
  }
  while (s < e) {
    if (buf[s + 9] === 0x6d) {
      const at = nativeMessageFast(client, buf, s, e, frameEnds, arrivedUs);
      if (at !== -1) {
        s = at + 1;
        continue;
      }
    }
    const nl = newlineIn(buf, s, e);
    if (nl === -1) {
      if (frameEnds) nativeLine(client, buf, s, e, arrivedUs);
      else carryAppend(client, buf, s, e);
      return;
    }
    nativeLine(client, buf, s, nl, arrivedUs);
    s = nl + 1;
  }
}

/** Parses frames out of buf[s, e): headers may split across reads, payloads are streamed. */
function frames(client, buf, s, e, arrivedUs) {
  while (s < e) {
    if (client.remaining === 0 && client.headerNeed === 0) {
      // A new frame header: 2 bytes, then 0, 2 or 8 bytes of length.
      client.header[0] = buf[s++];
      client.headerLen = 1;
      client.headerNeed = 1;
      continue;
    }
    if (client.headerNeed > 0) {
      while (client.headerNeed > 0 && s < e) {
        client.header[client.headerLen++] = buf[s++];
        client.headerNeed--;
        if (client.headerNeed === 0 && client.headerLen === 2) {
          const len7 = client.header[1] & 0x7f;
          client.headerNeed = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
        }
      }
      if (client.headerNeed > 0) return;
      startFrame(client);
      if (client.remaining === 0) endFrame(client);
      continue;
    }
    const take = Math.min(client.remaining, e - s);
    client.remaining -= take;
    const ends = client.remaining === 0;
    if (client.opcode === 1 || client.opcode === 0) {
      textSegment(client, buf, s, s + take, ends && client.fin, arrivedUs);
      client.frameStart = false;
    } else {
      // Control frames (ping, close) are small: keep their payload.
      const payload = buf.subarray(s, s + take);
      client.control = client.control === null
        ? Buffer.from(payload)
        : Buffer.concat([client.control, payload]);
    }
    s += take;
    if (ends) endFrame(client);
  }
}

function startFrame(client) {
  const h = client.header;
  client.fin = (h[0] & 0x80) !== 0;
  const opcode = h[0] & 0x0f;
  if (opcode !== 0) client.opcode = opcode;
  const len7 = h[1] & 0x7f;
  client.remaining = len7 === 126
    ? h.readUInt16BE(2)
    : len7 === 127
    ? Number(h.readBigUInt64BE(2))
    : len7;
  client.frameStart = true;
  client.control = null;
}

function endFrame(client) {
  if (client.opcode === 9) { // ping: answer, or the server drops us as dead
    client.socket.write(controlFrame(0x0a, client.control ?? Buffer.alloc(0)));
  } else if (client.opcode === 8) {
    const code = client.control !== null && client.control.length >= 2
      ? client.control.readUInt16BE(0)
      : 1005;
    client.closeCode = code;
    client.socket.destroy();
  }
  client.control = null;
}

// ---------------------------------------------------------------- connections

/** One buffer every socket reads into: each read is handled before the next one starts. */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

const setup = {
  startedAt: 0,
  opened: 0,
  ready: 0,
  failed: 0,
  failures: {},
  connectMs: [],
  readyMs: [],
  lastOpenAt: 0,
  lastReadyAt: 0,
  done: null,
};

function fail(client, reason) {
  if (client.failed) return;
  client.failed = true;
  setup.failed++;
  setup.failures[reason] = (setup.failures[reason] ?? 0) + 1;
  client.socket.destroy();
  checkSetupDone();
}

function markReady(client) {
  client.ready = true;
  roomReady[client.room]++;
  setup.ready++;
  const at = performance.now();
  setup.readyMs.push(at - client.connectAt);
  setup.lastReadyAt = at;
  checkSetupDone();
}

function checkSetupDone() {
  if (setup.done !== null && setup.ready + setup.failed === clients.length) {
    const done = setup.done;
    setup.done = null;
    done();
  }
}

function onRead(client, nread, buf) {
  stats.reads++;
  stats.bytes += nread;
  const arrivedUs = nowUs();
  stats.lastArrival = arrivedUs;
  if (client.handshake !== null) {
    // Until the 101 and its blank line have arrived, bytes are HTTP.
    client.handshake += buf.latin1Slice(0, nread);
    const end = client.handshake.indexOf("\r\n\r\n");
    if (end === -1) {
      if (client.handshake.length > 8192) fail(client, "bad handshake");
      return;
    }
    const head = client.handshake.slice(0, end);
    const rest = client.handshake.length - (end + 4);
    client.handshake = null;
    if (!head.startsWith("HTTP/1.1 101")) {
      return fail(client, `HTTP ${head.slice(9, 12)}`);
    }
    const at = performance.now();
    setup.opened++;
    setup.connectMs.push(at - client.connectAt);
    setup.lastOpenAt = at;
    client.open = true;
    if (protocolNative) {
      client.socket.write(Buffer.concat([
        textFrame(`{"type":"login","name":"${client.name}"}`),
        textFrame(`{"type":"join","channel":"${client.roomName}"}`),
      ]));
    } else if (protocolWsify) {
      const join = (channel) => `{"command":"join","args":{"channel":"${channel}"}}`;
      client.socket.write(Buffer.concat([
        textFrame(join(client.roomName)),
        textFrame(join(`p${client.index}`)),
        textFrame(
          `{"command":"broadcast","args":{"channel":"p${client.index}","content":"ready"}}`,
        ),
      ]));
    } else markReady(client);
    if (rest > 0) frames(client, buf, nread - rest, nread, arrivedUs);
    return;
  }
  frames(client, buf, 0, nread, arrivedUs);
}

function connect(client) {
  const { host, path, sources } = config;
  // bench/cluster.ts puts the senders on one node and everyone else on another.
  const port = config.senderPort !== undefined && client.slot < slotsPerRoom
    ? config.senderPort
    : config.port;
  const socket = net.connect({
    host,
    port,
    localAddress: sources[client.index % sources.length],
    noDelay: true,
    onread: {
      buffer: READ_BUFFER,
      callback: (nread, buf) => onRead(client, nread, buf),
    },
  });
  client.socket = socket;
  client.connectAt = performance.now();
  socket.on("connect", () => {
    const target = protocolNative || protocolWsify ? path : `${path}?room=${client.roomName}`;
    socket.write(
      `GET ${target} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\n` +
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
        "Sec-WebSocket-Version: 13\r\n\r\n",
    );
  });
  socket.on("error", (error) => {
    if (!client.ready) fail(client, error.code ?? error.message);
  });
  socket.on("close", () => {
    if (client.ready) {
      client.ready = false;
      roomReady[client.room]--;
      stats.closedAfterReady++;
      const code = client.closeCode ?? "reset";
      stats.closeCodes[code] = (stats.closeCodes[code] ?? 0) + 1;
    } else if (!client.failed) {
      fail(client, client.closeCode ? `close ${client.closeCode}` : "closed");
    }
  });
}

async function doSetup(options) {
  config = options;
  protocolNative = options.protocol === "native";
  protocolWsify = options.protocol === "wsify";
  const { clients: n, roomSize } = options;
  const rooms = Math.ceil(n / roomSize);
  slotsPerRoom = Math.min(roomSize, options.sendersPerRoom);
  lastSeq = new Int32Array(n * slotsPerRoom).fill(-1);
  roomReady = new Int32Array(rooms);
  clients = [];
  for (let i = 0; i < n; i++) {
    const room = Math.floor(i / roomSize);
    const slot = i % roomSize;
    const roomName = `r${room}`;
    clients.push({
      index: i,
      name: `b${i}`,
      room,
      roomName,
      roomBytes: roomName.length,
      slot,
      seq: 0,
      trackBase: i * slotsPerRoom,
      socket: null,
      connectAt: 0,
      handshake: "",
      open: false,
      ready: false,
      failed: false,
      closeCode: undefined,
      header: Buffer.alloc(14),
      headerLen: 0,
      headerNeed: 0,
      remaining: 0,
      opcode: 0,
      fin: true,
      frameStart: true,
      control: null,
      carry: null,
      carryLen: 0,
      rejoinAt: 0,
    });
  }
  // Take turns room by room, so that consecutive messages go to different rooms.
  senders = [];
  for (let slot = 0; slot < slotsPerRoom; slot++) {
    for (let room = 0; room < rooms; room++) {
      const client = clients[room * roomSize + slot];
      if (client !== undefined) senders.push(client);
    }
  }
  const done = new Promise((resolve) => setup.done = resolve);
  setup.startedAt = performance.now();
  // The storm: every connect is issued before any is answered.
  for (const client of clients) connect(client);
  const timeout = new Promise((resolve) => setTimeout(resolve, options.timeoutMs ?? 60_000));
  await Promise.race([done, timeout]);
  const sorted = (list) => list.slice().sort((a, b) => a - b);
  const pick = (list, q) =>
    list.length === 0 ? null : list[Math.min(list.length - 1, Math.floor(list.length * q))];
  const connectMs = sorted(setup.connectMs);
  const readyMs = sorted(setup.readyMs);
  emit({
    ev: "ready",
    clients: n,
    opened: setup.opened,
    ready: setup.ready,
    failed: setup.failed,
    failures: setup.failures,
    allOpenMs: setup.opened > 0 ? setup.lastOpenAt - setup.startedAt : null,
    allReadyMs: setup.ready > 0 ? setup.lastReadyAt - setup.startedAt : null,
    connectP50Ms: pick(connectMs, 0.5),
    connectP99Ms: pick(connectMs, 0.99),
    readyP50Ms: pick(readyMs, 0.5),
    readyP99Ms: pick(readyMs, 0.99),
    errors: stats.errors,
    firstError: stats.firstError,
  });
}

// ---------------------------------------------------------------- open-loop sending

/** Sends message `k` of the schedule from the next sender, stamped with its planned time. */
function sendOne(plannedUs, padTo) {
  const sender = senders[sendCursor];
  sendCursor = sendCursor + 1 === senders.length ? 0 : sendCursor + 1;
  if (!sender.ready) return false;
  let text = `${sender.slot}:${sender.seq++}:${plannedUs}`;
  if (padTo > text.length) text += ":" + PAD.slice(0, padTo - text.length - 1);
  const frame = protocolNative
    ? textFrame(
      `{"type":"broadcast","channel":"${sender.roomName}","text":"${text}"}`,
    )
    : protocolWsify
    ? textFrame(
      `{"command":"broadcast","args":{"channel":"${sender.roomName}","content":"${text}"}}`,
    )
    : textFrame(text);
  sender.socket.write(frame);
  stats.expected += roomReady[sender.room];
  return true;
}
let sendCursor = 0;
const PAD = "x".repeat(4096);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function doStep({ rate, seconds, drainMs, padTo = 0 }) {
  hist.fill(0);
  histMax = 0;
  const before = {
    outOfOrder: stats.outOfOrder,
    gaps: stats.gaps,
    errors: stats.errors,
    closed: stats.closedAfterReady,
  };
  const expectedBefore = stats.expected;
  const deliveredBefore = stats.delivered;
  stats.inWindow = 0;
  const reads0 = stats.reads, bytes0 = stats.bytes;
  const windowMs = seconds * 1000;
  emit({ ev: "mark", at: "start" });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const t0Us = Math.round((t0 - T0) * 1000);
  stats.windowOpen = true;
  // A debugging aid: deliveries per 200 ms on stderr.
  const trace = process.env.LOADGEN_TRACE === "1"
    ? setInterval(() => {
      process.stderr.write(
        `trace ${Math.round(performance.now() - t0)}ms ${stats.delivered}\n`,
      );
    }, 200)
    : undefined;
  let sent = 0;
  let skipped = 0;
  const total = Math.round(rate * seconds);
  // Open loop: each tick sends whatever the schedule says is due by now, however the
  // server is doing. A timer, not a busy loop, so that our CPU use means our own work.
  while (sent + skipped < total) {
    const elapsed = performance.now() - t0;
    const due = Math.min(total, Math.floor((elapsed / 1000) * rate) + 1);
    while (sent + skipped < due) {
      const k = sent + skipped;
      if (sendOne(t0Us + Math.round((k * 1e6) / rate), padTo)) sent++;
      else skipped++;
    }
    if (sent + skipped >= total) break;
    await sleep(1);
  }
  const remainder = windowMs - (performance.now() - t0);
  if (remainder > 0) await sleep(remainder);
  const windowActualMs = performance.now() - t0;
  stats.windowOpen = false;
  const inWindow = stats.inWindow;
  const cpu = process.cpuUsage(cpu0);
  const reads = stats.reads - reads0, bytes = stats.bytes - bytes0;
  emit({ ev: "mark", at: "end" });
  const expected = stats.expected - expectedBefore;
  // Let what is in flight arrive: the latency of a message counts even when it lands late.
  const drainStart = performance.now();
  while (
    stats.delivered < stats.expected && performance.now() - drainStart < drainMs
  ) {
    await sleep(5);
  }
  clearInterval(trace);
  emit({
    ev: "step",
    rate,
    seconds: windowActualMs / 1000,
    sent,
    skipped,
    offeredPerSec: sent / (windowActualMs / 1000),
    expected,
    deliveredInWindow: inWindow,
    deliveredPerSec: inWindow / (windowActualMs / 1000),
    delivered: stats.delivered - deliveredBefore,
    drained: stats.delivered >= stats.expected,
    drainMs: performance.now() - drainStart,
    /** Deliveries owed since setup that never came (negative: more came than owed). */
    missing: stats.expected - stats.delivered,
    outOfOrder: stats.outOfOrder - before.outOfOrder,
    gaps: stats.gaps - before.gaps,
    errors: stats.errors - before.errors,
    firstError: stats.firstError,
    unparsed: stats.unparsed,
    closed: stats.closedAfterReady - before.closed,
    closeCodes: stats.closeCodes,
    p50Us: percentile(0.5),
    p99Us: percentile(0.99),
    maxUs: histMax,
    genCpu: (cpu.user + cpu.system) / 1000 / windowActualMs,
    genSystemCpu: cpu.system / 1000 / windowActualMs,
    bytesInWindow: bytes,
    readsPerSec: reads / (windowActualMs / 1000),
    bytesPerRead: reads === 0 ? 0 : bytes / reads,
  });
}

async function doSettle({ quietMs, maxMs }) {
  const start = performance.now();
  while (performance.now() - start < maxMs) {
    if (nowUs() - stats.lastArrival > quietMs * 1000) break;
    await sleep(20);
  }
  emit({
    ev: "settled",
    ms: performance.now() - start,
    missing: stats.expected - stats.delivered,
    ready: clients.filter((client) => client.ready).length,
  });
}

// ---------------------------------------------------------------- joins with history

const rejoins = {
  running: false,
  windowOpen: false,
  /** leave + join frames, one write per round trip. */
  frames: new Map(),
  outstanding: 0,
  inWindow: 0,
  minMessages: Infinity,
  maxMessages: 0,
};
const MESSAGE_KEY = Buffer.from('{"type":"message"');

/** How many message objects the line buf[s, e) carries (a `joined` with history). */
function countMessages(buf, s, e) {
  const line = buf.subarray(s, e);
  let n = 0;
  for (let at = line.indexOf(MESSAGE_KEY); at !== -1; at = line.indexOf(MESSAGE_KEY, at + 1)) n++;
  return n;
}

function rejoinSend(client) {
  client.rejoinAt = performance.now();
  rejoins.outstanding++;
  client.socket.write(rejoins.frames.get(client.index));
}

/** The `joined` that answers a rejoin: its round trip, its history, and the next one. */
function rejoined(client, buf, s, e) {
  const us = Math.round((performance.now() - client.rejoinAt) * 1000);
  client.rejoinAt = 0;
  rejoins.outstanding--;
  if (rejoins.windowOpen) {
    rejoins.inWindow++;
    hist[bucketOf(us)]++;
    if (us > histMax) histMax = us;
    const n = countMessages(buf, s, e);
    if (n < rejoins.minMessages) rejoins.minMessages = n;
    if (n > rejoins.maxMessages) rejoins.maxMessages = n;
  }
  if (rejoins.running && client.ready) rejoinSend(client);
}

async function doRejoin({ seconds, history }) {
  hist.fill(0);
  histMax = 0;
  const before = { errors: stats.errors, closed: stats.closedAfterReady };
  rejoins.frames.clear();
  for (const client of clients) {
    rejoins.frames.set(
      client.index,
      Buffer.concat([
        textFrame(`{"type":"leave","channel":"${client.roomName}"}`),
        textFrame(`{"type":"join","channel":"${client.roomName}","history":${history}}`),
      ]),
    );
  }
  Object.assign(rejoins, { inWindow: 0, minMessages: Infinity, maxMessages: 0 });
  rejoins.running = true;
  for (const client of clients) if (client.ready) rejoinSend(client);
  emit({ ev: "mark", at: "start" });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  rejoins.windowOpen = true;
  await sleep(seconds * 1000);
  rejoins.windowOpen = false;
  const windowMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  emit({ ev: "mark", at: "end" });
  rejoins.running = false;
  const drainStart = performance.now();
  while (rejoins.outstanding > 0 && performance.now() - drainStart < 10_000) await sleep(5);
  emit({
    ev: "rejoin",
    seconds: windowMs / 1000,
    clients: clients.filter((client) => client.ready).length,
    joins: rejoins.inWindow,
    joinsPerSec: rejoins.inWindow / (windowMs / 1000),
    p50Us: percentile(0.5),
    p99Us: percentile(0.99),
    maxUs: histMax,
    minMessages: rejoins.inWindow > 0 ? rejoins.minMessages : null,
    maxMessages: rejoins.maxMessages,
    outstanding: rejoins.outstanding,
    errors: stats.errors - before.errors,
    firstError: stats.firstError,
    closed: stats.closedAfterReady - before.closed,
    genCpu: (cpu.user + cpu.system) / 1000 / windowMs,
  });
}

// ---------------------------------------------------------------- commands

const commands = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
commands.on("line", (line) => {
  if (line.trim() === "") return;
  const command = JSON.parse(line);
  queue = queue.then(async () => {
    if (command.cmd === "setup") await doSetup(command);
    else if (command.cmd === "step") await doStep(command);
    else if (command.cmd === "settle") await doSettle(command);
    else if (command.cmd === "rejoin") await doRejoin(command);
    else if (command.cmd === "quit") {
      for (const client of clients) client.socket?.destroy();
      process.exit(0);
    } else emit({ ev: "error", message: `unknown command ${command.cmd}` });
  }).catch((error) => {
    emit({ ev: "error", message: String(error?.stack ?? error) });
  });
});
commands.on("close", () => {
  for (const client of clients) client.socket?.destroy();
  process.exit(0);
});
