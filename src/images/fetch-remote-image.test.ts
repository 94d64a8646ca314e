import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';

import { IrisError } from '../errors.js';
import { RemoteImageFetcher, type ResolveHost } from './fetch-remote-image.js';
import { MediaHostRules } from './media-host-rules.js';

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

interface TestServer {
  server: Server;
  port: number;
  connections: number;
  requests: IncomingMessage[];
  handle: Handler;
}

async function listen(host: string, handle: Handler): Promise<TestServer> {
  const state = { connections: 0, requests: [] as IncomingMessage[], handle } as TestServer;
  state.server = createServer((request, response) => {
    state.requests.push(request);
    state.handle(request, response);
  });
  state.server.on('connection', () => (state.connections += 1));
  await new Promise<void>((resolve) => state.server.listen(0, host, resolve));
  state.port = (state.server.address() as AddressInfo).port;
  return state;
}

const PARAM = 'messages[0].content[0].image_url.url';
let allowed: TestServer; // 127.0.0.2, on the allow-list
let forbidden: TestServer; // 127.0.0.3, never allowed

before(async () => {
  allowed = await listen('127.0.0.2', (_request, response) => response.end('ok'));
  forbidden = await listen('127.0.0.3', (_request, response) => response.end('secret'));
});
after(() => {
  allowed.server.close();
  allowed.server.closeAllConnections();
  forbidden.server.close();
  forbidden.server.closeAllConnections();
});

function fetcher(options: { timeoutMs?: number; resolveHost?: ResolveHost; deny?: string[] } = {}): RemoteImageFetcher {
  return new RemoteImageFetcher(
    { rules: new MediaHostRules({ allow: ['127.0.0.2'], deny: options.deny ?? [] }), userAgent: 'Iris/test', timeoutMs: options.timeoutMs ?? 2000 },
    options.resolveHost ? { resolveHost: options.resolveHost } : {},
  );
}

async function rejectsWith(promise: Promise<unknown>, status: number, code: string, pattern?: RegExp): Promise<IrisError> {
  let caught: unknown;
  await promise.then(
    () => assert.fail('expected a rejection'),
    (error: unknown) => (caught = error),
  );
  assert.ok(caught instanceof IrisError, `expected an IrisError, got ${String(caught)}`);
  assert.equal(caught.status, status, caught.message);
  assert.equal(caught.code, code, caught.message);
  assert.equal(caught.param, PARAM);
  assert.ok(caught.message.includes(PARAM), caught.message);
  if (pattern) assert.match(caught.message, pattern);
  return caught;
}

