// hubbub browser client: vanilla JS on the client library (/client.js), no build step.
//
// The library keeps the connection: it logs in, re-joins every channel after a
// drop from the last message it delivered (so nothing is shown twice and
// nothing is missing), and keeps unacknowledged sends in an outbox that it
// re-sends with the same key. This file only draws what it reports.
//
// Security rule for this file: every piece of text that came from a user or
// from the server (names, channel names, message text, error messages) is put
// into the page with textContent / createElement only — never innerHTML.

import { HubbubClient } from "/client.js";

// ------------------------------------------------------------------ constants

/** Messages shown on join, and asked for by each "load older". */
const PAGE = 50;
/** Reconnect delays: as the library's, but never more than 15 s between tries. */
const RECONNECT = { initialMs: 500, maxMs: 15_000 };
/** Ping while connected, so a dead link (laptop sleep, NAT timeout) is noticed. */
const HEARTBEAT_MS = 20_000;
const CHANNELS_POLL_MS = 5_000; // the server has no push for the channel list
/** Entries kept per channel; the oldest go first (only while the reader is at the bottom). */
const MAX_ENTRIES = 1_000;
/** How close to the top (px) counts as "scrolled to the top" for loading older messages. */
const TOP_SLACK_PX = 4;
const CHANNEL_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
/** What the status line says while reconnecting after a close with this code. */
const CLOSE_REASONS = new Map([
  [1009, "a message was too large"],
  [1012, "server restarting"],
  [1013, "connection too slow"],
  [4429, "too many messages"],
]);

// ---------------------------------------------------------------------- state

/**
 * One line of a channel's log.
 * @typedef {object} Entry
 * @property {"message" | "notice" | "divider"} kind
 * @property {string} text
 * @property {string} ts
 * @property {string} [id]
 * @property {number} [seq]
 * @property {string} [from]
 * @property {"sending" | "sent" | "failed"} [status] only for this user's own sends
 * @property {string} [error] why a send failed
 * @property {HTMLLIElement} [node] created when first shown
 */

/**
 * A channel this user is in (or is joining).
 * @typedef {object} Channel
 * @property {boolean} joined whether its first `joined` came
 * @property {Entry[]} entries delivered messages in seq order, notices and dividers
 * @property {Entry[]} outbox own messages not yet seen delivered, in the order sent
 * @property {Map<string, Entry>} byId delivered messages by id
 * @property {Entry | null} segmentHead the last "some messages were missed" divider: older
 *   messages of the current history go right after it (null: at the top)
 * @property {string} epoch of the current history
 * @property {boolean} beginning nothing older left in the current history
 * @property {boolean} loading a "load older" is on its way
 * @property {string} loadError why the last "load older" failed
 * @property {number} unread
 * @property {number} joinedCount how many messages the last `joined` delivered
 */

const state = {
  /** @type {HubbubClient | null} */
  client: null,
  /** The name the server welcomed us with (normalized), or null. */
  name: null,
  /** From the first welcome until logout: shows the chat view. */
  signedIn: false,
  /** The library's connection state. */
  connection: "idle",
  /** @type {Map<string, Channel>} in join order */
  channels: new Map(),
  /** @type {string | null} */
  active: null,
  /** Last channel list from the server: [{name, members}]. */
  directory: [],
  /**
   * The join whose messages are being delivered now: not read out, and on a
   * first join (history) not unread either.
   * @type {{channel: string, first: boolean} | null}
   */
  replaying: null,
  pollTimer: 0,
  refreshSoon: 0,
  countdownTimer: 0,
};

// ------------------------------------------------------------------------ DOM

