import assert from "node:assert/strict";
import { createChannels } from "../../lib/core/channels.ts";

import { createRegistry } from "../../lib/core/registry.ts";
import {
  type Core,
  disconnect,
  type Effect,
  route,
  type RoutedCommand,
} from "../../lib/core/router.ts";
import { createSession } from "../../lib/core/session.ts";

const session = (id: number) => createSession(id, "127.0.0.1", { tokens: 1, updatedAt: 0 });

function createCore(
  limits = {
    maxChannelsPerConnection: 100,
    maxChannelMembers: 100,
    historyOnJoin: 0,
    historyLimit: 100,
  },
): Core {
  let id = 0;
  return {
    registry: createRegistry(),
    channels: createChannels(),
    messageId: () => `m${++id}`,
    now: () => 0,
    limits,
  };
}

/** Effects as plain JSON, the way they go on the wire. */
const plain = (effects: Effect[]) => JSON.parse(JSON.stringify(effects));

const run = (core: Core, from: ReturnType<typeof createSession>, command: RoutedCommand) =>
  plain(route(core, from, command));

Deno.test("router: join subscribes, then tells the others, then replies", () => {
  const core = createCore();
  const alice = session(1);
  const bob = session(2);
  run(core, alice, { type: "login", name: "alice" });
  run(core, bob, { type: "login", name: "bob" });
  run(core, alice, { type: "join", channel: "c" });
  assert.deepEqual(run(core, bob, { type: "join", channel: "c", ref: 1 }), [
    { kind: "subscribe", channel: "c" },
    {
      kind: "publish",
      channel: "c",
      frame: { type: "presence", channel: "c", event: "join", name: "bob" },
      except: 2,
    },
    { kind: "joined", channel: "c", members: ["alice", "bob"], history: 0, ref: 1 },
  ]);
});

Deno.test("router: broadcast publishes one stamped message to the whole channel", () => {
  const core = createCore();
  const alice = session(1);
  run(core, alice, { type: "login", name: "alice" });
  run(core, alice, { type: "join", channel: "c" });
  assert.deepEqual(run(core, alice, { type: "broadcast", channel: "c", text: "hi" }), [{
    kind: "publish",
    channel: "c",
    frame: {
      type: "message",
      channel: "c",
      from: "alice",
      text: "hi",
      id: "m1",
      ts: "1970-01-01T00:00:00.000Z",
    },
  }]);
});

Deno.test("router: commands that need a login say so", () => {
  const core = createCore();
  const anon = session(1);
  for (
    const command of [
      { type: "join", channel: "c" },
      { type: "leave", channel: "c" },
      { type: "broadcast", channel: "c", text: "t" },
      { type: "logout" },
    ] as RoutedCommand[]
  ) {
    assert.equal(run(core, anon, command)[0].frame.code, "not_logged_in", command.type);
  }
});

Deno.test("router: a name that NFKC turns invalid is refused", () => {
  const core = createCore();
  // U+FDFA is one letter that NFKC expands into words with spaces.
  const [effect] = run(core, session(1), { type: "login", name: "\uFDFA" });
  assert.equal(effect.frame.code, "invalid_name");
});

Deno.test("router: disconnect leaves every channel and frees the name", () => {
  const core = createCore();
  const alice = session(1);
  run(core, alice, { type: "login", name: "alice" });
  run(core, alice, { type: "join", channel: "a" });
  run(core, alice, { type: "join", channel: "b" });
  assert.deepEqual(
    plain(disconnect(core, alice)).map((e: { kind: string; channel: string }) =>
      `${e.kind} ${e.channel}`
    ),
    [
      "unsubscribe a",
      "publish a",
      "unsubscribe b",
      "publish b",
    ],
  );
  assert.equal(core.channels.members.size, 0);
  assert.equal(core.registry.owners.size, 0);
});
