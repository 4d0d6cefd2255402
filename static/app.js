// hubbub browser client: vanilla JS, no build step.
//
// Speaks hubbub native protocol v1 over a WebSocket at /ws on the same host.
// Security rule for this file: every piece of text that came from a user or
// from the server (names, channel names, message text, error messages) is put
// into the page with textContent / createElement only — never innerHTML.
"use strict";

(() => {
  // ---------------------------------------------------------------- constants

  const PROTOCOL = 1;
  const RECONNECT_BASE_MS = 500;
  const RECONNECT_MAX_MS = 15_000;
  const CHANNELS_POLL_MS = 5_000; // the server has no push for the channel list
  const HEARTBEAT_MS = 20_000; // ping interval
  const DEAD_AFTER_MS = 45_000; // no frame at all for this long: assume a dead link
  const MAX_MESSAGES_PER_CHANNEL = 500;
  const CHANNEL_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
  /** Close codes after which we wait for the user instead of reconnecting (see PROTOCOL.md). */
  const WAIT_FOR_USER = new Map([
    [4408, "disconnected: no login in time"],
    [4410, "disconnected: idle for too long"],
  ]);
  /** What the status line says while reconnecting after other close codes. */
  const CLOSE_REASONS = new Map([
    [1009, "a message was too large"],
    [1012, "server restarting"],
    [1013, "connection too slow"],
    [4429, "too many messages"],
  ]);

  // -------------------------------------------------------------------- state

  const state = {
    /** @type {WebSocket | null} */
    ws: null,
    /** Name we want (typed by the user) or have (as returned by the server). */
    name: null,
    /** True from "welcome" until logout or a rejected name: shows the chat view. */
    signedIn: false,
    /** True once the server welcomed us on the current connection. */
    loggedIn: false,
    /**
     * Channels we are in (or will re-join after a reconnect), in join order.
     * @type {Map<string, {members: Set<string>, messages: object[], unread: number}>}
     */
    joined: new Map(),
    /** @type {string | null} */
    active: null,
    /** Last channel list from the server: [{name, members}]. */
    directory: [],
    /** Outstanding commands by ref, so errors can be tied to what caused them. */
    pending: new Map(),
    nextRef: 1,
    reconnectAttempt: 0,
    reconnectTimer: 0,
    reconnectAt: 0,
    countdownTimer: 0,
    pollTimer: 0,
    heartbeatTimer: 0,
    lastFrameAt: 0,
    refreshSoon: 0,
  };

  // --------------------------------------------------------------------- DOM

  const $ = (id) => {
    const el = document.getElementById(id);
    if (!el) throw new Error(`missing #${id}`);
    return el;
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
    messages: $("messages"),
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

  // --------------------------------------------------------------- connection

  function socketUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/ws`;
  }

  function isOpen() {
    return state.ws !== null && state.ws.readyState === WebSocket.OPEN;
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    clearInterval(state.countdownTimer);
    state.reconnectTimer = 0;
    ui.reconnect.hidden = true;
    setStatus("connecting", "connecting…");

    let ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch (err) {
      console.error("hubbub: cannot open WebSocket", err);
      scheduleReconnect();
      return;
    }
    state.ws = ws;

    ws.addEventListener("open", () => {
      state.lastFrameAt = Date.now();
      startHeartbeat();
      // Wait for "hello" before logging in; nothing else to do here.
    });
    ws.addEventListener("message", (event) => {
      if (ws !== state.ws) return; // a stale socket still draining
      state.lastFrameAt = Date.now();
      if (typeof event.data !== "string") return; // the protocol is text only
      // One frame may carry several JSON objects, one per line.
      for (const line of event.data.split("\n")) {
        if (line.trim() === "") continue;
        let msg;
        try {
          msg = JSON.parse(line);
        } catch {
          console.warn("hubbub: ignoring a line that is not JSON", line);
          continue;
        }
        if (msg && typeof msg === "object") handle(msg);
      }
    });
    ws.addEventListener("close", (event) => {
      if (ws !== state.ws) return;
      onClosed(event.code);
    });
    // An "error" event is always followed by "close", which does the work.
  }

  function onClosed(code) {
    state.ws = null;
    state.loggedIn = false;
    state.pending.clear();
    stopHeartbeat();
    stopPolling();
    // Everything still in state.joined is re-joined once we are back.
    for (const ch of state.joined.values()) ch.members.clear();
    render();
    const waitForUser = WAIT_FOR_USER.get(code);
    if (waitForUser) {
      // The server closed us for inactivity: reconnecting by ourselves would
      // only be closed again. The login form and "Reconnect now" bring us back.
      ui.reconnect.hidden = false;
      setStatus("offline", waitForUser);
      return;
    }
    if (code === 1012) {
      // Server restart: it will be back soon, so start the back-off afresh.
      state.reconnectAttempt = 0;
    }
    if (code === 4429 || code === 1013) {
      // Flooding or reading too slowly: come back, but not at once.
      state.reconnectAttempt = Math.max(state.reconnectAttempt, 4);
    }
    scheduleReconnect(CLOSE_REASONS.get(code) ?? "disconnected");
  }

  /**
   * Exponential back-off with jitter: the ceiling doubles from 0.5 s up to
   * 15 s, and the actual wait is picked at random in [ceiling/2, ceiling], so
   * many clients dropped at once by a restart do not all come back in the same
   * millisecond.
   */
  function scheduleReconnect(reason = "disconnected") {
    if (state.reconnectTimer) return;
    const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** state.reconnectAttempt);
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    state.reconnectAttempt++;
    state.reconnectAt = Date.now() + delay;
    state.reconnectTimer = setTimeout(connect, delay);
    ui.reconnect.hidden = false;

    const tick = () => {
      const left = Math.max(0, state.reconnectAt - Date.now());
      setStatus("offline", `${reason}: reconnecting in ${(left / 1000).toFixed(1)} s`);
    };
    tick();
    clearInterval(state.countdownTimer);
    state.countdownTimer = setInterval(tick, 250);
  }

  function reconnectNow() {
    if (state.ws) return;
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = 0;
    connect();
  }

  /**
   * Sends a command. Commands that the user started get a ref, so that an
   * error reply can be matched to the command (and e.g. the login form can be
   * reopened on name_taken). Returns false if the socket is not open.
   */
  function send(cmd, context) {
    if (!isOpen()) {
      showError("Not connected to the server.");
      return false;
    }
    if (context) {
      const ref = state.nextRef++;
      state.pending.set(ref, context);
      // Replies without our ref (if any) would leave entries behind: cap it.
      if (state.pending.size > 200) state.pending.delete(state.pending.keys().next().value);
      cmd = { ...cmd, ref };
    }
    state.ws.send(JSON.stringify(cmd));
    return true;
  }

  // Keep-alive: ping regularly, and if nothing at all has arrived for a long
  // time the connection is probably half-open (laptop sleep, NAT timeout):
  // close it so the usual reconnect logic takes over.
  function startHeartbeat() {
    stopHeartbeat();
    state.heartbeatTimer = setInterval(() => {
      if (!isOpen()) return;
      if (Date.now() - state.lastFrameAt > DEAD_AFTER_MS) {
        const ws = state.ws;
        state.ws = null; // detach first: the close event of a dead link can take minutes
        ws.close(4000, "no response");
        onClosed(4000);
        return;
      }
      state.ws.send(JSON.stringify({ type: "ping" }));
    }, HEARTBEAT_MS);
  }

  function stopHeartbeat() {
    clearInterval(state.heartbeatTimer);
    state.heartbeatTimer = 0;
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
    if (isOpen() && state.loggedIn) state.ws.send(JSON.stringify({ type: "channels" }));
  }

  /** Refresh the channel list shortly, coalescing bursts of join/leave events. */
  function refreshChannelsSoon() {
    if (state.refreshSoon) return;
    state.refreshSoon = setTimeout(() => {
      state.refreshSoon = 0;
      requestChannels();
    }, 200);
  }

  function login(name) {
    state.name = name;
    send({ type: "login", name }, { type: "login", name });
  }

  function joinChannel(channel, rejoin = false) {
    send({ type: "join", channel }, { type: "join", channel, rejoin });
  }

  // ------------------------------------------------------- protocol handling

  function handle(msg) {
    // Drop the pending entry for replies that echo our ref.
    const context = msg.ref !== undefined ? state.pending.get(msg.ref) : undefined;
    if (msg.ref !== undefined) state.pending.delete(msg.ref);

    switch (msg.type) {
      case "hello":
        if (msg.protocol !== PROTOCOL) {
          showError(`Server speaks protocol ${msg.protocol}; this page expects ${PROTOCOL}.`);
        }
        if (state.name) {
          // Reconnected (or the user submitted the form while we were offline).
          setStatus("connecting", "signing in…");
          login(state.name);
        } else {
          connected();
        }
        break;

      case "welcome":
        state.name = msg.name; // may be NFKC-normalized by the server
        state.signedIn = true;
        state.loggedIn = true;
        connected();
        clearError();
        // Re-join whatever we were in before a reconnect.
        for (const channel of state.joined.keys()) joinChannel(channel, true);
        startPolling();
        render();
        break;

      case "joined":
        onJoined(msg, context);
        break;

      case "left":
        onLeft(msg.channel);
        break;

      case "presence":
        onPresence(msg);
        break;

      case "message":
        onMessage(msg);
        break;

      case "channels":
        state.directory = Array.isArray(msg.channels) ? msg.channels : [];
        renderDirectory();
        break;

      case "logged_out":
        state.name = null;
        state.signedIn = false;
        state.loggedIn = false;
        state.joined.clear();
        state.active = null;
        stopPolling();
        render();
        ui.name.focus();
        break;

      case "pong":
        break;

      case "error":
        onError(msg, context);
        break;

      default:
        console.debug("hubbub: ignoring unknown message", msg);
    }
  }

  /** The connection is usable: reset the back-off and show it. */
  function connected() {
    state.reconnectAttempt = 0;
    setStatus("online", "connected");
    render();
  }

  function onJoined(msg, context) {
    const name = String(msg.channel);
    let ch = state.joined.get(name);
    if (!ch) {
      ch = { members: new Set(), messages: [], unread: 0 };
      state.joined.set(name, ch);
    }
    ch.members = new Set(Array.isArray(msg.members) ? msg.members.map(String) : []);
    if (context?.rejoin) {
      addNotice(name, "reconnected");
    } else {
      state.active = name; // a channel the user just joined becomes the active one
    }
    if (!state.active) state.active = name;
    refreshChannelsSoon();
    render();
    if (!context?.rejoin) ui.text.focus();
  }

  function onLeft(channel) {
    state.joined.delete(channel);
    if (state.active === channel) {
      // Fall back to the most recently joined remaining channel, if any.
      state.active = [...state.joined.keys()].pop() ?? null;
    }
    refreshChannelsSoon();
    render();
  }

  function onPresence(msg) {
    const ch = state.joined.get(msg.channel);
    if (!ch) return;
    const who = String(msg.name);
    if (msg.event === "join") {
      ch.members.add(who);
      addNotice(msg.channel, `${who} joined`);
    } else if (msg.event === "leave") {
      ch.members.delete(who);
      addNotice(msg.channel, `${who} left`);
    }
    refreshChannelsSoon();
    if (msg.channel === state.active) renderMembers();
  }

  function onMessage(msg) {
    const ch = state.joined.get(msg.channel);
    if (!ch) return;
    pushMessage(msg.channel, {
      kind: "message",
      id: msg.id,
      from: String(msg.from),
      text: String(msg.text),
      ts: msg.ts,
    });
  }

  function onError(msg, context) {
    const text = typeof msg.message === "string" && msg.message ? msg.message : String(msg.code);
    switch (msg.code) {
      case "name_taken":
      case "invalid_name":
      case "not_logged_in":
        // Back to the login form (also after a reconnect, if someone took our
        // name meanwhile), keeping the joined channels: they are re-joined
        // once a name is accepted.
        if (state.name) ui.name.value = state.name;
        state.signedIn = false;
        state.loggedIn = false;
        state.name = null;
        stopPolling();
        if (isOpen()) setStatus("online", "connected");
        render();
        showError(text);
        ui.name.focus();
        ui.name.select();
        return;
      case "not_joined":
        if (context?.channel) onLeft(context.channel);
        break;
      case "invalid_channel":
        if (context?.rejoin) onLeft(context.channel);
        break;
      case "too_large":
      case "rate_limited":
        // Give the rejected message back instead of losing what was typed.
        if (context?.type === "broadcast" && ui.text.value === "") ui.text.value = context.text;
        break;
      case "already_logged_in":
        // Harmless (e.g. a double submit); we are still signed in.
        return;
    }
    showError(text);
  }

  // --------------------------------------------------------------- messages

  function addNotice(channel, text) {
    pushMessage(channel, { kind: "notice", text, ts: new Date().toISOString() });
  }

  function pushMessage(channel, entry) {
    const ch = state.joined.get(channel);
    if (!ch) return;
    ch.messages.push(entry);
    if (ch.messages.length > MAX_MESSAGES_PER_CHANNEL) ch.messages.shift();
    if (channel === state.active) {
      appendMessageNode(entry, true);
    } else if (entry.kind === "message") {
      ch.unread++;
      renderJoined();
    }
  }

  function formatTime(ts) {
    const date = new Date(ts);
    if (Number.isNaN(date.getTime())) return "";
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function messageNode(entry) {
    const li = el("li", entry.kind === "notice" ? "notice" : "message");
    const time = el("time", "time", formatTime(entry.ts));
    if (entry.ts) {
      time.dateTime = String(entry.ts);
      time.title = new Date(entry.ts).toLocaleString();
    }
    li.append(time);
    if (entry.kind === "message") {
      if (entry.from === state.name) li.classList.add("mine");
      li.dataset.from = entry.from;
      if (entry.id !== undefined) li.dataset.id = String(entry.id);
      li.append(el("span", "from", entry.from), el("span", "text", entry.text));
    } else {
      li.append(el("span", "text", entry.text));
    }
    return li;
  }

  function appendMessageNode(entry, live) {
    const box = ui.messages;
    // Only follow new messages if the reader is already at the bottom.
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.append(messageNode(entry));
    while (box.childElementCount > MAX_MESSAGES_PER_CHANNEL) box.firstElementChild.remove();
    if (!live || atBottom) box.scrollTop = box.scrollHeight;
  }

  // -------------------------------------------------------------- rendering

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

    const usable = state.loggedIn && isOpen();
    ui.channel.disabled = !usable;
    ui.join.disabled = !usable;
    ui.logout.disabled = !usable;

    renderJoined();
    renderDirectory();
    renderConversation();
    renderMembers();
  }

  function renderJoined() {
    const list = ui.joinedList;
    list.replaceChildren();
    for (const [name, ch] of state.joined) {
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
      leave.disabled = !(state.loggedIn && isOpen());
      leave.addEventListener("click", () => leaveChannel(name));
      li.append(open, leave);
      list.append(li);
    }
    ui.joinedEmpty.hidden = state.joined.size > 0;
  }

  function renderDirectory() {
    const list = ui.channels;
    list.replaceChildren();
    const entries = [...state.directory].sort((a, b) => byName(String(a.name), String(b.name)));
    for (const entry of entries) {
      const name = String(entry.name);
      const li = el("li");
      li.dataset.channel = name;
      li.dataset.members = String(entry.members);
      const button = el("button", "channel-button");
      button.type = "button";
      button.append(el("span", "channel-name", `#${name}`));
      const count = el("span", "count", entry.members);
      count.setAttribute("aria-label", `${entry.members} members`);
      button.append(" ", count);
      if (state.joined.has(name)) li.classList.add("is-joined");
      if (name === state.active) button.setAttribute("aria-current", "true");
      button.title = state.joined.has(name) ? `Switch to #${name}` : `Join #${name}`;
      button.disabled = !(state.loggedIn && isOpen());
      button.addEventListener("click", () => {
        if (state.joined.has(name)) switchTo(name);
        else joinChannel(name);
      });
      li.append(button);
      list.append(li);
    }
    ui.channelsEmpty.hidden = entries.length > 0;
  }

  function renderConversation() {
    const ch = state.active ? state.joined.get(state.active) : undefined;
    ui.activeChannel.textContent = ch ? `#${state.active}` : "No channel selected";
    if (ch) ui.activeChannel.dataset.channel = state.active;
    else delete ui.activeChannel.dataset.channel;

    // Rebuild the log only when the active channel changed.
    if (ui.messages.dataset.channel !== (state.active ?? "")) {
      ui.messages.replaceChildren();
      ui.messages.dataset.channel = state.active ?? "";
      if (ch) { for (const entry of ch.messages) appendMessageNode(entry, false); }
    }

    const canSend = Boolean(ch) && state.loggedIn && isOpen();
    ui.text.disabled = !canSend;
    ui.send.disabled = !canSend;
    ui.leave.disabled = !canSend;
  }

  function renderMembers() {
    const ch = state.active ? state.joined.get(state.active) : undefined;
    const names = ch ? [...ch.members].sort(byName) : [];
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

  // ---------------------------------------------------------------- actions

  function switchTo(channel) {
    const ch = state.joined.get(channel);
    if (!ch) return;
    state.active = channel;
    ch.unread = 0;
    render();
    if (!ui.text.disabled) ui.text.focus();
  }

  function leaveChannel(channel) {
    send({ type: "leave", channel }, { type: "leave", channel });
  }

  ui.loginForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = ui.name.value.trim();
    if (!name) return;
    clearError();
    if (isOpen()) {
      login(name);
    } else {
      // Remember it: we log in as soon as the server says hello.
      state.name = name;
      setStatus("connecting", "waiting for the server…");
      reconnectNow();
    }
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
    if (state.joined.has(channel)) {
      switchTo(channel);
    } else {
      joinChannel(channel);
    }
    ui.channel.value = "";
  });

  ui.sendForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = ui.text.value;
    if (!state.active || text.trim() === "") return;
    const channel = state.active;
    if (send({ type: "broadcast", channel, text }, { type: "broadcast", channel, text })) {
      ui.text.value = "";
    }
  });

  ui.leave.addEventListener("click", () => {
    if (state.active) leaveChannel(state.active);
  });

  ui.logout.addEventListener("click", () => send({ type: "logout" }, { type: "logout" }));
  ui.reconnect.addEventListener("click", reconnectNow);
  // Back online after a network outage: no point waiting out the back-off.
  addEventListener("online", reconnectNow);

  render();
  connect();
})();
