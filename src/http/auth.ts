/**
 * Bearer-key authentication for the API routes. Keys are compared in constant time (both sides hashed
 * to a fixed length first, so neither content nor length leaks through timing). With no keys configured,
 * every request passes: main.ts refuses to listen on a non-loopback interface in that case unless the
 * user explicitly opted in.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { invalidApiKey } from '../errors.js';

/** Checks the Authorization header of a request against the configured keys. */
export function createAuthCheck(apiKeys: readonly string[]): (request: FastifyRequest) => void {
  const digests = apiKeys.map(digest);
  return (request) => {
    if (digests.length === 0) return;
    const header = request.headers.authorization;
    if (header === undefined) {
      throw invalidApiKey('You did not provide an API key. Send it as "Authorization: Bearer <key>".');
    }
    const match = /^Bearer\s+(.+)$/i.exec(header.trim());
    if (!match?.[1]) throw invalidApiKey('The Authorization header must be "Bearer <key>".');
    const candidate = digest(match[1].trim());
    // Check every key so the time taken does not reveal which one matched.
    let ok = false;
    for (const key of digests) ok = timingSafeEqual(key, candidate) || ok;
    if (!ok) throw invalidApiKey('Incorrect API key provided.');
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