const $ = (id) => {
  const node = document.getElementById(id);
  if (!node) throw new Error(`missing #${id}`);
  return node;
};
const ui = {
  status: $("status"),
  reconnect: $("reconnect"),
  session: $("session"),
  me: $("me"),
  logout: $("logout"),
  error: $("error"),
  loginView: $("login-view"),
  loginForm: $("login-form"),
  name: $("name"),
  login: $("login"),
  chatView: $("chat-view"),
  joinForm: $("join-form"),
  channel: $("channel"),
  join: $("join"),
  joinedList: $("joined"),
  joinedEmpty: $("joined-empty"),
  channels: $("channels"),
  channelsEmpty: $("channels-empty"),
  activeChannel: $("active-channel"),
  leave: $("leave"),
  scroller: $("scroller"),
  older: $("older"),
  historyState: $("history-state"),
  messages: $("messages"),
  announcer: $("announcer"),
  sendForm: $("send-form"),
  text: $("text"),
  send: $("send"),
  members: $("members"),
  memberCount: $("member-count"),
};

/** createElement with optional class and text (text set via textContent). */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = String(text);
  return node;
}

const byName = (a, b) => a.localeCompare(b, undefined, { sensitivity: "base" });

// ----------------------------------------------------------------- connection

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

/** Logs in as `name` with a new client; the old one, if any, is dropped. */
async function login(name) {
  dropClient();
  const client = new HubbubClient({
    url: socketUrl(),
    name,
    reconnect: RECONNECT,
    heartbeatMs: HEARTBEAT_MS,
  });
  state.client = client;
  // Every listener ignores a client that was replaced (logout, a second login).
  const mine = (listener) => (payload) => {
    if (client === state.client) listener(payload);
  };
  client.on("state", mine(onState));
  client.on("joined", mine(onJoined));
  client.on("gap", mine(onGap));
  client.on("message", mine(onMessage));
  client.on("presence", mine(onPresence));
  client.on("error", mine(onClientError));
  try {
    await client.connect();
  } catch (error) {
    if (client !== state.client || state.signedIn) return;
    // The name was refused (taken, invalid): back to the form with what was typed.
    dropClient();
    setStatus("idle", "not signed in");
    render();
    showError(error.message);
    ui.name.value = name;
    ui.name.focus();
    ui.name.select();
    return;
  }
  if (client !== state.client) return;
  clearError();
  if (state.channels.size === 0) ui.channel.focus();
}

/** Closes and forgets the client and everything shown for it. */
function dropClient() {
  const client = state.client;
  state.client = null;
  client?.close();
  state.name = null;
  state.signedIn = false;
  state.connection = "idle";
  state.channels.clear();
  state.active = null;
  state.directory = [];
  stopPolling();
  clearInterval(state.countdownTimer);
  ui.reconnect.hidden = true;
}

function onState(event) {
  state.connection = event.state;
  clearInterval(state.countdownTimer);
  ui.reconnect.hidden = true;
  switch (event.state) {
    case "connecting":
      setStatus("connecting", event.attempt > 0 ? "reconnecting…" : "connecting…");
      break;
    case "open":
      state.name = event.name;
      state.signedIn = true;
      setStatus("online", "connected");
      startPolling();
      break;
    case "reconnecting": {
      stopPolling();
      const reason = CLOSE_REASONS.get(event.code) ?? "disconnected";
      const at = Date.now() + event.delayMs;
      const tick = () => {
        const left = Math.max(0, at - Date.now());
        setStatus("offline", `${reason}: reconnecting in ${(left / 1000).toFixed(1)} s`);
      };
      tick();
      state.countdownTimer = setInterval(tick, 250);
      break;
    }
    case "closed":
      stopPolling();
      setStatus("offline", `disconnected: ${event.error.message}`);
      // Closed on purpose (idle, kicked, name taken over): come back only when asked.
      ui.reconnect.hidden = !state.signedIn;
      break;
  }
  render();
}

function reconnect() {
  state.client?.connect().catch(() => {
    // The state listener shows why.
  });
}

function startPolling() {
  stopPolling();
  requestChannels();
  state.pollTimer = setInterval(requestChannels, CHANNELS_POLL_MS);
}

function stopPolling() {
  clearInterval(state.pollTimer);
  clearTimeout(state.refreshSoon);
  state.pollTimer = 0;
  state.refreshSoon = 0;
}

function requestChannels() {
  const client = state.client;
  if (!client || state.connection !== "open") return;
  client.channels().then((list) => {
    if (client !== state.client) return;
    state.directory = list;
    renderDirectory();
  }, () => {
    // Lost with the connection: the next poll after the reconnect asks again.
  });
}

