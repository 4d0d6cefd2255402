import assert from "node:assert/strict";
import {
  audience,
  createChannels,
  isMember,
  joinChannel,
  leaveChannel,
  listChannels,
  memberNames,
} from "../../lib/core/channels.ts";

Deno.test("channels: a channel exists from its first join until its last leave", () => {
  const channels = createChannels();
  assert.ok(joinChannel(channels, "c", 1, "alice"));
  assert.ok(joinChannel(channels, "c", 2, "bob"));
  assert.deepEqual(listChannels(channels), [{ name: "c", members: 2 }]);
  assert.ok(leaveChannel(channels, "c", 1));
  assert.ok(leaveChannel(channels, "c", 2));
  assert.deepEqual(listChannels(channels), []);
  assert.equal(channels.members.size, 0);
});

Deno.test("channels: members are listed in join order; joining twice is a no-op", () => {
  const channels = createChannels();
  joinChannel(channels, "c", 2, "bob");
  joinChannel(channels, "c", 1, "alice");
  assert.equal(joinChannel(channels, "c", 2, "bob"), false);
  assert.deepEqual(memberNames(channels, "c"), ["bob", "alice"]);
  assert.deepEqual([...audience(channels, "c")], [2, 1]);
});

Deno.test("channels: leaving a channel one is not in says so", () => {
  const channels = createChannels();
  assert.equal(leaveChannel(channels, "nowhere", 1), false);
  joinChannel(channels, "c", 1, "alice");
  assert.equal(leaveChannel(channels, "c", 2), false);
  assert.ok(isMember(channels, "c", 1));
  assert.deepEqual([...audience(channels, "nowhere")], []);
});

Deno.test("channels: the list is sorted by name", () => {
  const channels = createChannels();
  for (const name of ["b", "a", "c"]) joinChannel(channels, name, 1, "x");
  assert.deepEqual(listChannels(channels).map((c) => c.name), ["a", "b", "c"]);
});

Deno.test("channels: beforeChange runs before every join and leave, seeing the old members, and never for a no-op", () => {
  const channels = createChannels();
  const seen: string[][] = [];
  channels.beforeChange = () => seen.push(memberNames(channels, "c"));
  joinChannel(channels, "c", 1, "alice");
  joinChannel(channels, "c", 2, "bob");
  joinChannel(channels, "c", 2, "bob"); // already in
  leaveChannel(channels, "c", 1);
  leaveChannel(channels, "c", 1); // already out
  leaveChannel(channels, "nowhere", 2);
  leaveChannel(channels, "c", 2);
  assert.deepEqual(seen, [[], ["alice"], ["alice", "bob"], ["bob"]]);
});
