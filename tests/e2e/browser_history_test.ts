// End-to-end tests of the browser client's history (issue 15): the real server in a subprocess
// (HUBBUB_TARGET: deno, bun or a compiled binary), the real page in headless Chromium, and
// other users as plain protocol clients. Seqs and ids are read from the page's DOM.

import assert from "node:assert/strict";
import { join as joinPath } from "node:path";
import { openClient, type TestClient, withTimeout } from "../_helpers.ts";
import { Browser, eventually, type Page } from "./_browser.ts";
import {
  join,
  lines,
  openUser,
  range,
  RECONNECT_TIMEOUT_MS,
  say,
  sendState,
  shownIds,
  shownSeqs,
  statusOf,
} from "./_chat.ts";
import { type SpawnedServer, spawnServer } from "./_server.ts";

/** Lets the posters below send a few hundred messages at once. */
const UNLIMITED = ["--rate-limit", "100000", "--rate-burst", "100000"];

/** A user outside the browser: logged in as `name`, a member of `channel`. */
async function poster(server: SpawnedServer, name: string, channel: string): Promise<TestClient> {
  const client = await openClient(server.wsUrl);
  try {
    await client.login(name);
    const joined = await client.join(channel);
    assert.equal(joined.type, "joined", JSON.stringify(joined));
    return client;
  } catch (error) {
    await client.close();
    throw error;
  }
}

/** Sends `texts` to `channel` and waits until the server stored every one; resolves with their seqs. */
async function post(client: TestClient, channel: string, texts: string[]): Promise<number[]> {
  texts.forEach((text, ref) => client.send({ type: "broadcast", channel, text, ref }));
  const seqs: number[] = [];
  for (const _ of texts) {
    const sent = await client.nextOf("sent");
    seqs[sent.ref] = sent.seq;
  }
  return seqs;
}

/** `prefix1` … `prefixN` for the seqs `from` … `to`. */
function texts(prefix: string, from: number, to: number): string[] {
  return range(from, to).map((seq) => `${prefix}${seq}`);
}

/** The log as `seq:text` lines, without presence notices. */
async function log(page: Page): Promise<string[]> {
  return (await lines(page)).filter((line) => line !== "notice");
}

/** Where the message with `seq` is, in px below the top of the scrolling log. */
function offsetOf(page: Page, seq: number): Promise<number> {
  return page.call(
    `(seq) => {
      const li = document.querySelector(\`#messages li[data-seq="\${seq}"]\`);
      return li.getBoundingClientRect().top - document.querySelector("#scroller").getBoundingClientRect().top;
    }`,
    seq,
  );
}

/** Scrolls the log to the top, as a reader does to see older messages; returns where `seq` was then. */
function scrollToTop(page: Page, seq: number): Promise<number> {
  return page.call(
    `(seq) => {
      const scroller = document.querySelector("#scroller");
      scroller.scrollTop = 0;
      const li = document.querySelector(\`#messages li[data-seq="\${seq}"]\`);
      return li.getBoundingClientRect().top - scroller.getBoundingClientRect().top;
    }`,
    seq,
  );
}

/** The top of the log: its state ("more", "loading", "beginning", "error") and text. */
function historyEdge(page: Page): Promise<{ state: string; text: string }> {
  return page.call(`() => {
    const edge = document.querySelector("#history-state");
    return { state: edge.dataset.state, text: edge.hidden ? "" : edge.textContent };
  }`);
}

/** Asserts that no message is shown twice (by id) and that the page had no uncaught error. */
async function assertClean(page: Page): Promise<void> {
  const ids = await shownIds(page);
  assert.equal(new Set(ids).size, ids.length, `${page.name}: a message is shown twice: ${ids}`);
  assert.ok(!ids.includes(""), `${page.name}: a message without id is shown`);
  assert.deepEqual(page.pageErrors, [], `${page.name}: uncaught errors in the page`);
}

/** Runs `body` with a browser, always torn down before the servers `body` started. */
async function withBrowser(
  body: (browser: Browser, servers: SpawnedServer[], clients: TestClient[]) => Promise<void>,
): Promise<void> {
  const browser = await Browser.launch(); // first: fail fast without Chromium
  const servers: SpawnedServer[] = [];
  const clients: TestClient[] = [];
  try {
    await body(browser, servers, clients);
  } finally {
    try {
      await browser.close(); // before the servers, so they have no clients left
      await Promise.all(clients.map((client) => client.close()));
    } finally {
      for (const server of servers) await server.stop();
    }
  }
}

