/**
 * Which network destinations a remote image URL may reach (SSRF protection). By default only public
 * unicast addresses: loopback, private, link-local (cloud metadata at 169.254.169.254), CGNAT, unspecified,
 * multicast, broadcast, documentation and other reserved ranges are refused, in IPv4 and IPv6, and so is
 * every IPv6 form that embeds an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo), since those can
 * reach an IPv4 host that the IPv4 rules would refuse.
 *
 * Operators widen this with an allow-list and narrow it with a deny-list. Each entry is a host name
 * (`images.internal`, any port), a `host:port` pair (`127.0.0.2:8080`, `[::1]:443`), an IP address or a CIDR
 * (`10.1.0.0/16`). The deny-list wins over everything; an allowed name or pair lets that destination through
 * whatever it resolves to; an allowed address or CIDR lets the addresses in it through.
 *
 * Address classification uses ipaddr.js (the library behind Express's trust-proxy checks) rather than
 * hand-written bit twiddling.
 */
import ipaddr from 'ipaddr.js';

import { OperatorError } from '../errors.js';

/** Why an address is refused; absent when it is a public unicast address. */
export type ForbiddenAddressKind =
  | 'loopback'
  | 'private'
  | 'link-local'
  | 'carrier-grade NAT'
  | 'unspecified'
  | 'multicast'
  | 'broadcast'
  | 'reserved'
  | 'IPv4-embedding IPv6'
  | 'non-global IPv6';

/** One parsed allow- or deny-list entry. */
type HostRule =
  | { kind: 'name'; name: string; port: number | undefined }
  | { kind: 'cidr'; range: [ipaddr.IPv4 | ipaddr.IPv6, number]; port: number | undefined };

/** The verdict on one destination. */
export type HostVerdict = { allowed: true } | { allowed: false; reason: string };

/** Thrown when an allow- or deny-list entry cannot be understood; the message names the entry. */
export class MediaHostRuleError extends OperatorError {}

const IPV4_RANGE_KINDS: Readonly<Record<string, ForbiddenAddressKind>> = {
  unspecified: 'unspecified',
  broadcast: 'broadcast',
  multicast: 'multicast',
  linkLocal: 'link-local',
  loopback: 'loopback',
  carrierGradeNat: 'carrier-grade NAT',
  private: 'private',
  reserved: 'reserved',
  as112: 'reserved',
  amt: 'reserved',
};

const IPV6_RANGE_KINDS: Readonly<Record<string, ForbiddenAddressKind>> = {
  unspecified: 'unspecified',
  linkLocal: 'link-local',
  multicast: 'multicast',
  loopback: 'loopback',
  uniqueLocal: 'private',
  deprecatedSiteLocal: 'private',
  ipv4Mapped: 'IPv4-embedding IPv6',
  rfc6145: 'IPv4-embedding IPv6',
  rfc6052: 'IPv4-embedding IPv6',
  '6to4': 'IPv4-embedding IPv6',
  teredo: 'IPv4-embedding IPv6',
};

const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3');

/**
 * Classifies an IP address (canonical text, as the URL parser or DNS gives it). Returns undefined for a public
 * unicast address, otherwise the kind of address it is. Text that is no IP address at all is 'reserved'.
 */
export function classifyAddress(address: string): ForbiddenAddressKind | undefined {
  const text = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (!ipaddr.isValid(text)) return 'reserved';
  const parsed = ipaddr.parse(text);
  if (parsed.kind() === 'ipv4') {
    const range = parsed.range();
    return range === 'unicast' ? undefined : (IPV4_RANGE_KINDS[range] ?? 'reserved');
  }
  const v6 = parsed as ipaddr.IPv6;
  const range = v6.range();
  if (IPV6_RANGE_KINDS[range]) return IPV6_RANGE_KINDS[range];
  // ::a.b.c.d (IPv4-compatible, deprecated) and the rest of ::/8 fall outside every named range.
  if (v6.parts.slice(0, 6).every((part) => part === 0)) return 'IPv4-embedding IPv6';
  if (!v6.match(GLOBAL_UNICAST_V6)) return 'non-global IPv6';
  return range === 'unicast' ? undefined : 'reserved';
}

