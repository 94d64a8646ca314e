/**
 * The playground page (GET /), the API reference (GET /docs) and GET /openapi.json, in a real browser:
 * Debian's Chromium driven by playwright-core, against a real Iris (with an API key) serving a synthetic
 * tiling model, whose image token counts depend on the image size and `detail`. Screenshots at 360 and
 * 1280 px wide are written to test-output/playground/.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { buildOpenApiDocument } from '../../src/http/openapi-document.js';
import { expectedImageTokens } from '../../src/synth/recipes.js';
import { launchBrowser, testOutputDir } from '../helpers/browser.js';
import { startImageHost, type ImageHost } from '../helpers/image-host.js';
import { dataUri, makeImage } from '../helpers/images.js';
import { assertValidOpenApi31, componentValidators } from '../helpers/iris-openapi.js';
import { childRequestsProcessing, llamaChild } from '../helpers/llama-child.js';
import { startIris, syntheticModel, waitFor, type IrisProcess } from '../helpers/test-env.js';

// Page-side code (page.evaluate, waitForFunction) runs in Chromium; the tests' tsconfig has no DOM types.
declare const document: any;
declare const DataTransfer: any;
declare const ClipboardEvent: any;
declare const DragEvent: any;
declare const File: any;

const run = promisify(execFile);
const MODEL = 'tiling';
const KEY = 'playground-key';
/** Big enough for a 4x3 tile grid at `auto`; `low` is one tile. */
const IMAGE = { width: 128, height: 96 };

let iris: IrisProcess;
let host: ImageHost;
let browser: Browser;
let png: Buffer;
let outputDir: string;

before(async () => {
  host = await startImageHost('127.0.0.2');
  png = await makeImage({ ...IMAGE, seed: 3 });
  host.file('/photo.png', png, 'image/png');
  const model = await syntheticModel('tiny-tiling');
  iris = await startIris({
    args: [
      '--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', MODEL, '--api-key', KEY,
      '--ctx-size', '8192', '--slots', '1', '--allow-media-host', '127.0.0.2',
    ],
  });
  browser = await launchBrowser();
  outputDir = await testOutputDir('playground');
});

after(async () => {
  await browser?.close();
  await iris?.stop();
  await host?.close();
});

interface OpenedPage {
  page: Page;
  context: BrowserContext;
  /** Requests the page made to any host but Iris. */
  foreign: string[];
  /** Uncaught errors in the page, and anything its Content-Security-Policy blocked. */
  errors: string[];
}

/** Opens the playground in a fresh browser profile, with the API key already stored unless `key` is null. */
async function openPlayground(options: { width?: number; height?: number; key?: string | null } = {}): Promise<OpenedPage> {
  const width = options.width ?? 1280;
  const context = await browser.newContext({ viewport: { width, height: options.height ?? (width < 600 ? 780 : 860) } });
  const key = options.key === undefined ? KEY : options.key;
  if (key !== null) await context.addInitScript((stored: string) => (globalThis as any).localStorage.setItem('iris.apiKey', stored), key);
  const foreign: string[] = [];
  const errors: string[] = [];
  context.on('request', (request) => {
    const url = new URL(request.url());
    if ((url.protocol === 'http:' || url.protocol === 'https:') && url.origin !== iris.baseUrl) foreign.push(request.url());
  });
  const page = await context.newPage();
  page.on('pageerror', (error) => errors.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content.Security.Policy/i.test(message.text())) errors.push(message.text());
  });
  await page.goto(`${iris.baseUrl}/`);
  await page.waitForSelector('body[data-ready="true"]');
  if (key !== null) await page.waitForFunction((model: string) => document.getElementById('model').value === model, MODEL);
  return { page, context, foreign, errors };
}

async function close(opened: OpenedPage): Promise<void> {
  assert.deepEqual(opened.errors, [], 'no uncaught errors in the page');
  assert.deepEqual(opened.foreign, [], 'no request to any other host');
  await opened.context.close();
}

