// The Iris playground: pick a model, attach images, ask, and watch the answer stream in with its cost.
// Plain browser JavaScript with no dependencies and no build step; it talks only to the server that served it
// (the page's Content-Security-Policy allows nothing else). Every API call carries the key from the key field.
import { toCurl, toJavaScript, toPython } from './request-code.js';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const API = '/v1/openai';
const STORAGE = { key: 'iris.apiKey', model: 'iris.model', settings: 'iris.settings' };
const DEFAULT_SCHEMA = JSON.stringify(
  {
    type: 'object',
    properties: { caption: { type: 'string' }, objects: { type: 'array', items: { type: 'string' } } },
    required: ['caption', 'objects'],
    additionalProperties: false,
  },
  null,
  2,
);

const ui = {
  model: /** @type {HTMLSelectElement} */ ($('model')),
  modelInfo: $('model-info'),
  settings: /** @type {HTMLDetailsElement} */ ($('settings')),
  apiKey: /** @type {HTMLInputElement} */ ($('api-key')),
  keySection: $('key-section'),
  keyNote: $('key-note'),
  system: /** @type {HTMLTextAreaElement} */ ($('system')),
  temperature: /** @type {HTMLInputElement} */ ($('temperature')),
  maxTokens: /** @type {HTMLInputElement} */ ($('max-tokens')),
  seed: /** @type {HTMLInputElement} */ ($('seed')),
  stream: /** @type {HTMLInputElement} */ ($('stream')),
  topK: /** @type {HTMLInputElement} */ ($('top-k')),
  minP: /** @type {HTMLInputElement} */ ($('min-p')),
  ignoreEos: /** @type {HTMLInputElement} */ ($('ignore-eos')),
  jsonMode: /** @type {HTMLInputElement} */ ($('json-mode')),
  jsonSection: $('json-section'),
  jsonSchema: /** @type {HTMLTextAreaElement} */ ($('json-schema')),
  jsonSchemaError: $('json-schema-error'),
  error: $('error'),
  transcript: $('transcript'),
  empty: $('empty'),
  composer: /** @type {HTMLFormElement} */ ($('composer')),
  attachments: $('attachments'),
  urlRow: $('url-row'),
  imageUrl: /** @type {HTMLInputElement} */ ($('image-url')),
  prompt: /** @type {HTMLTextAreaElement} */ ($('prompt')),
  file: /** @type {HTMLInputElement} */ ($('file')),
  tokenCount: $('token-count'),
  tokenError: $('token-error'),
  send: /** @type {HTMLButtonElement} */ ($('send')),
  stop: /** @type {HTMLButtonElement} */ ($('stop')),
  chat: $('chat'),
  dropOverlay: $('drop-overlay'),
  codeDialog: /** @type {HTMLDialogElement} */ ($('code-dialog')),
  code: $('code'),
};

/**
 * @typedef {{ id: number, url: string, name: string, remote: boolean, detail: 'auto' | 'low' | 'high',
 *   width?: number, height?: number, bytes?: number, tokens?: number | null, target?: string,
 *   element?: HTMLElement }} Attachment
 */

const state = {
  /** @type {{ id: string, loaded: boolean, state: string, input_modalities?: string[], context_length?: number }[]} */
  models: [],
  /** The conversation so far, as OpenAI messages (without the system prompt). */
  history: /** @type {object[]} */ ([]),
  /** @type {Attachment[]} */
  attachments: [],
  nextAttachmentId: 1,
  /** @type {AbortController | null} */
  generation: null,
  /** @type {AbortController | null} */
  tokenizing: null,
  tokenizeTimer: 0,
  /** Bumped by every change that alters the request; a count answers the version it was asked for. */
  requestVersion: 0,
  codeLanguage: 'curl',
};

// ---------------------------------------------------------------------------------------------- API calls

function authHeaders() {
  const key = ui.apiKey.value.trim();
  return key ? { authorization: `Bearer ${key}` } : {};
}