Deno.test("browser history: a user sees the last 50 messages on join, and scrolling up loads older ones in place down to the beginning", async () => {
  await withBrowser(async (browser, servers, clients) => {
    const server = await spawnServer({ args: ["--data-dir", "none", ...UNLIMITED] });
    servers.push(server);
    const bob = await poster(server, "bob", "history");
    clients.push(bob);
    assert.deepEqual(await post(bob, "history", texts("m", 1, 120)), range(1, 120));

    const alice = await openUser(browser, server, "alice");
    await join(alice, "history");
    await eventually("alice", "the last 50 messages", () => shownSeqs(alice), range(71, 120));
    assert.deepEqual(await log(alice), range(71, 120).map((seq) => `${seq}:m${seq}`));
    assert.deepEqual(await historyEdge(alice), { state: "more", text: "" });
    assert.ok(
      await alice.call(`() => {
        const s = document.querySelector("#scroller");
        return s.scrollHeight > s.clientHeight && s.scrollHeight - s.scrollTop - s.clientHeight < 2;
      }`),
      "the log scrolls, and shows its bottom",
    );

    // To the top: the 50 before come in above, and what the reader saw stays where it was.
    const at71 = await scrollToTop(alice, 71);
    await eventually("alice", "50 older messages", () => shownSeqs(alice), range(21, 120));
    assert.ok(Math.abs(await offsetOf(alice, 71) - at71) < 2, "seq 71 did not move");
    assert.deepEqual(await historyEdge(alice), { state: "more", text: "" });

    // Once more: the last 20, and nothing older is left.
    const at21 = await scrollToTop(alice, 21);
    await eventually("alice", "the first 20 messages", () => shownSeqs(alice), range(1, 120));
    assert.ok(Math.abs(await offsetOf(alice, 21) - at21) < 2, "seq 21 did not move");
    await eventually(
      "alice",
      "the beginning of history",
      () => historyEdge(alice),
      { state: "beginning", text: "Beginning of history" },
    );
    assert.deepEqual(await log(alice), range(1, 120).map((seq) => `${seq}:m${seq}`));

    // New messages still come in at the bottom.
    await post(bob, "history", ["m121"]);
    await eventually("alice", "a new message", () => shownSeqs(alice), range(1, 121));
    await assertClean(alice);
  });
});

Deno.test("browser history: a message shows as sending until the server has stored it, then as sent; a refused one as failed with the error", async () => {
  await withBrowser(async (browser, servers) => {
    const server = await spawnServer({ args: ["--data-dir", "none", "--max-text-length", "20"] });
    servers.push(server);
    const alice = await openUser(browser, server, "alice");
    await join(alice, "acks");

    // A stopped server reads nothing: the message waits, dimmed, for as long as it is stopped.
    Deno.kill(server.child.pid, "SIGSTOP");
    try {
      await say(alice, "hello there");
      await eventually(
        "alice",
        "the message to show as sending",
        () => sendState(alice, "hello there"),
        { status: "sending", state: "sending…", seq: false, dimmed: true },
      );
    } finally {
      Deno.kill(server.child.pid, "SIGCONT");
    }
    await eventually(
      "alice",
      "the message to show as sent",
      () => sendState(alice, "hello there"),
      { status: "sent", state: "", seq: true, dimmed: false },
    );
    assert.deepEqual(await log(alice), ["1:hello there"]);

    const long = "a message over twenty characters";
    await say(alice, long);
    await eventually(
      "alice",
      "the long message to show as failed",
      () => sendState(alice, long),
      {
        status: "failed",
        state: 'not sent: Field "text" is longer than 20 characters',
        seq: false,
        dimmed: false,
      },
    );
    assert.deepEqual(await log(alice), ["1:hello there", `?:${long}`]);
    assert.equal(
      await alice.call(`() => document.querySelector("#text").value`),
      "",
      "the box was emptied for the next message",
    );
    assert.deepEqual(alice.pageErrors, [], "uncaught errors in the page");
  });
});

