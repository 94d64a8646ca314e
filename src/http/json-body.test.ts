import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';

import { liftDataUris } from './json-body.js';

/** What the parser makes of a body through the lifting: the value, or the error it throws. */
function parseLifted(raw: string): unknown {
  const lifted = liftDataUris(Buffer.from(raw, 'utf8'));
  return lifted.restore(JSON.parse(lifted.text));
}

const big = (bytes = 60_000) => `data:image/png;base64,${randomBytes(bytes).toString('base64')}`;

describe('liftDataUris', () => {
  it('keeps large data URIs out of the text the parser reads, and puts them back where they were', () => {
    const images = [big(), big(80_000)];
    const body = {
      model: 'm',
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'Compare "data:these" two \u00e9 images' }, { type: 'image_url', image_url: { url: images[0] } }] },
        { role: 'user', content: [{ type: 'image_url', image_url: { url: images[1], detail: 'low' } }] },
      ],
    };
    const raw = JSON.stringify(body);
    const lifted = liftDataUris(Buffer.from(raw));
    assert.ok(lifted.text.length < 1000, `${lifted.text.length} characters left for the parser`);
    assert.deepEqual(lifted.restore(JSON.parse(lifted.text)), body);
  });

  it('gives exactly what JSON.parse gives for bodies where lifting must not apply', () => {
    const uri = big();
    const bodies = [
      // An escaped quote before data: (the literal is inside another string).
      JSON.stringify({ text: `say "${uri}" please` }),
      JSON.stringify({ text: `say "${uri}`, next: 1 }),
      // After an escaped backslash, the quote is a real delimiter again.
      `{"a":"\\\\","b":"${uri}"}`,
      // Escapes inside the literal, and a slash escaped as some encoders do.
      JSON.stringify({ url: `${uri}\n` }),
      JSON.stringify({ url: uri }).replace(/\//g, '\\/'),
      // Non-ASCII inside the literal.
      JSON.stringify({ url: `${uri}\u00e9\u{1f308}` }),
      // A data URI as an object key.
      JSON.stringify({ [uri]: 1, list: [uri, { deeper: [[uri]] }] }),
      // Small literals stay in the text.
      JSON.stringify({ url: big(100), pad: 'x'.repeat(70_000) }),
      // A top-level string.
      JSON.stringify(uri),
    ];
    for (const raw of bodies) assert.deepEqual(parseLifted(raw), JSON.parse(raw), raw.slice(0, 60));
  });

  it('turns no invalid body into a valid one', () => {
    const uri = big();
    const invalid = [
      `{"url":"${uri.slice(0, 20_000)}\n${uri.slice(20_000)}"}`, // a raw control character inside the literal
      `{"a":"x"${uri}"}`, // "data: after a closing quote
      `{"url":"${uri}`, // never closed
      `{"url":"${uri}",}`,
      `["${uri}" "${uri}"]`,
    ];
    for (const raw of invalid) {
      assert.throws(() => JSON.parse(raw), SyntaxError, `the case itself is invalid: ${raw.slice(0, 40)}`);
      assert.throws(() => parseLifted(raw), SyntaxError, raw.slice(0, 40));
    }
  });

  it('leaves a string that looks like a placeholder alone (the nonce is new for every body)', () => {
    const raw = JSON.stringify({ a: big(), b: '\u0000iris-data-uri-000000000000000000000000-0' });
    assert.deepEqual(parseLifted(raw), JSON.parse(raw));
  });
});
