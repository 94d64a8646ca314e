import assert from 'node:assert/strict';
import { test } from 'node:test';
import { toOpenAIChatBody } from './openai-chat-body.js';

const signal = new AbortController().signal;

test('parameters map to OpenAI names, extensions to the names vLLM, llama-server and Iris read', () => {
  const body = toOpenAIChatBody(
    {
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }],
      params: {
        maxTokens: 5, temperature: 0.5, topP: 0.9, topK: 40, minP: 0.1, seed: 7, stop: ['x'],
        presencePenalty: 0.1, frequencyPenalty: 0.2, repetitionPenalty: 1.1, ignoreEos: true,
      },
      signal,
    },
    'served-name',
  );
  assert.deepEqual(body, {
    model: 'served-name',
    messages: [{ role: 'user', content: 'hi' }],
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: 5,
    temperature: 0.5,
    top_p: 0.9,
    seed: 7,
    stop: ['x'],
    presence_penalty: 0.1,
    frequency_penalty: 0.2,
    top_k: 40,
    min_p: 0.1,
    ignore_eos: true,
    repetition_penalty: 1.1,
    repeat_penalty: 1.1,
  });
});

test('absent parameters are left out; images become PNG data URIs between the text parts', () => {
  const png = Uint8Array.from([0x89, 0x50, 0x4e, 0x47]);
  const body = toOpenAIChatBody(
    {
      messages: [
        { role: 'system', content: [{ type: 'text', text: 'Be ' }, { type: 'text', text: 'brief.' }] },
        { role: 'user', content: [{ type: 'text', text: 'What?' }, { type: 'image', image: { data: png, mimeType: 'image/png', width: 1, height: 1 } }] },
        { role: 'assistant', content: [] },
      ],
      params: {},
      signal,
    },
    'm',
  );
  assert.deepEqual(body, {
    model: 'm',
    messages: [
      { role: 'system', content: 'Be brief.' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What?' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw==' } },
        ],
      },
      { role: 'assistant', content: '' },
    ],
    stream: true,
    stream_options: { include_usage: true },
  });
});