/** Pastes an image into the message box, as Ctrl+V with an image on the clipboard does. */
async function pasteImage(page: Page, bytes: Buffer, name: string, type = 'image/png'): Promise<void> {
  await page.evaluate(({ base64, name, type }) => {
    const data = new DataTransfer();
    data.items.add(new File([Uint8Array.from(atob(base64), (char) => char.charCodeAt(0))], name, { type }));
    document.getElementById('prompt').dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
  }, { base64: bytes.toString('base64'), name, type });
}

/** Drops an image file onto the conversation. */
async function dropImage(page: Page, bytes: Buffer, name: string): Promise<void> {
  await page.evaluate(({ base64, name }) => {
    const data = new DataTransfer();
    data.items.add(new File([Uint8Array.from(atob(base64), (char) => char.charCodeAt(0))], name, { type: 'image/png' }));
    const chat = document.getElementById('chat');
    chat.dispatchEvent(new DragEvent('dragenter', { dataTransfer: data, bubbles: true }));
    chat.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
  }, { base64: bytes.toString('base64'), name });
}

/**
 * The token counts the page shows once they are for the request as it stands (the page marks counts still
 * being asked for with `data-pending`): the prompt's and each thumbnail's. `images` is how many thumbnails to
 * wait for first, since an added file is read asynchronously.
 */
async function counts(page: Page, images = 0): Promise<{ prompt: number; images: number[] }> {
  await page.waitForFunction((images: number) => document.querySelectorAll('.thumb').length === images, images);
  await page.waitForFunction(() => document.getElementById('token-count').dataset.pending === 'false', undefined, { timeout: 60_000 });
  const prompt = Number(await page.locator('#token-count').getAttribute('data-tokens'));
  const perImage = await page.locator('.thumb').evaluateAll((thumbs) => thumbs.map((thumb: any) => Number(thumb.dataset.tokens)));
  return { prompt, images: perImage };
}

/** Unfolds the settings (folded on a phone) and, within them, Iris's extensions, as a user would. */
async function unfoldSettings(page: Page): Promise<void> {
  if (!(await page.locator('#settings').evaluate((details: any) => details.open))) await page.click('#settings > summary');
  if (!(await page.locator('.subpanel').evaluate((details: any) => details.open))) await page.click('.subpanel > summary');
}

async function setField(page: Page, selector: string, value: string): Promise<void> {
  await page.fill(selector, value);
  await page.dispatchEvent(selector, 'change');
}

/** Waits for the last answer to finish (or stop) and returns its state and text. */
async function lastAnswer(page: Page): Promise<{ state: string; text: string; stats: Record<string, string> }> {
  const answer = page.locator('.message.assistant').last();
  await page.waitForFunction(() => {
    const answers = document.querySelectorAll('.message.assistant');
    return answers.length > 0 && answers[answers.length - 1].dataset.state !== undefined;
  }, undefined, { timeout: 120_000 });
  const stats: Record<string, string> = {};
  for (const chip of await answer.locator('[data-stat]').all()) {
    stats[(await chip.getAttribute('data-stat')) ?? ''] = (await chip.locator('b').textContent()) ?? '';
  }
  return { state: (await answer.getAttribute('data-state')) ?? '', text: (await answer.locator('.text').textContent()) ?? '', stats };
}