/** Refreshes the channel list shortly, coalescing bursts of join/leave events. */
function refreshChannelsSoon() {
  if (state.refreshSoon || state.connection !== "open") return;
  state.refreshSoon = setTimeout(() => {
    state.refreshSoon = 0;
    requestChannels();
  }, 200);
}

// ------------------------------------------------------------------- channels

/** A new, empty channel record. */
function newChannel() {
  return {
    joined: false,
    entries: [],
    outbox: [],
    byId: new Map(),
    segmentHead: null,
    epoch: "",
    beginning: false,
    loading: false,
    loadError: "",
    unread: 0,
    joinedCount: 0,
  };
}

function joinChannel(name) {
  const client = state.client;
  if (!client) return;
  if (state.channels.has(name)) return switchTo(name);
  state.channels.set(name, newChannel());
  client.join(name, { history: PAGE }).catch((error) => {
    if (client !== state.client || error.code === "left") return;
    state.channels.delete(name);
    render();
    showError(error.message);
  });
}

function onJoined(joined) {
  const ch = state.channels.get(joined.channel);
  if (!ch) return;
  ch.joinedCount = joined.messages.length;
  // The messages this join delivers follow synchronously, in the same task.
  state.replaying = { channel: joined.channel, first: !ch.joined };
  queueMicrotask(() => state.replaying = null);
  if (!ch.joined) {
    ch.joined = true;
    ch.epoch = joined.epoch;
    ch.beginning = joined.messages.length < PAGE;
    // A channel the user just joined becomes the active one.
    state.active = joined.channel;
    queueMicrotask(() => {
      if (!ui.text.disabled) ui.text.focus();
    });
  }
  refreshChannelsSoon();
  render();
}

/** A re-join could not prove that nothing was missed: say so where the gap is. */
function onGap(gap) {
  const ch = state.channels.get(gap.channel);
  if (!ch) return;
  const divider = {
    kind: "divider",
    text: "Some messages were missed",
    ts: new Date().toISOString(),
  };
  appendEntry(gap.channel, ch, divider);
  // What follows is another history: "load older" continues it, after the divider.
  ch.segmentHead = divider;
  ch.epoch = gap.epoch;
  ch.beginning = ch.joinedCount < PAGE;
  ch.loadError = "";
  if (gap.channel === state.active) {
    announce(`#${gap.channel}: some messages were missed`);
    renderHistoryEdge();
  }
}

function onMessage(message) {
  const ch = state.channels.get(message.channel);
  if (!ch || ch.byId.has(message.id)) return;
  let entry = message.from === state.name ? claim(ch, message) : undefined;
  if (entry) {
    entry.id = message.id;
    entry.ts = message.ts;
    if (message.seq !== undefined) entry.seq = message.seq;
  } else {
    entry = {
      kind: "message",
      id: message.id,
      from: message.from,
      text: message.text,
      ts: message.ts,
    };
    if (message.seq !== undefined) entry.seq = message.seq;
  }
  ch.byId.set(message.id, entry);
  appendEntry(message.channel, ch, entry);
  const replay = state.replaying?.channel === message.channel ? state.replaying : null;
  if (message.channel !== state.active) {
    if (!replay?.first) {
      ch.unread++;
      renderJoined();
    }
  } else if (!replay && message.from !== state.name) {
    announce(`${message.from}: ${message.text}`);
  }
}

/**
 * The oldest of this user's sends still waiting to be seen delivered with the
 * same text: a message from this user is one of them (the server handles one
 * connection's broadcasts in order), removed here from the outbox.
 */
function claim(ch, message) {
  const index = ch.outbox.findIndex((entry) =>
    entry.status === "sending" && entry.id === undefined && entry.text === message.text
  );
  return index === -1 ? undefined : ch.outbox.splice(index, 1)[0];
}

