/**
 * What nodes say to each other on the cluster bus, validated with zod like
 * every other inbound frame: a payload from another node (or from something
 * else publishing on the same Redis channel) is checked before it can touch
 * the core. One payload carries one node's messages of one tick, in order.
 *
 * @module
 */
import { z } from "zod";

/** A member as the bus names it: the node-local session number and the name it joined under. */
const session = z.number().int().nonnegative();

const busMessageSchema = z.discriminatedUnion("t", [
  /**
   * A frame for a channel's members on every node; `o` is the origin for
   * dialect encoders, `x` the session on the sending node that must not
   * receive it (the sender's own, when the bus echoes it back); `g`, on a
   * message a shared log numbered, names the run of the channel's history
   * its seq counts in (a node checks that its seqs follow on, see `cluster.ts`).
   */
  z.object({
    t: z.literal("pub"),
    c: z.string(),
    f: z.looseObject({ type: z.string() }),
    o: z.object({ dialect: z.string(), original: z.record(z.string(), z.unknown()).optional() })
      .optional(),
    x: session.optional(),
    g: z.string().optional(),
  }),
  /** A member of this node entered a channel. */
  z.object({ t: z.literal("join"), c: z.string(), s: session, m: z.string() }),
  /** A member of this node left a channel. */
  z.object({ t: z.literal("leave"), c: z.string(), s: session }),
  /** Every membership of this node (for `to`, or for all): replaces what others knew of it. */
  z.object({
    t: z.literal("state"),
    to: z.string().optional(),
    m: z.array(z.tuple([z.string(), session, z.string()])),
  }),
  /** A node asks the others (or `to`) for their state. */
  z.object({ t: z.literal("hello"), to: z.string().optional() }),
  /** The node is alive. */
  z.object({ t: z.literal("beat") }),
  /** The node is shutting down: forget its members now. */
  z.object({ t: z.literal("bye") }),
  /** An operator removes whoever holds this folded name, on whatever node. */
  z.object({ t: z.literal("kick"), k: z.string() }),
]);

/** One message on the bus. */
export type BusMessage = z.infer<typeof busMessageSchema>;

const payloadSchema = z.object({
  /** The sending node. */
  n: z.string().min(1),
  m: z.array(busMessageSchema),
});

/** One node's messages of one tick. */
export type BusPayload = z.infer<typeof payloadSchema>;

/** Encodes a payload for the engine. */
export function encodePayload(payload: BusPayload): string {
  return JSON.stringify(payload);
}

/** Decodes a payload from the engine; null when it is not one (counted, never thrown). */
export function decodePayload(text: string): BusPayload | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const parsed = payloadSchema.safeParse(value);
  return parsed.success ? parsed.data : null;
}

/**
 * The JSON of a `pub` bus message up to and including `"f":`, so that
 * `busOpen(…) + frameJson + "}"` is the whole message: what a shared log
 * completes once it knows the frame's seq (`SharedMessage.busOpen`).
 */
export function busOpen(
  channel: string,
  origin?: { dialect: string; original?: Record<string, unknown> },
  except?: number,
): string {
  const head: Omit<Extract<BusMessage, { t: "pub" }>, "f"> = { t: "pub", c: channel };
  if (origin !== undefined) head.o = origin;
  if (except !== undefined) head.x = except;
  return `${JSON.stringify(head).slice(0, -1)},"f":`;
}
