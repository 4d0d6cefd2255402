/**
 * The scenarios: how many clients, in rooms of what size, and what each one
 * measures.
 *
 * @module
 */
import { QUICK } from "./options.ts";

/** One shape of load: clients, rooms and what is measured. */
export interface Scenario {
  id: string;
  title: string;
  clients: number;
  roomSize: number;
  /** Senders per room (the first slots of each room); every member receives. */
  sendersPerRoom: number;
  /** Where the rate ladder starts, in deliveries per second, unless a hint says better. */
  ladderStart: number;
  /** Whether this scenario's connect phase is the storm and idle measurement. */
  idle: boolean;
  /** Whether it steps traffic at all. */
  traffic: boolean;
}

/** The scenarios of this run, in the order they run. */
export const SCENARIOS: Scenario[] = QUICK
  ? [
    scenario("one-room-1k", "one room, 1,000 clients", 1000, 1000, false),
    scenario(
      "small-rooms-2k",
      "2,000 clients in rooms of 10 (idle, storm, traffic)",
      2000,
      10,
      true,
    ),
  ]
  : [
    scenario("one-room-1k", "one room, 1,000 clients", 1000, 1000, false),
    scenario("one-room-5k", "one room, 5,000 clients", 5000, 5000, false),
    scenario(
      "small-rooms-10k",
      "10,000 clients in rooms of 10 (idle, storm, traffic)",
      10000,
      10,
      true,
    ),
  ];

function scenario(
  id: string,
  title: string,
  clients: number,
  roomSize: number,
  idle: boolean,
): Scenario {
  return {
    id,
    title,
    clients,
    roomSize,
    sendersPerRoom: 100,
    ladderStart: 50_000,
    idle,
    traffic: true,
  };
}