function onPresence(presence) {
  const ch = state.channels.get(presence.channel);
  if (!ch) return;
  const verb = presence.event === "join" ? "joined" : "left";
  appendEntry(presence.channel, ch, {
    kind: "notice",
    text: `${presence.name} ${verb}`,
    ts: new Date().toISOString(),
  });
  refreshChannelsSoon();
  if (presence.channel === state.active) renderMembers();
}

function onClientError(error) {
  // A channel the server refused to re-join is gone from the library too.
  if (error.channel && state.channels.has(error.channel)) removeChannel(error.channel);
  showError(error.message);
}

function removeChannel(name) {
  state.channels.delete(name);
  if (state.active === name) {
    // Fall back to the most recently joined remaining channel, if any.
    state.active = [...state.channels.keys()].pop() ?? null;
  }
  refreshChannelsSoon();
  render();
}

function leaveChannel(name) {
  const client = state.client;
  if (!client) return;
  client.leave(name).catch((error) => showError(error.message));
  removeChannel(name);
}

function switchTo(name) {
  const ch = state.channels.get(name);
  if (!ch || !ch.joined) return;
  state.active = name;
  ch.unread = 0;
  render();
  if (!ui.text.disabled) ui.text.focus();
}

// ------------------------------------------------------------------- sending

function sendText(text) {
  const client = state.client;
  const name = state.active;
  const ch = name ? state.channels.get(name) : undefined;
  if (!client || !ch || !name) return;
  /** @type {Entry} */
  const entry = {
    kind: "message",
    from: state.name ?? "",
    text,
    ts: new Date().toISOString(),
    status: "sending",
  };
  ch.outbox.push(entry);
  if (name === state.active) {
    place(ch, entry);
    ui.scroller.scrollTop = ui.scroller.scrollHeight;
  }
  client.send(name, text).then((sent) => {
    if (client !== state.client) return;
    entry.status = "sent";
    const shown = ch.byId.get(sent.id);
    if (shown && shown !== entry) {
      // Delivered as another entry (a re-send the server published again after it
      // lost its history, or two sends of the same text that swapped places).
      shown.status = "sent";
      repaint(shown);
      if (entry.id === undefined) dropFromOutbox(ch, entry);
    } else if (!shown) {
      // Stored, but its delivery has not come (or never will): show it where it belongs.
      entry.id = sent.id;
      entry.seq = sent.seq;
      ch.byId.set(sent.id, entry);
      dropFromOutbox(ch, entry);
      appendEntry(name, ch, entry);
    }
    repaint(entry);
  }, (error) => {
    if (client !== state.client) return;
    entry.status = "failed";
    entry.error = error.message;
    repaint(entry);
    if (name === state.active) announce(`Message not sent: ${error.message}`);
  });
}

function dropFromOutbox(ch, entry) {
  const index = ch.outbox.indexOf(entry);
  if (index !== -1) ch.outbox.splice(index, 1);
  entry.node?.remove();
}

// ------------------------------------------------------------- older messages

/** Index in `ch.entries` where the current history starts (after the last gap divider). */
function segmentStart(ch) {
  return ch.segmentHead ? ch.entries.indexOf(ch.segmentHead) + 1 : 0;
}

/** The oldest seq shown of the current history, or null. */
function oldestSeq(ch) {
  for (let i = segmentStart(ch); i < ch.entries.length; i++) {
    const seq = ch.entries[i].seq;
    if (seq !== undefined) return seq;
  }
  return null;
}