async function chat(body: unknown, key = KEY): Promise<{ status: number; json: any }> {
  const response = await fetch(`${iris.baseUrl}/v1/openai/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: await response.json() };
}

/** The body of a generated curl command (its here-document). */
function curlBody(curl: string): Record<string, unknown> {
  return JSON.parse(curl.slice(curl.indexOf('\n{') + 1, curl.lastIndexOf('\n'))) as Record<string, unknown>;
}

/** The request the page would send now, read from its "Code" dialog. */
async function currentRequest(page: Page): Promise<Record<string, unknown>> {
  await page.click('#show-code');
  await page.click('[role=tab][data-lang=curl]');
  const curl = (await page.textContent('#code')) ?? '';
  await page.click('#close-code');
  return curlBody(curl);
}

async function tokenize(body: unknown): Promise<{ prompt_tokens: number; images?: { width: number; height: number }[] }> {
  const response = await fetch(`${iris.baseUrl}/v1/openai/tokenize`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 200);
  return (await response.json()) as { prompt_tokens: number; images?: { width: number; height: number }[] };
}

describe('playground', () => {
  test('the page, its assets and /openapi.json load without a key; the API does not', async () => {
    for (const path of ['/', '/playground', '/docs', '/web/playground.js', '/web/playground.css', '/openapi.json']) {
      const response = await fetch(`${iris.baseUrl}${path}`);
      assert.equal(response.status, 200, path);
    }
    const page = await fetch(`${iris.baseUrl}/`);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    assert.equal((await fetch(`${iris.baseUrl}/v1/models`)).status, 401);
    assert.equal((await fetch(`${iris.baseUrl}/web/nothing.js`)).status, 404);
    assert.equal((await fetch(`${iris.baseUrl}/web/..%2Fhttp%2Fapp.ts`)).status, 404);
  });

  test('without a stored key the page asks for one; a wrong key shows the 401 message; the right one loads the models', async () => {
    const opened = await openPlayground({ key: null });
    const { page } = opened;
    await page.waitForSelector('#key-section.needed');
    assert.match((await page.textContent('#key-note')) ?? '', /needs an API key/);
    const wrong = await chat({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }, 'not-the-key');
    assert.equal(wrong.status, 401);
    await setField(page, '#api-key', 'not-the-key');
    await page.waitForSelector('#error:not([hidden])');
    const banner = (await page.textContent('#error')) ?? '';
    assert.ok(banner.includes(wrong.json.error.message), `the banner shows the server's message: ${banner}`);
    assert.match(banner, /401/);
    await setField(page, '#api-key', KEY);
    await page.waitForFunction((model: string) => document.getElementById('model').value === model, MODEL);
    assert.equal(await page.evaluate(() => document.getElementById('key-section').classList.contains('needed')), false);
    assert.equal(await page.evaluate(() => (globalThis as any).localStorage.getItem('iris.apiKey')), KEY);
    assert.match((await page.textContent('#model-info')) ?? '', /text \+ image/);
    await close(opened);
  });

  test('images by paste, drop, file picker and URL get token counts; detail changes them; the answer streams with its usage', async () => {
    const opened = await openPlayground();
    const { page } = opened;
    await unfoldSettings(page);
    await setField(page, '#max-tokens', '12');
    await page.check('#ignore-eos');
    await page.dispatchEvent('#ignore-eos', 'change');

    await pasteImage(page, png, 'pasted.png');
    const before = await counts(page, 1);
    const auto = before.images[0]!;
    assert.equal(auto, expectedImageTokens('tiny-tiling', IMAGE.width, IMAGE.height), 'the tokens of a 4x3 tile grid');
    assert.ok(before.prompt > auto, 'the prompt count includes the image');
    await page.waitForFunction(() => document.querySelector('.thumb .info').textContent.includes('128×96'));

    await page.locator('.thumb').first().locator('select.detail').selectOption('low');
    const afterLow = await counts(page, 1);
    const low = afterLow.images[0]!;
    assert.ok(low < auto, `detail low costs fewer tokens (${low} < ${auto})`);
    assert.equal(afterLow.prompt, before.prompt - (auto - low), 'the prompt count moves by the image tokens saved');

    await dropImage(page, await makeImage({ width: 64, height: 64, seed: 5 }), 'dropped.png');
    await page.setInputFiles('#file', { name: 'picked.png', mimeType: 'image/png', buffer: await makeImage({ width: 40, height: 30, seed: 7 }) });
    await page.click('#add-url');
    await page.fill('#image-url', `${host.origin}/photo.png`);
    await page.click('#add-url-confirm');
    const all = await counts(page, 4);
    assert.deepEqual(all.images, [low, expectedImageTokens('tiny-tiling', 64, 64), expectedImageTokens('tiny-tiling', 40, 30), auto]);
    // Where the tokenize answer reports the size each image is handed to the model at, each thumbnail shows it.
    const reported = await tokenize(await currentRequest(page));
    const targets = await page.locator('.thumb').evaluateAll((thumbs) => thumbs.map((thumb: any) => thumb.dataset.target as string));
    assert.deepEqual(targets, (reported.images ?? []).length === 0 ? ['', '', '', ''] : reported.images!.map((image) => `${image.width}×${image.height}`));

    await page.fill('#prompt', 'What is in these pictures?');
    await page.press('#prompt', 'Shift+Enter');
    await page.keyboard.type('Answer briefly.');
    assert.equal(await page.inputValue('#prompt'), 'What is in these pictures?\nAnswer briefly.', 'Shift+Enter is a new line');
    const typed = await counts(page, 4);
    assert.ok(typed.prompt > all.prompt, 'the text counts too');
    await page.press('#prompt', 'Enter');
    await page.waitForSelector('.message.assistant');
    const answer = await lastAnswer(page);
    assert.equal(answer.state, 'done');
    assert.ok(answer.text.length > 0, 'streamed text arrived');
    assert.equal(Number(answer.stats['prompt']), typed.prompt, 'usage.prompt_tokens equals the count shown before sending');
    const imageTokens = typed.images.reduce((sum, tokens) => sum + tokens, 0);
    assert.equal(Number(answer.stats['image']), imageTokens, 'usage.prompt_tokens_details.image_tokens: the four images');
    assert.equal(Number(answer.stats['completion']), 12);
    assert.match(answer.stats['ttft'] ?? '', /^\d+(\.\d+)? m?s$/);
    assert.ok(Number(answer.stats['rate']) > 0, 'tokens per second shown');
    assert.equal(await page.locator('.thumb').count(), 0, 'the composer is cleared');
    assert.equal(await page.locator('.message.user .images img').count(), 3, 'the sent images show in the conversation');
    assert.equal(host.requests.filter((path) => path === '/photo.png').length >= 1, true, 'Iris, not the browser, fetched the URL');
    await close(opened);
  });

  test('stop ends a long generation: the request is aborted and llama-server stops generating', async () => {
    const opened = await openPlayground();
    const { page } = opened;
    await unfoldSettings(page);
    await setField(page, '#max-tokens', '7000');
    await setField(page, '#temperature', '1');
    await page.check('#ignore-eos');
    await page.dispatchEvent('#ignore-eos', 'change');
    await page.fill('#prompt', 'Write a very long story.');
    await page.click('#send');
    await page.waitForFunction(() => (document.querySelector('.message.assistant.streaming .text')?.textContent ?? '').length > 20, undefined, { timeout: 60_000 });
    // Iris's child takes only Iris's per-start key; the test reads it as Iris's user could.
    const child = await llamaChild(iris);
    assert.ok((await childRequestsProcessing(child)) > 0, 'generating');
    await page.click('#stop');
    const answer = await lastAnswer(page);
    assert.equal(answer.state, 'stopped');
    assert.ok(await waitFor(async () => (await childRequestsProcessing(child)) === 0, 5000), 'llama-server stopped generating');
    assert.equal(await page.isVisible('#send'), true, 'the send button is back');
    await close(opened);
  });

  test("a broken image shows the server's 400 message, and the message can be fixed and sent again", async () => {
    const opened = await openPlayground();
    const { page } = opened;
    const broken = Buffer.from('this is not a PNG at all');
    const direct = await chat({ model: MODEL, messages: [{ role: 'user', content: [{ type: 'text', text: 'look' }, { type: 'image_url', image_url: { url: dataUri(broken) } }] }] });
    assert.equal(direct.status, 400);
    await page.fill('#prompt', 'look');
    await page.setInputFiles('#file', { name: 'broken.png', mimeType: 'image/png', buffer: broken });
    await counts(page, 1);
    assert.equal(await page.isVisible('#token-error'), true);
    assert.ok(((await page.textContent('#token-error')) ?? '').includes(direct.json.error.message), 'the token count explains why it cannot count');
    await page.click('#send');
    await page.waitForSelector('#error:not([hidden])');
    const banner = (await page.textContent('#error')) ?? '';
    assert.ok(banner.includes(direct.json.error.message), `the banner shows the server's message: ${banner}`);
    assert.match(banner, /400/);
    assert.ok(banner.includes(direct.json.error.param), 'and the field it is about');
    assert.equal(await page.locator('.message').count(), 0, 'the failed turn is taken back');
    assert.equal(await page.inputValue('#prompt'), 'look', 'its text is back in the box');
    assert.equal(await page.locator('.thumb').count(), 1, 'its image is back, to remove');
    await page.locator('.thumb .remove').click();
    await unfoldSettings(page);
    await setField(page, '#max-tokens', '2');
    await page.click('#send');
    assert.equal((await lastAnswer(page)).state, 'done');
    await close(opened);
  });

  test('JSON mode sends the schema from the editor as response_format; a schema that is not JSON is refused before sending', async () => {
    const opened = await openPlayground();
    const { page } = opened;
    await unfoldSettings(page);
    assert.equal(await page.isVisible('#json-schema'), false, 'the schema editor shows only in JSON mode');
    await page.check('#json-mode');
    await page.dispatchEvent('#json-mode', 'change');
    const schema = { type: 'object', properties: { colour: { type: 'string' } }, required: ['colour'], additionalProperties: false };
    await page.fill('#json-schema', JSON.stringify(schema));
    await page.fill('#prompt', 'Which colour?');
    const body = await currentRequest(page);
    assert.deepEqual(body['response_format'], { type: 'json_schema', json_schema: { name: 'playground', strict: true, schema } });
    await page.fill('#json-schema', '');
    assert.deepEqual((await currentRequest(page))['response_format'], { type: 'json_object' }, 'an empty editor asks for any JSON object');
    await page.fill('#json-schema', '{"type": "object",');
    assert.equal(await page.isVisible('#json-schema-error'), true, 'the editor says the schema is not JSON');
    await page.click('#send');
    await page.waitForSelector('#error:not([hidden])');
    assert.match((await page.textContent('#error')) ?? '', /not valid JSON/);
    assert.equal(await page.locator('.message').count(), 0, 'nothing was sent');
    await close(opened);
  });

  test('JSON mode returns JSON matching the schema', async () => {
    const opened = await openPlayground();
    const { page } = opened;
    await unfoldSettings(page);
    await page.check('#json-mode');
    await page.dispatchEvent('#json-mode', 'change');
    await setField(page, '#max-tokens', '200');
    // A schema whose every answer is short, so random weights under its grammar finish well within the limit.
    const schema = {
      type: 'object',
      properties: { colour: { enum: ['red', 'green', 'blue'] }, bright: { type: 'boolean' } },
      required: ['colour', 'bright'],
      additionalProperties: false,
    };
    await page.fill('#json-schema', JSON.stringify(schema, null, 2));
    await page.dispatchEvent('#json-schema', 'change');
    await pasteImage(page, png, 'photo.png');
    await page.fill('#prompt', 'Describe the picture as JSON.');
    await page.press('#prompt', 'Enter');
    const answer = await lastAnswer(page);
    assert.equal(answer.state, 'done');
    assert.equal(await page.locator('.message.assistant .chip.ok').textContent(), 'valid JSON');
    const value = JSON.parse(answer.text) as unknown;
    const validate = new Ajv2020({ strict: false }).compile(schema);
    assert.ok(validate(value), `the answer matches the schema: ${JSON.stringify(validate.errors)}`);
    await close(opened);
  });

  test('"Code" gives the exact current request as curl, Python and JavaScript; the copied curl command and the JavaScript run', async () => {
    const opened = await openPlayground();
    const { page, context } = opened;
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: iris.baseUrl });
    await unfoldSettings(page);
    await page.uncheck('#stream');
    await page.dispatchEvent('#stream', 'change');
    await setField(page, '#max-tokens', '3');
    await setField(page, '#seed', '7');
    await setField(page, '#system', "Answer in one word. Don't use quotes like ''' or $HOME.");
    await pasteImage(page, png, 'photo.png');
    await page.locator('.thumb select.detail').selectOption('high');
    await page.fill('#prompt', 'What colour dominates?');
    await page.click('#show-code');
    await page.screenshot({ path: join(outputDir, 'code-1280.png') });
    await page.click('#copy-code');
    const curl = await page.evaluate(() => (globalThis as any).navigator.clipboard.readText()) as string;
    assert.equal(curl, await page.textContent('#code'), 'Copy puts the shown code on the clipboard');
    assert.match(curl, /^curl /);
    assert.ok(curl.includes(dataUri(png)), 'the image is in the request');

    const dir = await mkdtemp(join(tmpdir(), 'iris-playground-'));
    // curl reads $CURL_HOME/.curlrc: have it print the status after the body without changing the command.
    await writeFile(join(dir, '.curlrc'), 'write-out = "\\n%{http_code}"\n');
    const { stdout } = await run('bash', ['-c', curl], { env: { ...process.env, CURL_HOME: dir, IRIS_API_KEY: KEY }, maxBuffer: 16 * 1024 * 1024 });
    const status = stdout.slice(stdout.lastIndexOf('\n') + 1);
    assert.equal(status, '200', stdout.slice(0, 500));
    const completion = JSON.parse(stdout.slice(0, stdout.lastIndexOf('\n'))) as { usage: { completion_tokens: number; prompt_tokens_details: { image_tokens: number } } };
    assert.equal(completion.usage.completion_tokens <= 3, true);
    assert.equal(completion.usage.prompt_tokens_details.image_tokens, expectedImageTokens('tiny-tiling', IMAGE.width, IMAGE.height));

    const body = curlBody(curl);
    assert.deepEqual(body, {
      model: MODEL,
      messages: [
        { role: 'system', content: "Answer in one word. Don't use quotes like ''' or $HOME." },
        { role: 'user', content: [{ type: 'text', text: 'What colour dominates?' }, { type: 'image_url', image_url: { url: dataUri(png), detail: 'high' } }] },
      ],
      max_tokens: 3,
      seed: 7,
    });

    await page.click('[role=tab][data-lang=javascript]');
    const javascript = (await page.textContent('#code')) ?? '';
    const script = join(outputDir, 'request.mjs'); // inside the repository, so `openai` resolves from node_modules
    await writeFile(script, javascript);
    const node = await run(process.execPath, [script], { env: { ...process.env, IRIS_API_KEY: KEY } });
    assert.match(node.stdout, /completion_tokens/);

    await page.click('[role=tab][data-lang=python]');
    const python = (await page.textContent('#code')) ?? '';
    const embedded = /r'''([\s\S]*?)'''/.exec(python)?.[1];
    assert.ok(embedded, 'the Python script embeds the body');
    assert.deepEqual(JSON.parse(embedded), body, 'the Python script sends the same body');
    const hasPython = await run('python3', ['--version']).then(() => true, () => false);
    if (hasPython) {
      const file = join(dir, 'request.py');
      await writeFile(file, python);
      await run('python3', ['-c', 'import ast, sys; ast.parse(open(sys.argv[1]).read())', file]);
    }
    await close(opened);
  });

  test('screenshots at 360 and 1280 px: the page fits the width', async () => {
    for (const width of [1280, 360]) {
      const opened = await openPlayground({ width });
      const { page } = opened;
      assert.equal(await page.locator('#settings').evaluate((details: any) => details.open), width > 720, 'settings start folded on a phone');
      await unfoldSettings(page);
      await setField(page, '#max-tokens', '24');
      await setField(page, '#system', 'You are a careful visual assistant.');
      if (width <= 720) await page.click('#settings > summary');
      await pasteImage(page, await makeImage({ width: 320, height: 240, seed: 2 }), 'gradient.png');
      await page.fill('#prompt', 'What is in this picture?');
      await counts(page, 1);
      await page.press('#prompt', 'Enter');
      assert.equal((await lastAnswer(page)).state, 'done');
      await pasteImage(page, png, 'next.png');
      await page.fill('#prompt', 'And this one?');
      await counts(page, 1);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.equal(overflow, 0, `no horizontal scrolling at ${width} px`);
      await page.screenshot({ path: join(outputDir, `playground-${width}.png`) });
      await close(opened);
    }
  });
});