/** An error with the server's message (OpenAI's error shape) and status. */
class ApiError extends Error {
  constructor(status, message, code, param) {
    super(message);
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

async function toApiError(response) {
  let body;
  try {
    body = await response.json();
  } catch {
    return new ApiError(response.status, `${response.status} ${response.statusText}`);
  }
  const error = body && typeof body === 'object' ? body.error : undefined;
  if (error && typeof error.message === 'string') return new ApiError(response.status, error.message, error.code, error.param);
  return new ApiError(response.status, `${response.status} ${response.statusText}`);
}

async function api(path, init = {}) {
  const response = await fetch(`${API}${path}`, {
    ...init,
    headers: { ...(init.body ? { 'content-type': 'application/json' } : {}), ...authHeaders(), ...init.headers },
  });
  if (!response.ok) throw await toApiError(response);
  return response;
}

// ------------------------------------------------------------------------------------------------ models

async function loadModels() {
  try {
    const response = await api('/models');
    const list = await response.json();
    state.models = list.data ?? [];
    setKeyNeeded(false);
    hideError();
  } catch (error) {
    state.models = [];
    if (error instanceof ApiError && error.status === 401) setKeyNeeded(true, error);
    else showError(error);
  }
  renderModels();
  scheduleTokenize();
}

function renderModels() {
  const previous = ui.model.value || localStorage.getItem(STORAGE.model) || '';
  ui.model.replaceChildren();
  if (state.models.length === 0) {
    ui.model.append(new Option('No models', ''));
    ui.model.disabled = true;
  } else {
    ui.model.disabled = false;
    for (const model of state.models) {
      const option = new Option(model.id, model.id);
      option.title = `${model.state ?? (model.loaded ? 'loaded' : 'not loaded')}`;
      ui.model.append(option);
    }
    ui.model.value = state.models.some((model) => model.id === previous) ? previous : (state.models[0]?.id ?? '');
  }
  renderModelInfo();
}

function renderModelInfo() {
  const model = state.models.find((candidate) => candidate.id === ui.model.value);
  ui.modelInfo.replaceChildren();
  if (!model) return;
  const chips = [
    [model.loaded ? 'loaded' : (model.state ?? 'not loaded'), model.loaded ? 'chip ok' : 'chip'],
    [(model.input_modalities ?? ['text']).join(' + '), 'chip'],
  ];
  if (model.context_length) chips.push([`${model.context_length.toLocaleString('en-US')} ctx`, 'chip']);
  for (const [text, className] of chips) ui.modelInfo.append(element('span', { className, textContent: text }));
  ui.modelInfo.dataset['loaded'] = String(Boolean(model.loaded));
}

/** @param {boolean} needed @param {ApiError} [error] the server's refusal */
function setKeyNeeded(needed, error) {
  ui.keySection.classList.toggle('needed', needed);
  if (needed) {
    ui.settings.open = true;
    ui.keyNote.textContent = ui.apiKey.value
      ? `The server refused this key: ${error?.message ?? ''}`
      : 'This server needs an API key. Enter it here; it is kept in this browser.';
    if (ui.apiKey.value && error) showError(error);
    ui.apiKey.focus();
  } else {
    ui.keyNote.textContent = "Kept in this browser's localStorage, sent only to this server.";
  }
}

// ------------------------------------------------------------------------------------------------ images

/** @param {File} file */
function addFile(file) {
  const reader = new FileReader();
  reader.addEventListener('load', () => {
    addAttachment({ url: String(reader.result), name: file.name || 'pasted image', remote: false, bytes: file.size });
  });
  reader.readAsDataURL(file);
}

/** @param {Omit<Attachment, 'id' | 'detail'>} attachment */
function addAttachment(attachment) {
  /** @type {Attachment} */
  const item = { ...attachment, id: state.nextAttachmentId++, detail: 'auto' };
  state.attachments.push(item);
  renderAttachment(item);
  scheduleTokenize();
}

/** @param {Attachment} item */
function renderAttachment(item) {
  const figure = element('li', { className: 'thumb' });
  figure.dataset['id'] = String(item.id);
  let preview;
  if (item.remote) {
    // Loading a URL here would make the browser call another host; the server fetches it instead.
    preview = element('div', { className: 'remote', textContent: hostOf(item.url) });
    preview.title = item.url;
  } else {
    preview = element('img', { alt: item.name, src: item.url });
    preview.addEventListener('load', () => {
      item.width = preview.naturalWidth;
      item.height = preview.naturalHeight;
      renderAttachmentInfo(item);
    });
    preview.addEventListener('error', () => figure.classList.add('broken'));
  }
  const remove = element('button', { type: 'button', className: 'remove', textContent: '×', title: 'Remove image' });
  remove.setAttribute('aria-label', `Remove ${item.name}`);
  remove.addEventListener('click', () => {
    state.attachments = state.attachments.filter((candidate) => candidate !== item);
    figure.remove();
    scheduleTokenize();
  });
  const detail = element('select', { className: 'detail', title: 'detail: how much resolution (and how many tokens) to spend' });
  detail.setAttribute('aria-label', `detail of ${item.name}`);
  for (const value of ['auto', 'low', 'high']) detail.append(new Option(`detail: ${value}`, value));
  detail.addEventListener('change', () => {
    item.detail = /** @type {Attachment['detail']} */ (detail.value);
    scheduleTokenize();
  });
  const info = element('span', { className: 'info' });
  const tokens = element('span', { className: 'tokens' });
  figure.append(preview, remove, info, tokens, detail);
  item.element = figure;
  ui.attachments.append(figure);
  renderAttachmentInfo(item);
}

/** @param {Attachment} item */
function renderAttachmentInfo(item) {
  if (!item.element) return;
  const info = /** @type {HTMLElement} */ (item.element.querySelector('.info'));
  const tokens = /** @type {HTMLElement} */ (item.element.querySelector('.tokens'));
  const size = item.width ? `${item.width}×${item.height}` : item.remote ? 'URL' : '';
  info.textContent = [size, item.bytes ? formatBytes(item.bytes) : ''].filter(Boolean).join(' · ');
  const count = item.tokens === undefined ? '… tokens' : item.tokens === null ? '? tokens' : `${item.tokens} tokens`;
  // The size the server hands the model, where its tokenize answer reports one.
  tokens.textContent = item.target ? `${count} at ${item.target}` : count;
  item.element.dataset['tokens'] = item.tokens == null ? '' : String(item.tokens);
  item.element.dataset['target'] = item.target ?? '';
}

function hostOf(url) {
  try {
    return new URL(url).host;
  } catch {
    return url.slice(0, 24);
  }
}

function addUrlFromInput() {
  const url = ui.imageUrl.value.trim();
  if (!url) return;
  addAttachment({ url, name: url.split('/').pop() || url, remote: !url.startsWith('data:') });
  ui.imageUrl.value = '';
  ui.urlRow.hidden = true;
  ui.prompt.focus();
}

// ------------------------------------------------------------------------------------------ the request

function numberField(input) {
  if (input.value.trim() === '') return undefined;
  const value = Number(input.value);
  return Number.isFinite(value) ? value : undefined;
}

/** The JSON mode `response_format`, or undefined; throws when the schema is not valid JSON. */
function responseFormat() {
  if (!ui.jsonMode.checked) return undefined;
  const text = ui.jsonSchema.value.trim();
  if (!text) return { type: 'json_object' };
  let schema;
  try {
    schema = JSON.parse(text);
  } catch (error) {
    throw new Error(`The JSON schema is not valid JSON: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  return { type: 'json_schema', json_schema: { name: 'playground', strict: true, schema } };
}

/** The user message the composer holds now, or undefined when it is empty. */
function composerMessage() {
  const text = ui.prompt.value;
  if (state.attachments.length === 0) return text.trim() ? { role: 'user', content: text } : undefined;
  const content = [];
  if (text.trim()) content.push({ type: 'text', text });
  for (const item of state.attachments) {
    const imageUrl = { url: item.url };
    if (item.detail !== 'auto') imageUrl.detail = item.detail;
    content.push({ type: 'image_url', image_url: imageUrl });
  }
  return { role: 'user', content };
}

/**
 * The chat request the Send button would make now: system prompt, history, the composer's message and the
 * settings. Only the settings the user set are sent; the others keep the server's defaults.
 */
function buildRequest() {
  const messages = [];
  if (ui.system.value.trim()) messages.push({ role: 'system', content: ui.system.value });
  messages.push(...state.history);
  const pending = composerMessage();
  if (pending) messages.push(pending);
  /** @type {Record<string, unknown>} */
  const body = { model: ui.model.value, messages };
  const fields = [
    ['temperature', numberField(ui.temperature)],
    ['max_tokens', numberField(ui.maxTokens)],
    ['seed', numberField(ui.seed)],
    ['top_k', numberField(ui.topK)],
    ['min_p', numberField(ui.minP)],
  ];
  for (const [name, value] of fields) if (value !== undefined) body[name] = value;
  if (ui.ignoreEos.checked) body['ignore_eos'] = true;
  const format = responseFormat();
  if (format) body['response_format'] = format;
  if (ui.stream.checked) {
    body['stream'] = true;
    body['stream_options'] = { include_usage: true };
  }
  return body;
}

// ------------------------------------------------------------------------------------------- token counts

function scheduleTokenize() {
  clearTimeout(state.tokenizeTimer);
  state.requestVersion += 1;
  // `data-pending` says whether the counts shown are for the request as it is now.
  ui.tokenCount.dataset['pending'] = 'true';
  state.tokenizeTimer = window.setTimeout(tokenize, 250);
}

async function tokenize() {
  state.tokenizing?.abort();
  const version = state.requestVersion;
  const settle = () => {
    if (version === state.requestVersion) ui.tokenCount.dataset['pending'] = 'false';
  };
  let body;
  try {
    body = buildRequest();
  } catch {
    settle();
    return; // a broken JSON schema is reported where it is typed
  }
  if (!body.model || body.messages.length === 0) {
    ui.tokenCount.textContent = '';
    ui.tokenCount.dataset['tokens'] = '';
    ui.tokenError.hidden = true;
    settle();
    return;
  }
  delete body.stream;
  delete body.stream_options;
  const controller = new AbortController();
  state.tokenizing = controller;
  const pendingAttachments = [...state.attachments];
  ui.tokenCount.textContent = 'counting…';
  try {
    const response = await api('/tokenize', { method: 'POST', body: JSON.stringify(body), signal: controller.signal });
    const counts = await response.json();
    if (controller.signal.aborted) return;
    ui.tokenError.hidden = true;
    ui.tokenCount.textContent = `${counts.prompt_tokens.toLocaleString('en-US')} prompt tokens`;
    ui.tokenCount.dataset['tokens'] = String(counts.prompt_tokens);
    // The composer's images are the last ones of the request.
    const perImage = counts.image_tokens ?? [];
    const offset = perImage.length - pendingAttachments.length;
    pendingAttachments.forEach((item, index) => {
      item.tokens = perImage[offset + index] ?? null;
      const report = counts.images?.[offset + index];
      item.target = report && report.width && report.height ? `${report.width}×${report.height}` : undefined;
      renderAttachmentInfo(item);
    });
    settle();
  } catch (error) {
    if (controller.signal.aborted) return;
    ui.tokenCount.dataset['tokens'] = '';
    ui.tokenCount.textContent = '';
    for (const item of pendingAttachments) {
      item.tokens = null;
      renderAttachmentInfo(item);
    }
    ui.tokenError.textContent = `Cannot count tokens: ${error instanceof Error ? error.message : String(error)}`;
    ui.tokenError.hidden = false;
    settle();
  }
}

// ------------------------------------------------------------------------------------------------- sending

async function send() {
  if (state.generation) return;
  hideError();
  let body;
  try {
    body = buildRequest();
  } catch (error) {
    showError(error);
    return;
  }
  const message = composerMessage();
  if (!body.model) {
    showError(new Error('Pick a model first.'));
    return;
  }
  if (!message) {
    ui.prompt.focus();
    return;
  }
  const sentAttachments = state.attachments;
  const sentText = ui.prompt.value;
  state.history.push(message);
  appendMessage(message);
  ui.prompt.value = '';
  state.attachments = [];
  ui.attachments.replaceChildren();
  ui.tokenCount.textContent = '';

  const answer = appendMessage({ role: 'assistant', content: '' });
  answer.classList.add('streaming');
  const text = /** @type {HTMLElement} */ (answer.querySelector('.text'));
  const stats = /** @type {HTMLElement} */ (answer.querySelector('.stats'));
  const controller = new AbortController();
  state.generation = controller;
  setBusy(true);
  const started = performance.now();
  let firstToken = 0;
  let usage = null;
  let content = '';
  let finishReason = null;
  const onDelta = (delta) => {
    if (!delta) return;
    if (!firstToken) firstToken = performance.now();
    content += delta;
    text.textContent = content;
    scrollToEnd();
  };
  try {
    const response = await api('/chat/completions', { method: 'POST', body: JSON.stringify(body), signal: controller.signal });
    if (body.stream) {
      for await (const data of sseData(response, controller.signal)) {
        if (data.error) throw new ApiError(200, data.error.message ?? 'The stream failed.', data.error.code, data.error.param);
        const choice = data.choices?.[0];
        onDelta(choice?.delta?.content);
        if (choice?.finish_reason) finishReason = choice.finish_reason;
        if (data.usage) usage = data.usage;
      }
    } else {
      const completion = await response.json();
      onDelta(completion.choices?.[0]?.message?.content ?? '');
      finishReason = completion.choices?.[0]?.finish_reason ?? null;
      usage = completion.usage;
    }
    const ended = performance.now();
    state.history.push({ role: 'assistant', content });
    answer.dataset['state'] = 'done';
    if (body.response_format) renderJsonAnswer(answer, content);
    stats.replaceChildren(...statChips(usage, firstToken ? firstToken - started : ended - started, firstToken ? ended - firstToken : 0, finishReason));
  } catch (error) {
    if (controller.signal.aborted) {
      // Stopped: keep what arrived, as part of the conversation.
      state.history.push({ role: 'assistant', content });
      answer.dataset['state'] = 'stopped';
      stats.replaceChildren(element('span', { className: 'chip warn', textContent: 'stopped' }), element('span', { className: 'chip', textContent: `${formatMs(performance.now() - started)}` }));
    } else {
      // Failed: take the turn back so it can be fixed and sent again.
      answer.remove();
      state.history.pop();
      ui.transcript.lastElementChild?.remove();
      ui.prompt.value = sentText;
      for (const item of sentAttachments) {
        state.attachments.push(item);
        renderAttachment(item);
      }
      showError(error);
    }
  } finally {
    answer.classList.remove('streaming');
    state.generation = null;
    setBusy(false);
    updateEmpty();
    scheduleTokenize();
  }
}

/** The parsed `data:` payloads of an SSE response, up to `[DONE]`. */
async function* sseData(response, signal) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of event.split('\n')) {
          if (!line.startsWith('data:')) continue;
          const data = line.slice(5).trim();
          if (data === '[DONE]') return;
          yield JSON.parse(data);
        }
      }
    }
  } finally {
    if (signal.aborted) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}

function stop() {
  state.generation?.abort();
}

function statChips(usage, ttftMs, generationMs, finishReason) {
  const chips = [];
  const chip = (label, value, name) => {
    const span = element('span', { className: 'chip' });
    span.dataset['stat'] = name;
    span.append(element('b', { textContent: value }), ` ${label}`);
    chips.push(span);
  };
  if (usage) {
    chip('prompt', String(usage.prompt_tokens), 'prompt');
    const imageTokens = usage.prompt_tokens_details?.image_tokens;
    if (imageTokens !== undefined) chip('image', String(imageTokens), 'image');
    chip('completion', String(usage.completion_tokens), 'completion');
  }
  chip('to first token', formatMs(ttftMs), 'ttft');
  if (usage && generationMs > 0 && usage.completion_tokens > 1) {
    // The first token's time is in TTFT; the rate is over the ones after it.
    chip('tok/s', ((usage.completion_tokens - 1) / (generationMs / 1000)).toFixed(1), 'rate');
  }
  if (finishReason && finishReason !== 'stop') chip('finish', finishReason, 'finish');
  return chips;
}

function renderJsonAnswer(answer, content) {
  const badge = element('span', { className: 'chip' });
  try {
    const value = JSON.parse(content);
    /** @type {HTMLElement} */ (answer.querySelector('.text')).textContent = JSON.stringify(value, null, 2);
    answer.classList.add('json');
    badge.textContent = 'valid JSON';
    badge.classList.add('ok');
  } catch {
    badge.textContent = 'not valid JSON';
    badge.classList.add('warn');
  }
  /** @type {HTMLElement} */ (answer.querySelector('.stats')).before(badge);
}

// ------------------------------------------------------------------------------------------------ rendering

function element(tag, properties = {}) {
  return Object.assign(document.createElement(tag), properties);
}

function appendMessage(message) {
  const item = element('li', { className: `message ${message.role}` });
  item.dataset['role'] = message.role;
  const role = element('div', { className: 'role', textContent: message.role === 'user' ? 'You' : 'Assistant' });
  const text = element('div', { className: 'text' });
  const images = element('div', { className: 'images' });
  if (typeof message.content === 'string') text.textContent = message.content;
  else {
    text.textContent = message.content.filter((part) => part.type === 'text').map((part) => part.text).join('\n');
    for (const part of message.content) {
      if (part.type !== 'image_url') continue;
      const url = part.image_url.url;
      images.append(url.startsWith('data:') ? element('img', { src: url, alt: 'image' }) : element('div', { className: 'remote', textContent: hostOf(url), title: url }));
    }
  }
  item.append(role, images, text, element('div', { className: 'stats' }));
  ui.transcript.append(item);
  updateEmpty();
  scrollToEnd();
  return item;
}

function scrollToEnd() {
  ui.transcript.scrollTop = ui.transcript.scrollHeight;
}

function updateEmpty() {
  ui.empty.hidden = ui.transcript.children.length > 0;
}

function setBusy(busy) {
  ui.send.hidden = busy;
  ui.stop.hidden = !busy;
  ui.chat.classList.toggle('busy', busy);
}

function showError(error) {
  const message = error instanceof Error ? error.message : String(error);
  const status = error instanceof ApiError && error.status !== 200 ? `${error.status} ` : '';
  const param = error instanceof ApiError && error.param ? ` (${error.param})` : '';
  ui.error.replaceChildren(element('strong', { textContent: `${status}${error instanceof ApiError && error.code ? error.code : 'Error'}` }), ` ${message}${param}`);
  ui.error.hidden = false;
}

function hideError() {
  ui.error.hidden = true;
  ui.error.replaceChildren();
}

function formatMs(ms) {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

// ------------------------------------------------------------------------------------------------- code dialog

function renderCode() {
  let body;
  try {
    body = buildRequest();
  } catch (error) {
    ui.code.textContent = error instanceof Error ? error.message : String(error);
    return;
  }
  const origin = window.location.origin;
  const withKey = ui.apiKey.value.trim() !== '';
  const writers = { curl: toCurl, python: toPython, javascript: toJavaScript };
  ui.code.textContent = writers[state.codeLanguage](origin, body, withKey);
  ui.code.dataset['lang'] = state.codeLanguage;
  for (const tab of ui.codeDialog.querySelectorAll('[role=tab]')) {
    tab.setAttribute('aria-selected', String(tab.getAttribute('data-lang') === state.codeLanguage));
  }
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Not a secure context (plain http on a LAN address): fall back to selecting the text.
    const selection = window.getSelection();
    const range = document.createRange();
    range.selectNodeContents(ui.code);
    selection?.removeAllRanges();
    selection?.addRange(range);
    return document.execCommand('copy');
  }
}

// --------------------------------------------------------------------------------------------------- settings

const SAVED_FIELDS = ['system', 'temperature', 'maxTokens', 'seed', 'topK', 'minP', 'jsonSchema'];
const SAVED_CHECKS = ['stream', 'ignoreEos', 'jsonMode'];

function saveSettings() {
  const saved = {};
  for (const name of SAVED_FIELDS) saved[name] = ui[name].value;
  for (const name of SAVED_CHECKS) saved[name] = ui[name].checked;
  localStorage.setItem(STORAGE.settings, JSON.stringify(saved));
}

function restoreSettings() {
  let saved;
  try {
    saved = JSON.parse(localStorage.getItem(STORAGE.settings) ?? '{}') ?? {};
  } catch {
    saved = {};
  }
  for (const name of SAVED_FIELDS) if (typeof saved[name] === 'string') ui[name].value = saved[name];
  for (const name of SAVED_CHECKS) if (typeof saved[name] === 'boolean') ui[name].checked = saved[name];
  if (!ui.jsonSchema.value.trim()) ui.jsonSchema.value = DEFAULT_SCHEMA;
  ui.jsonSection.hidden = !ui.jsonMode.checked;
}

function checkSchema() {
  try {
    responseFormat();
    ui.jsonSchemaError.hidden = true;
  } catch (error) {
    ui.jsonSchemaError.textContent = error instanceof Error ? error.message : String(error);
    ui.jsonSchemaError.hidden = false;
  }
}

// ----------------------------------------------------------------------------------------------------- wiring

function wire() {
  ui.composer.addEventListener('submit', (event) => {
    event.preventDefault();
    void send();
  });
  ui.prompt.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      void send();
    }
  });
  ui.prompt.addEventListener('input', scheduleTokenize);
  ui.stop.addEventListener('click', stop);
  $('clear').addEventListener('click', () => {
    stop();
    state.history = [];
    ui.transcript.replaceChildren();
    hideError();
    updateEmpty();
    scheduleTokenize();
  });
  ui.model.addEventListener('change', () => {
    localStorage.setItem(STORAGE.model, ui.model.value);
    renderModelInfo();
    scheduleTokenize();
  });
  ui.apiKey.addEventListener('change', () => {
    const key = ui.apiKey.value.trim();
    if (key) localStorage.setItem(STORAGE.key, key);
    else localStorage.removeItem(STORAGE.key);
    void loadModels();
  });
  for (const name of [...SAVED_FIELDS, ...SAVED_CHECKS]) {
    ui[name].addEventListener('change', () => {
      saveSettings();
      scheduleTokenize();
    });
  }
  ui.system.addEventListener('input', scheduleTokenize);
  ui.jsonMode.addEventListener('change', () => {
    ui.jsonSection.hidden = !ui.jsonMode.checked;
    checkSchema();
  });
  ui.jsonSchema.addEventListener('input', checkSchema);

  $('add-image').addEventListener('click', () => ui.file.click());
  ui.file.addEventListener('change', () => {
    for (const file of ui.file.files ?? []) addFile(file);
    ui.file.value = '';
  });
  $('add-url').addEventListener('click', () => {
    ui.urlRow.hidden = !ui.urlRow.hidden;
    if (!ui.urlRow.hidden) ui.imageUrl.focus();
  });
  $('add-url-confirm').addEventListener('click', addUrlFromInput);
  ui.imageUrl.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      event.preventDefault();
      addUrlFromInput();
    }
  });
  document.addEventListener('paste', (event) => {
    const files = [...(event.clipboardData?.files ?? [])].filter((file) => file.type.startsWith('image/'));
    if (files.length === 0) return;
    event.preventDefault();
    for (const file of files) addFile(file);
  });
  let dragDepth = 0;
  ui.chat.addEventListener('dragenter', (event) => {
    if (!event.dataTransfer?.types.includes('Files')) return;
    dragDepth += 1;
    ui.dropOverlay.hidden = false;
  });
  ui.chat.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) ui.dropOverlay.hidden = true;
  });
  ui.chat.addEventListener('dragover', (event) => event.preventDefault());
  ui.chat.addEventListener('drop', (event) => {
    event.preventDefault();
    dragDepth = 0;
    ui.dropOverlay.hidden = true;
    const files = [...(event.dataTransfer?.files ?? [])].filter((file) => file.type.startsWith('image/'));
    for (const file of files) addFile(file);
    const uri = event.dataTransfer?.getData('text/uri-list');
    if (files.length === 0 && uri) addAttachment({ url: uri.split('\n')[0].trim(), name: uri, remote: true });
  });

  $('show-code').addEventListener('click', () => {
    renderCode();
    ui.codeDialog.showModal();
  });
  $('close-code').addEventListener('click', () => ui.codeDialog.close());
  for (const tab of ui.codeDialog.querySelectorAll('[role=tab]')) {
    tab.addEventListener('click', () => {
      state.codeLanguage = tab.getAttribute('data-lang') ?? 'curl';
      renderCode();
    });
  }
  const copyButton = $('copy-code');
  copyButton.addEventListener('click', async () => {
    const copied = await copyText(ui.code.textContent ?? '');
    copyButton.textContent = copied ? 'Copied' : 'Select and copy';
    setTimeout(() => (copyButton.textContent = 'Copy'), 1500);
  });
}

function start() {
  ui.apiKey.value = localStorage.getItem(STORAGE.key) ?? '';
  restoreSettings();
  // Phones start with the settings folded away, under the conversation's header.
  if (window.matchMedia('(max-width: 720px)').matches) ui.settings.open = false;
  wire();
  updateEmpty();
  void loadModels();
  document.body.dataset['ready'] = 'true';
}

start();
