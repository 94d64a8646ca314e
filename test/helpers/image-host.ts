/**
 * A local HTTP server standing in for a remote image host, bound to one loopback address (127.0.0.2 for an
 * allowed host, 127.0.0.3 for a forbidden one). It counts every connection and request, so tests can prove
 * that Iris never even connected to a host it must refuse.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Answers one request. */
export type RouteHandler = (request: IncomingMessage, response: ServerResponse) => void;

/** A running image host. */
export interface ImageHost {
  /** `http://127.0.0.x:port` */
  origin: string;
  port: number;
  /** TCP connections accepted so far. */
  connections: number;
  /** Paths requested so far (with query), in order. */
  requests: string[];
  /** User-Agent headers seen, in order. */
  userAgents: string[];
  /** Serves `bytes` at `path` with a Content-Type that may lie. */
  file(path: string, bytes: Uint8Array, contentType?: string): void;
  /** Answers `path` with a handler. */
  route(path: string, handler: RouteHandler): void;
  close(): Promise<void>;
}

/** Starts an image host on `address` (any free port). Unknown paths answer 404. */
export async function startImageHost(address: string): Promise<ImageHost> {
  const routes = new Map<string, RouteHandler>();
  const host = { connections: 0, requests: [] as string[], userAgents: [] as string[] } as ImageHost;
  const server: Server = createServer((request, response) => {
    const url = request.url ?? '/';
    host.requests.push(url);
    host.userAgents.push(String(request.headers['user-agent'] ?? ''));
    const handler = routes.get(url.split('?')[0] ?? url);
    if (handler) handler(request, response);
    else response.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  });
  server.on('connection', () => (host.connections += 1));
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  host.port = (server.address() as AddressInfo).port;
  host.origin = `http://${address}:${host.port}`;
  host.file = (path, bytes, contentType = 'image/png') =>
    routes.set(path, (_request, response) => response.writeHead(200, { 'content-type': contentType, 'content-length': bytes.length }).end(bytes));
  host.route = (path, handler) => routes.set(path, handler);
  host.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return host;
}