async function loadOlder(name) {
  const client = state.client;
  const ch = state.channels.get(name);
  if (!client || !ch || !ch.joined || ch.loading || ch.beginning) return;
  if (state.connection !== "open") return;
  const before = oldestSeq(ch);
  if (before === null || before <= 1) {
    ch.beginning = true;
    return renderHistoryEdge();
  }
  ch.loading = true;
  ch.loadError = "";
  renderHistoryEdge();
  const epoch = ch.epoch;
  let page;
  try {
    page = await client.history(name, { before, limit: PAGE });
  } catch (error) {
    ch.loading = false;
    ch.loadError = `Cannot load older messages: ${error.message}`;
    if (name === state.active) renderHistoryEdge();
    return;
  }
  ch.loading = false;
  if (client !== state.client || state.channels.get(name) !== ch) return;
  // Another history by now (the server lost its own): this page belongs to no list shown.
  if (page.epoch !== epoch || ch.epoch !== epoch) {
    if (name === state.active) renderHistoryEdge();
    return;
  }
  const older = page.messages.filter((m) =>
    !ch.byId.has(m.id) && (m.seq === undefined || m.seq < before)
  );
  const entries = older.map((m) => {
    /** @type {Entry} */
    const entry = { kind: "message", id: m.id, from: m.from, text: m.text, ts: m.ts };
    if (m.seq !== undefined) entry.seq = m.seq;
    ch.byId.set(m.id, entry);
    return entry;
  });
  if (page.messages.length < PAGE) ch.beginning = true;
  const at = segmentStart(ch);
  // The edge above the log changes too (to "beginning of history"): inside, so it moves nothing.
  keepingScroll(name, () => {
    ch.entries.splice(at, 0, ...entries);
    if (name !== state.active) return;
    for (const entry of entries) place(ch, entry);
    renderHistoryEdge();
  });
  if (name === state.active) fillView();
}

/** Loads older messages while the log is too short to scroll (nothing to scroll up from). */
function fillView() {
  const box = ui.scroller;
  if (state.active && box.scrollHeight <= box.clientHeight) void loadOlder(state.active);
}

// ------------------------------------------------------------------- the log

/** Adds a delivered message, notice or divider at the end of a channel's log. */
function appendEntry(name, ch, entry) {
  keepingScroll(name, () => {
    ch.entries.push(entry);
    if (name === state.active) place(ch, entry);
    trim(name, ch);
  });
}

/** Drops the oldest entries beyond MAX_ENTRIES, unless the reader is scrolled up to read them. */
function trim(name, ch) {
  if (ch.entries.length <= MAX_ENTRIES) return;
  if (name === state.active && !atBottom()) return;
  while (ch.entries.length > MAX_ENTRIES) {
    const dropped = ch.entries.shift();
    dropped.node?.remove();
    if (dropped.id !== undefined) ch.byId.delete(dropped.id);
    // Dropped from the current history: it can be loaded again.
    if (segmentStart(ch) === 0) ch.beginning = false;
  }
}

/**
 * Runs `mutate` on the active log without moving what the reader looks at:
 * a reader at the bottom stays at the bottom (follows new messages), any
 * other keeps the first visible line where it was (older messages put above
 * it push nothing down).
 */
function keepingScroll(name, mutate) {
  if (name !== state.active) return mutate();
  const box = ui.scroller;
  const follow = atBottom();
  const anchor = follow ? null : firstVisible();
  const before = anchor?.getBoundingClientRect().top ?? 0;
  mutate();
  if (follow) box.scrollTop = box.scrollHeight;
  else if (anchor?.isConnected) box.scrollTop += anchor.getBoundingClientRect().top - before;
}

function atBottom() {
  const box = ui.scroller;
  return box.scrollHeight - box.scrollTop - box.clientHeight < 40;
}

/** The first line of the log that is at least partly visible. */
function firstVisible() {
  const top = ui.scroller.getBoundingClientRect().top;
  for (const node of ui.messages.children) {
    if (node.getBoundingClientRect().bottom > top) return node;
  }
  return null;
}

/** Puts an entry's node (made if needed) where it belongs in the active log. */
function place(ch, entry) {
  const node = paint(entry);
  // Before the next entry (of the log, then of the outbox) that is shown already.
  const order = [...ch.entries, ...ch.outbox];
  const next = order.slice(order.indexOf(entry) + 1)
    .find((later) => later.node?.parentNode === ui.messages);
  if (next?.node) ui.messages.insertBefore(node, next.node);
  else ui.messages.append(node);
}

