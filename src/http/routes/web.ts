/**
 * The playground page (GET / and /playground), the API reference (GET /docs), their static assets
 * (GET /web/<file>) and the OpenAPI document (GET /openapi.json). None of them needs an API key: the page asks
 * the user for one and sends it with every API call it makes.
 *
 * The assets are the plain files in src/web (copied to dist/web by `npm run build`), read once at startup
 * and served from memory. The pages load nothing from any other host: a Content-Security-Policy of 'self'
 * holds them to it, so they work offline and behind a firewall.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { extname } from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { buildOpenApiDocument } from '../openapi-document.js';

/** Where the page's files are: src/web next to src/http, or dist/web next to dist/http. */
const WEB_DIR = new URL('../../web/', import.meta.url);

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

// Images the user adds are data: or blob: URLs; everything else comes from this server only.
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "style-src 'self'",
  "script-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
  "form-action 'none'",
].join('; ');

/** Paths of the page, its assets and the document: served without an API key. */
export function isPublicWebPath(path: string): boolean {
  return path === '/' || path === '/playground' || path === '/docs' || path === '/openapi.json' || path.startsWith('/web/');
}

interface Asset {
  body: Buffer;
  type: string;
}

function loadAssets(): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  for (const name of readdirSync(WEB_DIR)) {
    const type = CONTENT_TYPES[extname(name)];
    if (type !== undefined) assets.set(name, { body: readFileSync(new URL(name, WEB_DIR)), type });
  }
  return assets;
}

/** Registers the page, docs, asset and OpenAPI routes. */
export function registerWeb(app: FastifyInstance, deps: { version: string }): void {
  const assets = loadAssets();
  const document = JSON.stringify(buildOpenApiDocument(deps.version));
  const send = (reply: FastifyReply, name: string) => {
    const asset = assets.get(name);
    if (asset === undefined) return reply.callNotFound();
    void reply
      .header('content-type', asset.type)
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff');
    if (asset.type.startsWith('text/html')) void reply.header('content-security-policy', CONTENT_SECURITY_POLICY);
    return reply.send(asset.body);
  };
  app.get('/', (_request, reply) => send(reply, 'index.html'));
  app.get('/playground', (_request, reply) => send(reply, 'index.html'));
  app.get('/docs', (_request, reply) => send(reply, 'docs.html'));
  app.get<{ Params: { name: string } }>('/web/:name', (request, reply) => send(reply, request.params.name));
  app.get('/openapi.json', (_request, reply) => reply.header('content-type', 'application/json; charset=utf-8').send(document));
}
