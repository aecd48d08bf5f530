/**
 * Where a queue's messages go next. Every reliable message waits in the queue of its
 * destination, and the router's one next-hop decision (`Router#nextHop`) maps a destination to
 * the link that carries it now. A new kind of next hop is a new case here and there, not a copy
 * of the forwarding path.
 *
 * `key` names the queue in the store; it is written to disk, so its form is stable:
 * `agent:<local>` and `domain:<domain>`.
 */
export type Destination = AgentDestination | DomainDestination | ReturnDestination;

/** A local agent of this router, by id (`_…`) or name, connected or not. */
export interface AgentDestination {
  readonly kind: 'agent';
  readonly local: string;
  readonly key: string;
}

/** Another domain: reached through the router link that announced it, or the default uplink. */
export interface DomainDestination {
  readonly kind: 'domain';
  readonly domain: string;
  readonly key: string;
}

/**
 * Messages a hub handed back to its bridgehead for a name or id that moved to another hub: they
 * go to the new home before anything that arrived meanwhile (see Homes).
 */
export interface ReturnDestination {
  readonly kind: 'return';
  readonly local: string;
  readonly key: string;
}

export function returnDestination(local: string): ReturnDestination {
  return { kind: 'return', local, key: `return:${local}` };
}

export function agentDestination(local: string): AgentDestination {
  return { kind: 'agent', local, key: `agent:${local}` };
}

export function domainDestination(domain: string): DomainDestination {
  return { kind: 'domain', domain, key: `domain:${domain}` };
}

/** Reads a queue name back from the store; undefined for one this version does not know. */
export function parseDestinationKey(key: string): Destination | undefined {
  if (key.startsWith('agent:')) return agentDestination(key.slice(6));
  if (key.startsWith('domain:')) return domainDestination(key.slice(7));
  if (key.startsWith('return:')) return returnDestination(key.slice(7));
  return undefined;
}