/** Parses `host`, `host:port`, `[v6]:port`, an IP address or a CIDR into a rule. */
function parseRule(entry: string): HostRule {
  const text = entry.trim().toLowerCase();
  if (text.length === 0) throw new MediaHostRuleError('an empty media host entry');
  if (text.includes('://')) throw new MediaHostRuleError(`'${entry}' is a URL; give a host name, host:port, IP address or CIDR`);
  if (text.includes('/')) {
    try {
      const range = ipaddr.parseCIDR(text);
      return { kind: 'cidr', range: normalizeRange(range), port: undefined };
    } catch (error) {
      throw new MediaHostRuleError(`'${entry}' is not a valid CIDR (${(error as Error).message})`);
    }
  }
  let host = text;
  let port: number | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed) {
    host = bracketed[1] ?? '';
    port = bracketed[2] === undefined ? undefined : Number(bracketed[2]);
  } else if (/^[^:]+:\d+$/.test(text)) {
    const colon = text.lastIndexOf(':');
    host = text.slice(0, colon);
    port = Number(text.slice(colon + 1));
  }
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
    throw new MediaHostRuleError(`'${entry}' has an invalid port`);
  }
  if (ipaddr.isValid(host)) {
    const address = ipaddr.parse(host);
    const bits = address.kind() === 'ipv4' ? 32 : 128;
    return { kind: 'cidr', range: normalizeRange([address, bits]), port };
  }
  if (!/^[a-z0-9.-]+$/.test(host) || host.startsWith('.') || host.endsWith('.')) {
    throw new MediaHostRuleError(`'${entry}' is not a host name, host:port, IP address or CIDR`);
  }
  return { kind: 'name', name: host, port };
}

/** IPv4-mapped IPv6 ranges are matched as the IPv4 range they stand for. */
function normalizeRange(range: [ipaddr.IPv4 | ipaddr.IPv6, number]): [ipaddr.IPv4 | ipaddr.IPv6, number] {
  const [address, bits] = range;
  if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96) {
    return [(address as ipaddr.IPv6).toIPv4Address(), bits - 96];
  }
  return range;
}

function parseAddress(address: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  const text = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (!ipaddr.isValid(text)) return undefined;
  const parsed = ipaddr.parse(text);
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) return (parsed as ipaddr.IPv6).toIPv4Address();
  return parsed;
}

/** The SSRF rules for remote media: default-deny for non-public addresses, plus the operator's lists. */
export class MediaHostRules {
  readonly #allow: HostRule[];
  readonly #deny: HostRule[];

  /**
   * @param options.allow entries that may be reached despite the default rules (`--allow-media-host`).
   * @param options.deny entries that may never be reached (`--deny-media-host`).
   * @throws {MediaHostRuleError} for an entry that is not a host, host:port, IP address or CIDR.
   */
  constructor(options: { allow?: readonly string[]; deny?: readonly string[] } = {}) {
    this.#allow = (options.allow ?? []).map(parseRule);
    this.#deny = (options.deny ?? []).map(parseRule);
  }

  /**
   * Judges the name in a URL before anything is resolved. `hostname` is the URL's hostname (lower-case;
   * IPv6 in brackets), `port` the effective port. IP literals are judged completely here.
   */
  checkHost(hostname: string, port: number): HostVerdict {
    const name = canonicalName(hostname);
    if (this.#deny.some((rule) => matchesName(rule, name, port))) {
      return { allowed: false, reason: `the host '${hostname}' is on the media deny-list` };
    }
    const address = parseAddress(name);
    if (address !== undefined) return this.checkAddress(name, port, name);
    return { allowed: true };
  }

  /** Judges one address that `hostname` resolved to (or is). */
  checkAddress(hostname: string, port: number, address: string): HostVerdict {
    const name = canonicalName(hostname);
    const parsed = parseAddress(address);
    if (parsed === undefined) return { allowed: false, reason: `'${address}' is not an IP address` };
    if (this.#deny.some((rule) => matchesName(rule, name, port) || matchesAddress(rule, parsed, port))) {
      return { allowed: false, reason: `the address of '${hostname}' is on the media deny-list` };
    }
    const kind = classifyAddress(address);
    if (kind === undefined) return { allowed: true };
    if (this.#allow.some((rule) => matchesName(rule, name, port) || matchesAddress(rule, parsed, port))) {
      return { allowed: true };
    }
    const what = parseAddress(name) === undefined ? `'${hostname}' resolves to a ${kind} address` : `'${hostname}' is a ${kind} address`;
    return {
      allowed: false,
      reason: `${what}, which Iris does not fetch from (an operator can allow it with --allow-media-host)`,
    };
  }
}

/** Lower-case, without the trailing dot of a fully qualified name (`Example.COM.` is `example.com`). */
function canonicalName(hostname: string): string {
  return hostname.toLowerCase().replace(/\.$/, '');
}

function matchesName(rule: HostRule, name: string, port: number): boolean {
  if (rule.kind !== 'name') return false;
  return rule.name === name && (rule.port === undefined || rule.port === port);
}

function matchesAddress(rule: HostRule, address: ipaddr.IPv4 | ipaddr.IPv6, port: number): boolean {
  if (rule.kind !== 'cidr') return false;
  if (rule.port !== undefined && rule.port !== port) return false;
  const [base, bits] = rule.range;
  if (base.kind() !== address.kind()) return false;
  return address.match(base as never, bits);
}
