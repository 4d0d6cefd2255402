/**
 * The scenarios: how many clients, in rooms of what size, and what each one
 * measures.
 *
 * @module
 */
import { HISTORY, ONLY_SCENARIOS, QUICK } from "./options.ts";

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

/**
 * Joins with history: each client is alone in its own channel, which holds
 * `fill` messages, and leaves it and joins it again asking for `history`
 * messages as soon as its last `joined` came (a closed loop), for `seconds`
 * a round. Alone, so that the figure is the join and its history, not the
 * presence it sends to other members.
 */
export interface JoinScenario {
  id: string;
  title: string;
  /** Concurrent clients, one channel each. */
  clients: number;
  /** Messages sent into each channel before the joins. */
  fill: number;
  history: number;
  seconds: number;
  /** Measured rounds per server, after one warm-up round; the servers compared take turns. */
  rounds: number;
}

/** The joins-with-history scenario. */
export const JOINS: JoinScenario = {
  id: "joins-50",
  title: "joins with 50 messages of history",
  clients: 64,
  fill: 100,
  history: 50,
  seconds: QUICK ? 1 : 2,
  rounds: QUICK ? 2 : 5,
};

/** The scenarios that compare hubbub's stores (SQLite ÷ memory), quick and full. */
export const STORE_SCENARIOS = ["one-room-1k", "small-rooms-2k", "small-rooms-10k", JOINS.id];

/**
 * Whether this run goes through scenario `id`: `--scenarios` says, else
 * `--history` runs the store comparison's, else all but the joins in a
 * quick run (which stays about 2 minutes).
 */
export function chosenScenario(id: string): boolean {
  if (ONLY_SCENARIOS) return ONLY_SCENARIOS.includes(id);
  if (HISTORY) return STORE_SCENARIOS.includes(id);
  return !(QUICK && id === JOINS.id);
}

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