Deno.test("browser history: after a restart on the same --data-dir the page shows every message once, none missed", async () => {
  const root = await Deno.makeTempDir({ prefix: "hubbub-browser-history-" });
  const args = ["--data-dir", joinPath(root, "data"), ...UNLIMITED];
  try {
    await withBrowser(async (browser, servers, clients) => {
      const first = await spawnServer({ args, allowDirs: [root] });
      servers.push(first);
      const bob = await poster(first, "bob", "durable");
      await post(bob, "durable", texts("m", 1, 5));
      const alice = await openUser(browser, first, "alice");
      await join(alice, "durable");
      await post(bob, "durable", texts("m", 6, 10));
      await eventually("alice", "messages 1 to 10", () => shownSeqs(alice), range(1, 10));
      await bob.close();

      // Alice's page is frozen (its scripts wait in the debugger) while the server dies
      // and comes back and bob says more: she can only have those by recovering them.
      await alice.send("Debugger.enable");
      await alice.send("Debugger.pause");
      first.child.kill("SIGKILL");
      await first.stop();
      const second = await spawnServer({ port: first.port, args, allowDirs: [root] });
      servers.push(second);
      const bob2 = await poster(second, "bob", "durable");
      clients.push(bob2);
      assert.deepEqual(await post(bob2, "durable", texts("m", 11, 20)), range(11, 20));
      // Fails when no script ran meanwhile (nothing to resume); disabling drops the pause then.
      await alice.send("Debugger.resume").catch(() => {});
      await alice.send("Debugger.disable");

      await eventually(
        "alice",
        "messages 1 to 20, recovered",
        () => shownSeqs(alice),
        range(1, 20),
        RECONNECT_TIMEOUT_MS,
      );
      await eventually("alice", "to be online", () => statusOf(alice), "online");
      await say(alice, "back");
      await eventually(
        "alice",
        "her message sent",
        () => sendState(alice, "back"),
        { status: "sent", state: "", seq: true, dimmed: false },
      );
      const heard = await withTimeout(bob2.nextOf("message"), "bob to hear alice");
      assert.deepEqual([heard.from, heard.text, heard.seq], ["alice", "back", 21]);
      assert.deepEqual(await log(alice), [
        ...range(1, 20).map((seq) => `${seq}:m${seq}`),
        "21:back",
      ], "no gap divider, no duplicate");
      await assertClean(alice);
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("browser history: a restart that lost the history (--data-dir none) shows 'some messages were missed', and a message sent meanwhile goes out once", async () => {
  await withBrowser(async (browser, servers, clients) => {
    const args = ["--data-dir", "none"];
    const first = await spawnServer({ args });
    servers.push(first);
    const alice = await openUser(browser, first, "alice");
    await join(alice, "volatile");
    const bob = await poster(first, "bob", "volatile");
    await post(bob, "volatile", texts("m", 1, 3));
    await eventually("alice", "messages 1 to 3", () => shownSeqs(alice), range(1, 3));
    await bob.close();

    first.child.kill("SIGKILL");
    await first.stop();
    await eventually("alice", "to see the server gone", () => statusOf(alice), "offline");
    // Sent while there is no server: it waits in the outbox.
    await say(alice, "while away");
    await eventually(
      "alice",
      "the message to wait",
      () => sendState(alice, "while away"),
      { status: "sending", state: "sending…", seq: false, dimmed: true },
    );

    const second = await spawnServer({ port: first.port, args });
    servers.push(second);
    await eventually(
      "alice",
      "the message sent to the new server",
      () => sendState(alice, "while away"),
      { status: "sent", state: "", seq: true, dimmed: false },
      RECONNECT_TIMEOUT_MS,
    );
    const bob2 = await poster(second, "bob", "volatile");
    clients.push(bob2);
    await post(bob2, "volatile", ["after"]);
    await eventually("alice", "the divider, then the new history", () => log(alice), [
      "1:m1",
      "2:m2",
      "3:m3",
      "gap",
      "1:while away",
      "2:after",
    ]);
    assert.equal(
      await alice.text("#messages li.divider"),
      "Some messages were missed",
      "the divider says what happened",
    );
    await assertClean(alice);
  });
});