function formatTime(ts) {
  const date = new Date(ts);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** Fills the entry's node (creating it) from the entry; returns it. */
function paint(entry) {
  const li = entry.node ?? el("li");
  entry.node = li;
  li.className = entry.kind;
  li.replaceChildren();
  const time = el("time", "time", formatTime(entry.ts));
  time.dateTime = entry.ts;
  time.title = new Date(entry.ts).toLocaleString();
  if (entry.kind === "divider") {
    li.setAttribute("role", "separator");
    li.dataset.kind = "gap";
    li.append(el("span", "text", entry.text));
    return li;
  }
  li.append(time);
  if (entry.kind === "notice") {
    li.append(el("span", "text", entry.text));
    return li;
  }
  if (entry.from === state.name) li.classList.add("mine");
  li.dataset.from = entry.from;
  if (entry.id !== undefined) li.dataset.id = entry.id;
  if (entry.seq !== undefined) li.dataset.seq = String(entry.seq);
  li.append(el("span", "from", entry.from), el("span", "text", entry.text));
  if (entry.status) {
    li.dataset.status = entry.status;
    li.classList.add(entry.status);
    if (entry.status === "sending") li.append(el("span", "state", "sending…"));
    if (entry.status === "failed") li.append(el("span", "state", `not sent: ${entry.error}`));
  }
  return li;
}

/** Updates an entry's node, if it has one. */
function repaint(entry) {
  if (entry.node) paint(entry);
}

/** Reads `text` out to screen readers, politely (the log itself is not a live region). */
function announce(text) {
  ui.announcer.append(el("p", "", text));
  while (ui.announcer.childElementCount > 5) ui.announcer.firstElementChild.remove();
}

// ----------------------------------------------------------------- rendering

function setStatus(kind, text) {
  ui.status.dataset.state = kind;
  ui.status.textContent = text;
}

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.textContent = "";
  ui.error.hidden = true;
}

/** Re-renders everything that depends on state (cheap: lists are small). */
function render() {
  // The chat view stays up while reconnecting, so the conversation remains
  // readable; the login form comes back only without an accepted name.
  ui.loginView.hidden = state.signedIn;
  ui.chatView.hidden = !state.signedIn;
  ui.session.hidden = !state.signedIn;
  ui.me.textContent = state.signedIn ? state.name : "";

  // Joins and sends made while reconnecting wait in the library until it is back.
  const usable = state.signedIn && state.connection !== "closed";
  ui.channel.disabled = !usable;
  ui.join.disabled = !usable;

  renderJoined();
  renderDirectory();
  renderConversation();
  renderMembers();
}

function renderJoined() {
  const list = ui.joinedList;
  list.replaceChildren();
  let shown = 0;
  for (const [name, ch] of state.channels) {
    if (!ch.joined) continue;
    shown++;
    const li = el("li");
    li.dataset.channel = name;
    const open = el("button", "channel-button", `#${name}`);
    open.type = "button";
    if (name === state.active) {
      open.setAttribute("aria-current", "true");
      li.classList.add("active");
    }
    open.addEventListener("click", () => switchTo(name));
    if (ch.unread > 0) {
      const badge = el("span", "badge", ch.unread);
      badge.setAttribute("aria-label", `${ch.unread} unread`);
      open.append(" ", badge);
    }
    const leave = el("button", "small leave-button", "×");
    leave.type = "button";
    leave.title = `Leave #${name}`;
    leave.setAttribute("aria-label", `Leave #${name}`);
    leave.addEventListener("click", () => leaveChannel(name));
    li.append(open, leave);
    list.append(li);
  }
  ui.joinedEmpty.hidden = shown > 0;
}

function renderDirectory() {
  const list = ui.channels;
  list.replaceChildren();
  const entries = [...state.directory].sort((a, b) => byName(String(a.name), String(b.name)));
  for (const entry of entries) {
    const name = String(entry.name);
    const joined = state.channels.get(name)?.joined === true;
    const li = el("li");
    li.dataset.channel = name;
    li.dataset.members = String(entry.members);
    const button = el("button", "channel-button");
    button.type = "button";
    button.append(el("span", "channel-name", `#${name}`));
    const count = el("span", "count", entry.members);
    count.setAttribute("aria-label", `${entry.members} members`);
    button.append(" ", count);
    if (joined) li.classList.add("is-joined");
    if (name === state.active) button.setAttribute("aria-current", "true");
    button.title = joined ? `Switch to #${name}` : `Join #${name}`;
    button.disabled = state.connection !== "open";
    button.addEventListener("click", () => joinChannel(name));
    li.append(button);
    list.append(li);
  }
  ui.channelsEmpty.hidden = entries.length > 0;
}

