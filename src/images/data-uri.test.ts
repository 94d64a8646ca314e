import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';

import { IrisError } from '../errors.js';
import { decodeDataUri } from './data-uri.js';

const LIMIT = 1 << 20;

function decode(data: string, maxBytes = LIMIT): Uint8Array {
  return decodeDataUri(`data:image/png;base64,${data}`, 'image', maxBytes);
}

function refusal(data: string, maxBytes = LIMIT): { status: number; code: string | null } {
  try {
    decode(data, maxBytes);
  } catch (error) {
    assert.ok(error instanceof IrisError);
    return { status: error.status, code: error.code };
  }
  assert.fail(`'${data.slice(0, 40)}' was accepted`);
}

describe('decodeDataUri', () => {
  it('decodes base64 and base64url, padded or not, and base64 wrapped at 76 columns', () => {
    for (let length = 1; length <= 64; length += 1) {
      const bytes = randomBytes(length);
      const standard = bytes.toString('base64');
      assert.deepEqual(Buffer.from(decode(standard)), bytes, standard);
      assert.deepEqual(Buffer.from(decode(standard.replace(/=+$/, ''))), bytes, `${standard} unpadded`);
      assert.deepEqual(Buffer.from(decode(bytes.toString('base64url'))), bytes, `${standard} as base64url`);
    }
    const bytes = randomBytes(1000);
    const wrapped = bytes.toString('base64').replace(/.{76}/g, '$&\r\n');
    assert.deepEqual(Buffer.from(decode(wrapped)), bytes);
  });

  it('refuses any character outside the alphabet, wherever it is, and padding in the middle', () => {
    for (let length = 1; length <= 40; length += 1) {
      const clean = randomBytes(length).toString('base64');
      for (let at = 0; at <= clean.length; at += 1) {
        for (const intruder of ['*', '.', '@', '\u00e9', '=']) {
          const dirty = clean.slice(0, at) + intruder + clean.slice(at);
          // Padding is fine where padding goes: at the end of the data, at most two.
          if (intruder === '=' && /^[^=]*={0,2}$/.test(dirty)) continue;
          assert.deepEqual(refusal(dirty), { status: 400, code: 'invalid_image' }, JSON.stringify(dirty));
        }
      }
    }
  });

  it('refuses empty data and data larger than the limit before decoding it', () => {
    assert.deepEqual(refusal(''), { status: 400, code: 'invalid_image' });
    assert.deepEqual(refusal('=='), { status: 400, code: 'invalid_image' });
    assert.deepEqual(refusal(randomBytes(300).toString('base64'), 200), { status: 413, code: 'image_too_large' });
    assert.equal(decode(randomBytes(200).toString('base64'), 200).length, 200);
  });
});
