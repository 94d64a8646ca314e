/**
 * Remote image URLs end to end: Iris on the tiny model, image hosts on loopback (127.0.0.2 allowed through
 * IRIS_ALLOW_MEDIA_HOSTS, 127.0.0.3 never allowed), every format by URL, every SSRF spelling, redirects,
 * 404 / slow / endless hosts, pixel bombs, and the bookkeeping (concurrent fetches, one fetch per URL,
 * User-Agent). Every answer is checked against OpenAI's schema.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { IRIS_VERSION } from '../../src/cli/cli-support.js';
import { startImageHost, type ImageHost } from '../helpers/image-host.js';
import { makeAnimated, makeBmp, makeImage, makeLargeJpeg, makePixelBomb, makeRotatedJpeg } from '../helpers/images.js';
import { assertMatchesSchema } from '../helpers/openapi.js';
import { startIris, syntheticModel, type IrisProcess } from '../helpers/test-env.js';

const MODEL = 'tiny';
const PARAM = 'messages[0].content[1].image_url.url';
const FETCH_TIMEOUT_MS = 1500;

let iris: IrisProcess;
let client: OpenAI;
let allowed: ImageHost;
let forbidden: ImageHost;
let configDir: string;
let imageTokens: number;

before(async () => {
  allowed = await startImageHost('127.0.0.2');
  forbidden = await startImageHost('127.0.0.3');
  forbidden.route('/secret.png', (_request, response) => response.end('internal'));
  configDir = await mkdtemp(join(tmpdir(), 'iris-remote-'));
  const config = join(configDir, 'iris.yaml');
  await writeFile(config, `limits:\n  image_fetch_timeout_ms: ${FETCH_TIMEOUT_MS}\n`);
  const model = await syntheticModel('tiny');
  imageTokens = model.imageTokensPerImage;
  iris = await startIris({
    args: ['--config', config, '--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', MODEL, '--ctx-size', '8192', '--slots', '2'],
    env: { IRIS_ALLOW_MEDIA_HOSTS: '127.0.0.2' },
  });
  client = new OpenAI({ baseURL: `${iris.baseUrl}/v1/openai`, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });
});

after(async () => {
  await iris?.stop();
  await allowed?.close();
  await forbidden?.close();
  await rm(configDir, { recursive: true, force: true });
});

const ask = (...urls: (string | { url: string; detail: 'low' | 'high' | 'auto' })[]) => ({
  model: MODEL,
  max_tokens: 1,
  temperature: 0,
  messages: [
    {
      role: 'user' as const,
      content: [
        { type: 'text' as const, text: 'Describe.' },
        ...urls.map((url) => ({ type: 'image_url' as const, image_url: typeof url === 'string' ? { url } : url })),
      ],
    },
  ],
});

async function post(body: unknown): Promise<{ status: number; json: any; ms: number }> {
  const started = performance.now();
  const response = await fetch(`${iris.baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: await response.json(), ms: performance.now() - started };
}

function assertError(result: { status: number; json: any }, status: number, code: string, pattern?: RegExp, param = PARAM): void {
  assert.equal(result.status, status, JSON.stringify(result.json));
  assertMatchesSchema('ErrorResponse', result.json);
  assert.equal(result.json.error.code, code, result.json.error.message);
  assert.equal(result.json.error.param, param);
  assert.ok(result.json.error.message.includes(param), result.json.error.message);
  if (pattern) assert.match(result.json.error.message, pattern);
}

describe('images by URL', () => {
  test('every format, whatever Content-Type the host claims, through the official client', async () => {
    const files: [string, Buffer, string][] = [
      ['/a.jpg', await makeImage({ format: 'jpeg', seed: 11 }), 'image/jpeg'],
      ['/a.png', await makeImage({ format: 'png', seed: 12 }), 'application/octet-stream'],
      ['/a.webp', await makeImage({ format: 'webp', seed: 13 }), 'image/jpeg'],
      ['/a.gif', await makeImage({ format: 'gif', seed: 14 }), 'image/gif'],
      ['/a.avif', await makeImage({ format: 'avif', seed: 15 }), 'image/avif'],
      ['/a.tiff', await makeImage({ format: 'tiff', seed: 16 }), 'image/tiff'],
      ['/a.bmp', await makeBmp(50, 40), 'image/bmp'],
      ['/rotated.jpg', await makeRotatedJpeg(), 'image/jpeg'],
      ['/alpha.png', await makeImage({ alpha: true, seed: 17 }), 'image/png'],
      ['/animated.gif', await makeAnimated('gif'), 'image/gif'],
      ['/animated.webp', await makeAnimated('webp'), 'image/webp'],
    ];
    for (const [path, bytes, type] of files) allowed.file(path, bytes, type);
    for (const [path] of files) {
      const completion = await client.chat.completions.create(ask(`${allowed.origin}${path}`));
      assertMatchesSchema('CreateChatCompletionResponse', completion);
      const details = completion.usage!.prompt_tokens_details as { image_tokens?: number };
      assert.equal(details.image_tokens, imageTokens, path);
    }
    assert.ok(allowed.userAgents.every((agent) => agent === `Iris/${IRIS_VERSION}`), `User-Agent: ${allowed.userAgents[0]}`);
  });

  test('the images of one request are fetched concurrently, each distinct URL once', async () => {
    const png = await makeImage({ seed: 21 });
    let inFlight = 0;
    let maxInFlight = 0;
    allowed.route('/delayed.png', (_request, response) => {
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      setTimeout(() => {
        inFlight -= 1;
        response.writeHead(200, { 'content-type': 'image/png' }).end(png);
      }, 150);
    });
    const before = allowed.requests.length;
    const urls = ['?a=1', '?a=2', '?a=3', '?a=1', '?a=2'].map((query) => `${allowed.origin}/delayed.png${query}&run=${Date.now()}`);
    const result = await post(ask(...urls));
    assert.equal(result.status, 200, JSON.stringify(result.json));
    assert.equal(allowed.requests.length - before, 3, 'identical URLs are fetched once');
    assert.equal(maxInFlight, 3, 'all distinct URLs were in flight at once');
    assert.ok(result.ms < 5000, `took ${result.ms.toFixed(0)} ms`);
    assert.equal(result.json.usage.prompt_tokens_details.image_tokens, 5 * imageTokens);
  });

  test('two adjacent images, the first one cached from the previous request, still work (llama-server cache bug)', async () => {
    const a = `${allowed.origin}/adjacent-a.png`;
    allowed.file('/adjacent-a.png', await makeImage({ seed: 61 }));
    allowed.file('/adjacent-b.png', await makeImage({ seed: 62 }));
    allowed.file('/adjacent-c.png', await makeImage({ seed: 63 }));
    const first = await post(ask(a, `${allowed.origin}/adjacent-b.png`));
    assert.equal(first.status, 200, JSON.stringify(first.json));
    const second = await post(ask(a, `${allowed.origin}/adjacent-c.png`));
    assert.equal(second.status, 200, JSON.stringify(second.json));
    assert.equal(second.json.usage.prompt_tokens, first.json.usage.prompt_tokens);
    assert.ok(iris.logRecords('retrying without prompt cache').length > 0, 'the engine hit and worked around the split-image cache failure');
  });

  test('a 12 MP JPEG by URL costs the same at low and high on a fixed-resolution model', async () => {
    allowed.file('/camera.jpg', await makeLargeJpeg(), 'image/jpeg');
    const low = await post(ask({ url: `${allowed.origin}/camera.jpg`, detail: 'low' }));
    const high = await post(ask({ url: `${allowed.origin}/camera.jpg`, detail: 'high' }));
    assert.equal(low.status, 200, JSON.stringify(low.json));
    assert.equal(high.status, 200);
    assert.equal(low.json.usage.prompt_tokens, high.json.usage.prompt_tokens);
    assert.equal(low.json.usage.prompt_tokens_details.image_tokens, imageTokens);
  });
});

describe('remote image failures are 4xx naming the part', () => {
  test('404, non-image content, SVG and truncated bytes', async () => {
    assertError(await post(ask(`${allowed.origin}/missing.png`)), 400, 'image_fetch_failed', /HTTP 404/);
    allowed.file('/page.html', Buffer.from('<html><body>hello</body></html>'), 'text/html');
    assertError(await post(ask(`${allowed.origin}/page.html`)), 400, 'invalid_image', /not an image/);
    allowed.file('/vector.svg', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'), 'image/svg+xml');
    assertError(await post(ask(`${allowed.origin}/vector.svg`)), 400, 'invalid_image', /SVG/);
    const jpeg = await makeImage({ format: 'jpeg', width: 128, height: 128, seed: 31 });
    allowed.file('/truncated.jpg', jpeg.subarray(0, jpeg.length >> 1), 'image/jpeg');
    assertError(await post(ask(`${allowed.origin}/truncated.jpg`)), 400, 'invalid_image');
  });

  test('slow hosts time out and endless ones are cut off at 20 MB, the server serving on', async () => {
    allowed.route('/slow.png', () => undefined);
    const slow = await post(ask(`${allowed.origin}/slow.png`));
    assertError(slow, 400, 'image_fetch_failed', /longer than 1.5 s/);
    assert.ok(slow.ms < FETCH_TIMEOUT_MS + 2000, `answered in ${slow.ms.toFixed(0)} ms`);

    let written = 0;
    allowed.route('/endless.png', (_request, response) => {
      response.writeHead(200, { 'content-type': 'image/png' });
      const chunk = Buffer.alloc(256 * 1024, 1);
      const pump = (): void => {
        while (!response.destroyed && written < 1024 * 1024 * 1024) {
          written += chunk.length;
          if (!response.write(chunk)) return void response.once('drain', pump);
        }
      };
      pump();
    });
    assertError(await post(ask(`${allowed.origin}/endless.png`)), 413, 'image_too_large', /20000000-byte limit/);
    assert.ok(written < 64 * 1024 * 1024, `the host wrote ${(written / 1e6).toFixed(1)} MB before Iris hung up`);
    allowed.file('/ok.png', await makeImage({ seed: 41 }));
    assert.equal((await post(ask(`${allowed.origin}/ok.png`))).status, 200);
  });

  test('a pixel bomb by URL is refused fast, and the server keeps serving', async () => {
    allowed.file('/bomb.png', await makePixelBomb(30_000, 30_000));
    const bomb = await post(ask(`${allowed.origin}/bomb.png`));
    assertError(bomb, 413, 'image_too_large', /pixels/);
    assert.ok(bomb.ms < 1000, `refused in ${bomb.ms.toFixed(0)} ms`);
    console.log(`pixel bomb (30000x30000 PNG, ${(await makePixelBomb()).length} bytes) by URL refused in ${bomb.ms.toFixed(1)} ms`);
    allowed.file('/after-bomb.png', await makeImage({ seed: 42 }));
    assert.equal((await post(ask(`${allowed.origin}/after-bomb.png`))).status, 200);
  });

  test('other schemes, credentials and junk URLs are 400 invalid_image_url', async () => {
    for (const url of ['file:///etc/passwd', 'ftp://127.0.0.2/a.png', 'gopher://127.0.0.2/', 'not a url', '//127.0.0.2/a.png', `http://user:pass@127.0.0.2:${allowed.port}/ok.png`]) {
      assertError(await post(ask(url)), 400, 'invalid_image_url');
    }
  });
});

describe('SSRF protection', () => {
  test('forbidden addresses in every spelling are refused without a connection', async () => {
    const port = forbidden.port;
    const before = forbidden.connections;
    const urls = [
      `http://127.0.0.3:${port}/secret.png`,
      `http://2130706435:${port}/secret.png`,
      `http://0x7f000003:${port}/secret.png`,
      `http://0177.0.0.3:${port}/secret.png`,
      `http://017700000003:${port}/secret.png`,
      `http://127.3:${port}/secret.png`,
      `http://[::ffff:127.0.0.3]:${port}/secret.png`,
      `http://[::ffff:7f00:3]:${port}/secret.png`,
      `http://[::127.0.0.3]:${port}/secret.png`,
      `http://localhost:${port}/secret.png`,
      `http://[::1]:${port}/secret.png`,
      `http://0.0.0.0:${port}/secret.png`,
      'http://169.254.169.254/latest/meta-data/',
      'http://[fd00:ec2::254]/latest/meta-data/',
      'http://10.0.0.1/a.png',
      'http://172.16.0.1/a.png',
      'http://192.168.0.1/a.png',
      'http://100.64.0.1/a.png',
      'http://[fe80::1]/a.png',
      'http://224.0.0.1/a.png',
      `https://127.0.0.3:${port}/secret.png`,
    ];
    for (const url of urls) assertError(await post(ask(url)), 400, 'invalid_image_url', /refused/);
    assert.equal(forbidden.connections, before, 'no connection reached the forbidden host');
  });

  test('a redirect from an allowed host to a forbidden one is refused before connecting', async () => {
    const before = forbidden.connections;
    allowed.route('/to-forbidden.png', (_request, response) =>
      response.writeHead(302, { location: `http://127.0.0.3:${forbidden.port}/secret.png` }).end(),
    );
    allowed.route('/to-metadata.png', (_request, response) => response.writeHead(301, { location: 'http://169.254.169.254/' }).end());
    allowed.route('/to-file.png', (_request, response) => response.writeHead(307, { location: 'file:///etc/passwd' }).end());
    assertError(await post(ask(`${allowed.origin}/to-forbidden.png`)), 400, 'invalid_image_url', /refused/);
    assertError(await post(ask(`${allowed.origin}/to-metadata.png`)), 400, 'invalid_image_url', /refused/);
    assertError(await post(ask(`${allowed.origin}/to-file.png`)), 400, 'invalid_image_url', /file/);
    assert.equal(forbidden.connections, before);
  });

  test('at most 3 redirects are followed', async () => {
    const png = await makeImage({ seed: 51 });
    allowed.route('/hop.png', (request, response) => {
      const hop = Number(new URL(request.url ?? '/', 'http://x').searchParams.get('n'));
      const limit = Number(new URL(request.url ?? '/', 'http://x').searchParams.get('limit'));
      if (hop < limit) response.writeHead(302, { location: `/hop.png?n=${hop + 1}&limit=${limit}` }).end();
      else response.writeHead(200, { 'content-type': 'image/png' }).end(png);
    });
    assert.equal((await post(ask(`${allowed.origin}/hop.png?n=0&limit=3`))).status, 200);
    assertError(await post(ask(`${allowed.origin}/hop.png?n=0&limit=4`)), 400, 'image_fetch_failed', /more than 3 redirects/);
  });
});