describe('RemoteImageFetcher', () => {
  it('fetches from an allowed host with an Iris User-Agent', async () => {
    allowed.handle = (_request, response) => response.end(Buffer.from([1, 2, 3]));
    const images = fetcher();
    const fetched = await images.fetch(`http://127.0.0.2:${allowed.port}/a.png`, { param: PARAM, maxBytes: 100 });
    assert.deepEqual([...fetched.bytes], [1, 2, 3]);
    assert.equal(allowed.requests.at(-1)?.headers['user-agent'], 'Iris/test');
    await images.dispose();
  });

  it('refuses other schemes and credentials before connecting', async () => {
    const images = fetcher();
    for (const url of ['file:///etc/passwd', 'ftp://127.0.0.2/x.png', 'gopher://x', 'javascript:alert(1)', 'not a url']) {
      await rejectsWith(images.fetch(url, { param: PARAM, maxBytes: 100 }), 400, 'invalid_image_url');
    }
    await rejectsWith(images.fetch(`http://user:pw@127.0.0.2:${allowed.port}/`, { param: PARAM, maxBytes: 100 }), 400, 'invalid_image_url');
    await images.dispose();
  });

  it('refuses forbidden addresses in every spelling, without ever connecting', async () => {
    const images = fetcher();
    const before = forbidden.connections;
    const port = forbidden.port;
    const spellings = [
      `http://127.0.0.3:${port}/`,
      `http://2130706435:${port}/`, // decimal
      `http://0x7f000003:${port}/`, // hex
      `http://0177.0.0.3:${port}/`, // octal
      `http://0x7f.3:${port}/`, // short hex form
      `http://127.3:${port}/`,
      `http://[::ffff:127.0.0.3]:${port}/`, // IPv4-mapped IPv6
      `http://[::ffff:7f00:3]:${port}/`,
      `http://[::127.0.0.3]:${port}/`, // IPv4-compatible IPv6
      `http://[::1]:${port}/`,
      `http://localhost:${port}/`,
      `http://LocalHost:${port}/`,
      `http://169.254.169.254/latest/meta-data/`,
      `http://10.0.0.1/`,
      `http://0.0.0.0:${port}/`,
      `http://0:${port}/`,
      `http://100.64.0.1/`,
      `http://[fe80::1]/`,
      `http://[fd00::1]/`,
      `http://[64:ff9b::7f00:3]/`, // NAT64
      `http://224.0.0.1/`,
      `https://192.168.1.1/`,
    ];
    for (const url of spellings) {
      await rejectsWith(images.fetch(url, { param: PARAM, maxBytes: 100 }), 400, 'invalid_image_url', /refused/);
    }
    assert.equal(forbidden.connections, before, 'the forbidden server was never connected to');
    await images.dispose();
  });

  it('re-checks every redirect hop and never connects to a forbidden target', async () => {
    const images = fetcher();
    const before = forbidden.connections;
    allowed.handle = (_request, response) => {
      response.writeHead(302, { location: `http://127.0.0.3:${forbidden.port}/secret` }).end();
    };
    await rejectsWith(images.fetch(`http://127.0.0.2:${allowed.port}/r`, { param: PARAM, maxBytes: 100 }), 400, 'invalid_image_url');
    allowed.handle = (_request, response) => response.writeHead(301, { location: 'file:///etc/passwd' }).end();
    await rejectsWith(images.fetch(`http://127.0.0.2:${allowed.port}/r`, { param: PARAM, maxBytes: 100 }), 400, 'invalid_image_url', /redirects to the 'file' scheme/);
    assert.equal(forbidden.connections, before);
    await images.dispose();
  });

  it('follows up to 3 redirects, relative ones included, and refuses a 4th', async () => {
    const images = fetcher();
    allowed.handle = (request, response) => {
      const hop = Number(new URL(request.url ?? '/', 'http://x').searchParams.get('hop') ?? '0');
      if (request.url?.startsWith('/loop')) {
        response.writeHead(307, { location: `/loop?hop=${hop + 1}` }).end();
      } else if (hop < 3) {
        response.writeHead(302, { location: `/chain?hop=${hop + 1}` }).end();
      } else {
        response.end('done');
      }
    };
    const fetched = await images.fetch(`http://127.0.0.2:${allowed.port}/chain?hop=0`, { param: PARAM, maxBytes: 100 });
    assert.equal(Buffer.from(fetched.bytes).toString(), 'done');
    assert.match(fetched.finalUrl, /hop=3$/);
    await rejectsWith(images.fetch(`http://127.0.0.2:${allowed.port}/loop`, { param: PARAM, maxBytes: 100 }), 400, 'image_fetch_failed', /more than 3 redirects/);
    await images.dispose();
  });

  it('answers non-2xx, refused connections and unresolvable names with a 400 naming the reason', async () => {
    const images = fetcher();
    allowed.handle = (_request, response) => response.writeHead(404).end('nope');
    await rejectsWith(images.fetch(`http://127.0.0.2:${allowed.port}/missing.png`, { param: PARAM, maxBytes: 100 }), 400, 'image_fetch_failed', /HTTP 404/);
    await rejectsWith(images.fetch('http://127.0.0.2:1/', { param: PARAM, maxBytes: 100 }), 400, 'image_fetch_failed', /ECONNREFUSED/);
    const noDns = fetcher({ resolveHost: async () => Promise.reject(Object.assign(new Error('nx'), { code: 'ENOTFOUND' })) });
    await rejectsWith(noDns.fetch('http://images.invalid/x.png', { param: PARAM, maxBytes: 100 }), 400, 'image_fetch_failed', /could not be resolved/);
    await Promise.all([images.dispose(), noDns.dispose()]);
  });

  it('times out slow hosts (headers or body) within the deadline', async () => {
    const images = fetcher({ timeoutMs: 300 });
    allowed.handle = () => undefined; // never answers
    const started = Date.now();
    await rejectsWith(images.fetch(`http://127.0.0.2:${allowed.port}/slow`, { param: PARAM, maxBytes: 100 }), 400, 'image_fetch_failed', /longer than 0.3 s/);
    allowed.handle = (_request, response) => {
      response.writeHead(200);
      response.write('a');
    };
    await rejectsWith(images.fetch(`http://127.0.0.2:${allowed.port}/trickle`, { param: PARAM, maxBytes: 100 }), 400, 'image_fetch_failed', /longer than/);
    assert.ok(Date.now() - started < 2000);
    await images.dispose();
  });

  it('stops reading an endless body at the limit, and refuses a declared oversize body unread', async () => {
    const images = fetcher();
    let written = 0;
    allowed.handle = (_request, response) => {
      response.writeHead(200, { 'content-type': 'image/png' });
      const chunk = Buffer.alloc(64 * 1024, 7);
      const pump = (): void => {
        while (!response.destroyed && written < 512 * 1024 * 1024) {
          written += chunk.length;
          if (!response.write(chunk)) {
            response.once('drain', pump);
            return;
          }
        }
      };
      pump();
    };
    await rejectsWith(images.fetch(`http://127.0.0.2:${allowed.port}/endless`, { param: PARAM, maxBytes: 1_000_000 }), 413, 'image_too_large');
    assert.ok(written < 16 * 1024 * 1024, `the server only got to write ${written} bytes`);
    allowed.handle = (_request, response) => response.writeHead(200, { 'content-length': '5000000' }).end();
    await rejectsWith(images.fetch(`http://127.0.0.2:${allowed.port}/big`, { param: PARAM, maxBytes: 1_000_000 }), 413, 'image_too_large');
    allowed.handle = (_request, response) => response.end(Buffer.alloc(600));
    const budget = { used: 0, max: 1000 };
    await images.fetch(`http://127.0.0.2:${allowed.port}/a`, { param: PARAM, maxBytes: 1000, budget });
    await rejectsWith(images.fetch(`http://127.0.0.2:${allowed.port}/b`, { param: PARAM, maxBytes: 1000, budget }), 413, 'image_too_large', /add up to more than/);
    await images.dispose();
  });

  it('connects to the address it checked (no second lookup), and refuses names with any forbidden address', async () => {
    let lookups = 0;
    const answers = [['127.0.0.2'], ['127.0.0.3']];
    const rebinding = fetcher({
      resolveHost: async () => answers[Math.min(lookups++, answers.length - 1)] ?? [],
    });
    allowed.handle = (_request, response) => response.end('public');
    const before = forbidden.connections;
    const fetched = await rebinding.fetch(`http://rebind.test:${allowed.port}/x`, { param: PARAM, maxBytes: 100 });
    assert.equal(Buffer.from(fetched.bytes).toString(), 'public');
    assert.equal(lookups, 1, 'one lookup per connection');
    assert.equal(allowed.requests.at(-1)?.headers.host, `rebind.test:${allowed.port}`, 'the Host header keeps the name');
    await rebinding.dispose();

    const mixed = fetcher({ resolveHost: async () => ['127.0.0.2', '127.0.0.3'] });
    await rejectsWith(mixed.fetch(`http://mixed.test:${allowed.port}/x`, { param: PARAM, maxBytes: 100 }), 400, 'invalid_image_url');
    await mixed.dispose();
    assert.equal(forbidden.connections, before);
  });

  it('honours the deny-list over the allow-list', async () => {
    const images = fetcher({ deny: [`127.0.0.2:${allowed.port}`] });
    await rejectsWith(images.fetch(`http://127.0.0.2:${allowed.port}/x`, { param: PARAM, maxBytes: 100 }), 400, 'invalid_image_url', /deny-list/);
    await images.dispose();
  });
});
