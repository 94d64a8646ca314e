/**
 * Caps the client connections of the HTTP server without letting idle ones lock out real work. Node's own
 * `server.maxConnections` refuses every newcomer once the cap is reached, so a flood of connections that
 * send nothing (or dawdle over their headers) would keep a client with a valid key out. Here a newcomer over
 * the cap closes the oldest connection that has no request in progress (one still sending its headers
 * first, then an idle keep-alive one); only when every connection is working on a request is the newcomer
 * refused. Slow connections are bounded in time separately (headers and body deadlines, keep-alive timeout).
 */
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';

interface Tracked {
  /** Requests received on it whose responses are not finished. */
  inFlight: number;
  /** Whether it ever carried a request (an idle keep-alive socket) or not (still sending headers). */
  served: boolean;
}

/** What the guard reports. */
export interface ConnectionGuard {
  /** Open connections now. */
  readonly open: number;
}

/** Installs the connection cap on an HTTP server. */
export function guardConnections(server: FastifyInstance['server'], maxConnections: number): ConnectionGuard {
  // Insertion order is age order: the first match in a scan is the oldest.
  const sockets = new Map<Socket, Tracked>();

  server.on('connection', (socket: Socket) => {
    if (sockets.size >= maxConnections && !evictIdle(sockets)) {
      socket.destroy();
      return;
    }
    sockets.set(socket, { inFlight: 0, served: false });
    socket.once('close', () => sockets.delete(socket));
  });

  server.on('request', (request, response) => {
    const tracked = sockets.get(request.socket);
    if (!tracked) return;
    tracked.inFlight += 1;
    tracked.served = true;
    response.once('close', () => {
      tracked.inFlight -= 1;
    });
  });

  return {
    get open() {
      return sockets.size;
    },
  };
}

/** Closes the oldest connection without a request in progress; false when every connection is busy. */
function evictIdle(sockets: Map<Socket, Tracked>): boolean {
  let idleKeepAlive: Socket | undefined;
  for (const [socket, tracked] of sockets) {
    if (tracked.inFlight > 0) continue;
    if (!tracked.served) {
      drop(sockets, socket);
      return true;
    }
    idleKeepAlive ??= socket;
  }
  if (idleKeepAlive === undefined) return false;
  drop(sockets, idleKeepAlive);
  return true;
}

function drop(sockets: Map<Socket, Tracked>, socket: Socket): void {
  sockets.delete(socket);
  socket.destroy();
}