describe('OpenAPI document and /docs', () => {
  test('GET /openapi.json is valid OpenAPI 3.1, is the document built from the request schemas, and describes real answers', async () => {
    const response = await fetch(`${iris.baseUrl}/openapi.json`);
    assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
    const document = (await response.json()) as { info: { version: string }; components: { schemas: Record<string, unknown> } };
    await assertValidOpenApi31(document);
    assert.deepEqual(document, JSON.parse(JSON.stringify(buildOpenApiDocument(document.info.version))));
    const schema = componentValidators(document);
    const check = (name: string, value: unknown) => {
      const validate = schema(name);
      assert.ok(validate(value), `${name}: ${JSON.stringify(validate.errors)}\n${JSON.stringify(value).slice(0, 500)}`);
    };
    const headers = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };
    check('ModelList', await (await fetch(`${iris.baseUrl}/v1/models`, { headers })).json());
    check('Model', await (await fetch(`${iris.baseUrl}/v1/models/${MODEL}`, { headers })).json());
    const body = { model: MODEL, messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }, { type: 'image_url', image_url: { url: dataUri(png) } }] }], max_tokens: 3 };
    check('ChatCompletionRequest', body);
    const completion = await chat(body);
    check('ChatCompletion', completion.json);
    check('TokenizeResponse', await (await fetch(`${iris.baseUrl}/v1/openai/tokenize`, { method: 'POST', headers, body: JSON.stringify(body) })).json());
    const stream = await fetch(`${iris.baseUrl}/v1/openai/chat/completions`, { method: 'POST', headers, body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }) });
    const chunks = (await stream.text()).split('\n').filter((line) => line.startsWith('data: {')).map((line) => JSON.parse(line.slice(6)) as unknown);
    assert.ok(chunks.length > 1);
    for (const chunk of chunks) check('ChatCompletionChunk', chunk);
    const refused = await chat({ model: MODEL, messages: [] });
    assert.equal(refused.status, 400);
    check('Error', refused.json);
    check('Health', await (await fetch(`${iris.baseUrl}/health`)).json());
  });

  test('GET /docs renders the document from local assets only', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const foreign: string[] = [];
    context.on('request', (request) => {
      if (!request.url().startsWith(iris.baseUrl)) foreign.push(request.url());
    });
    const page = await context.newPage();
    await page.goto(`${iris.baseUrl}/docs`);
    await page.waitForSelector('body[data-ready="true"]');
    assert.ok(await page.isVisible('#createChatCompletion'));
    assert.match((await page.textContent('#createChatCompletion summary')) ?? '', /post\s*\/v1\/openai\/chat\/completions/i);
    await page.click('#createChatCompletion summary');
    const rows = (await page.textContent('#createChatCompletion')) ?? '';
    for (const field of ['messages', 'max_tokens', 'ignore_eos', 'image_url']) assert.ok(rows.includes(field), field);
    assert.ok((await page.locator('#tokenize .ext').count()) > 0, 'the tokenize endpoint is marked as an extension');
    await page.screenshot({ path: join(outputDir, 'docs-1280.png') });
    assert.deepEqual(foreign, []);
    await context.close();
  });
});