function renderConversation() {
  const ch = state.active ? state.channels.get(state.active) : undefined;
  ui.activeChannel.textContent = ch ? `#${state.active}` : "No channel selected";
  if (ch) ui.activeChannel.dataset.channel = state.active;
  else delete ui.activeChannel.dataset.channel;

  // Rebuild the log only when the active channel changed.
  if (ui.messages.dataset.channel !== (state.active ?? "")) {
    ui.messages.dataset.channel = state.active ?? "";
    ui.messages.replaceChildren(...(ch ? [...ch.entries, ...ch.outbox].map(paint) : []));
    ui.scroller.scrollTop = ui.scroller.scrollHeight;
    renderHistoryEdge();
    if (ch) queueMicrotask(fillView);
  }

  const canSend = Boolean(ch) && state.connection !== "closed";
  ui.text.disabled = !canSend;
  ui.send.disabled = !canSend;
  ui.leave.disabled = !ch;
}

/** The top of the log: "load older", "loading", "beginning of history", or why it failed. */
function renderHistoryEdge() {
  const ch = state.active ? state.channels.get(state.active) : undefined;
  let kind = "";
  let text = "";
  if (!ch || !ch.joined) {
    kind = "";
  } else if (ch.loading) {
    [kind, text] = ["loading", "Loading older messages…"];
  } else if (ch.loadError) {
    [kind, text] = ["error", ch.loadError];
  } else if (!ch.beginning) {
    kind = "more";
  } else if (segmentStart(ch) === 0) {
    // After a gap the top of the log is the older history, whose beginning is unknown.
    [kind, text] = ["beginning", "Beginning of history"];
  }
  ui.historyState.dataset.state = kind;
  ui.historyState.textContent = text;
  ui.historyState.hidden = text === "";
  ui.older.hidden = kind !== "more" && kind !== "error";
}

function renderMembers() {
  const ch = state.active ? state.channels.get(state.active) : undefined;
  const names = ch && state.client ? state.client.members(state.active).sort(byName) : [];
  ui.members.replaceChildren(
    ...names.map((name) => {
      const li = el("li", name === state.name ? "me" : "", name);
      li.dataset.name = name;
      if (name === state.name) li.append(el("span", "you", " (you)"));
      return li;
    }),
  );
  ui.memberCount.textContent = ch ? `(${names.length})` : "";
}

// -------------------------------------------------------------------- actions

ui.loginForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = ui.name.value.trim();
  if (!name) return;
  clearError();
  setStatus("connecting", "connecting…");
  void login(name);
});

ui.joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  // Accept "#general" as well as "general".
  const channel = ui.channel.value.trim().replace(/^#/, "");
  if (!CHANNEL_RE.test(channel)) {
    showError("Channel names are 1–64 characters: letters, digits, _ . : -");
    return;
  }
  clearError();
  joinChannel(channel);
  ui.channel.value = "";
});

ui.sendForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.text.value;
  if (!state.active || text.trim() === "") return;
  ui.text.value = "";
  sendText(text);
});

ui.scroller.addEventListener("scroll", () => {
  if (state.active && ui.scroller.scrollTop <= TOP_SLACK_PX) void loadOlder(state.active);
});

ui.older.addEventListener("click", () => {
  const ch = state.active ? state.channels.get(state.active) : undefined;
  if (!ch || !state.active) return;
  ch.loadError = "";
  void loadOlder(state.active);
});

ui.leave.addEventListener("click", () => {
  if (state.active) leaveChannel(state.active);
});

ui.logout.addEventListener("click", () => {
  dropClient();
  setStatus("idle", "signed out");
  render();
  ui.name.focus();
});

ui.reconnect.addEventListener("click", reconnect);

render();
ui.name.focus();
