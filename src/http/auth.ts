/**
 * API-key authentication for the API routes: the key comes as a bearer token, or in `x-api-key` as
 * Anthropic's clients send it. Two kinds of key are accepted:
 * - keys from the configuration (`--api-key`, `IRIS_API_KEYS`, `api_keys:`), in clear or as
 *   `sha256:<hex>`: admin keys without limits. The presented key's SHA-256 is compared with every one of
 *   them in constant time, so neither which key matched nor how much of it leaks through timing.
 * - keys from the database (`iris keys create`): looked up by the presented key's SHA-256 in the gateway's
 *   in-memory directory (a lookup by digest reveals nothing an attacker can steer), then compared in
 *   constant time. They carry limits, a model scope and an expiry.
 * With no key of either kind, every request passes: serve refuses to listen on a non-loopback interface in
 * that case unless the user explicitly opted in. A key never appears in a log or an error message.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { invalidApiKey } from '../errors.js';
import type { KeyDirectory, KeyLimits } from '../store/api-keys.js';

/** Who is calling. */
export interface Caller {
  /** The database key's id; null for configuration keys and open servers. */
  keyId: string | null;
  /** The key's name, `config` for configuration keys, null for open servers. */
  keyName: string | null;
  /** May see every key's usage. */
  admin: boolean;
  limits: KeyLimits;
  /** Model ids the key may use; undefined for all. */
  models?: readonly string[];
}

const callers = new WeakMap<FastifyRequest, Caller>();

/** The caller of an authenticated request (an open caller for requests that needed no key). */
export function callerOf(request: FastifyRequest): Caller {
  return callers.get(request) ?? OPEN_CALLER;
}

/** Whether a caller may use a model; a scoped key sees other models as absent. */
export function mayUseModel(caller: Caller, modelId: string): boolean {
  return caller.models === undefined || caller.models.includes(modelId);
}

const OPEN_CALLER: Caller = Object.freeze({ keyId: null, keyName: null, admin: true, limits: {} });
const CONFIG_CALLER: Caller = Object.freeze({ keyId: null, keyName: 'config', admin: true, limits: {} });

/** What keys are accepted. */
export interface AuthOptions {
  /** Configuration keys, in clear or `sha256:<hex>`. */
  configKeys: readonly string[];
  /** The database's active keys. */
  directory?: KeyDirectory;
  /** Clock for key expiry. @default Date.now */
  now?: () => number;
}

/**
 * The API key a request presents: `Authorization: Bearer <key>`, or `x-api-key: <key>` as Anthropic's
 * clients send it. Undefined when neither header is there; throws 401 for a malformed Authorization header.
 */
export function presentedApiKey(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined) {
    const apiKeyHeader = request.headers['x-api-key'];
    const value = Array.isArray(apiKeyHeader) ? apiKeyHeader[0] : apiKeyHeader;
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }
  const match = /^Bearer\s+(.+)$/i.exec(header.trim());
  if (!match?.[1]) throw invalidApiKey('The Authorization header must be "Bearer <key>".');
  return match[1].trim();
}

/**
 * Who made a request, for data kept per API key (stored responses): a hash of the presented key, or
 * `anonymous` when none was presented (only possible when the server has no keys).
 */
export function apiKeyOwner(request: FastifyRequest): string {
  const key = presentedApiKey(request);
  return key === undefined ? 'anonymous' : `key:${digest(key).toString('hex')}`;
}

/** Checks the API key of a request (bearer or `x-api-key`) and remembers its caller (see {@link callerOf}). */
export function createAuthCheck(options: AuthOptions): (request: FastifyRequest) => void {
  const configDigests = options.configKeys.map((key) =>
    key.startsWith('sha256:') ? Buffer.from(key.slice('sha256:'.length), 'hex') : digest(key),
  );
  const now = options.now ?? Date.now;
  return (request) => {
    const directory = options.directory;
    if (configDigests.length === 0 && (directory === undefined || directory.size === 0)) return;
    const key = presentedApiKey(request);
    if (key === undefined) {
      throw invalidApiKey('You did not provide an API key. Send it as "Authorization: Bearer <key>" (or "x-api-key: <key>").');
    }
    const candidate = digest(key);
    // Check every configuration key so the time taken does not reveal which one matched.
    let configured = false;
    for (const key of configDigests) configured = timingSafeEqual(key, candidate) || configured;
    if (configured) {
      callers.set(request, CONFIG_CALLER);
      return;
    }
    const record = directory?.find(candidate.toString('hex'));
    if (!record || !timingSafeEqual(Buffer.from(record.keyHash, 'hex'), candidate)) {
      throw invalidApiKey('Incorrect API key provided.');
    }
    if (record.expiresAt !== undefined && record.expiresAt <= now()) {
      throw invalidApiKey(`The API key '${record.name}' expired on ${new Date(record.expiresAt).toISOString()}.`);
    }
    callers.set(request, {
      keyId: record.id,
      keyName: record.name,
      admin: record.admin,
      limits: record.limits,
      ...(record.models === undefined ? {} : { models: record.models }),
    });
  };
}

function digest(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

/** Whether a listen host is loopback only. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  return bare === 'localhost' || bare === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare);
}
