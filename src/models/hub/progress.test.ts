import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { consoleProgress, lineProgress, type PullProgressEvent } from './progress.js';

function recorder(isTTY: boolean) {
  const writes: string[] = [];
  return { stream: { isTTY, columns: 120, write: (text: string) => writes.push(text) }, writes };
}

const file = 'model-Q8_0.gguf';
const MB = 1_000_000;

/** Plays a 100 MB download at 10 MB/s, one event every 100 ms. */
function play(listener: (event: PullProgressEvent) => void, clock: { now: number }, resumedFrom = 0): void {
  listener({ type: 'start', repo: 'a/b', file, totalBytes: 100 * MB, resumedFromBytes: resumedFrom });
  for (let received = resumedFrom + MB; received <= 100 * MB; received += MB) {
    clock.now += 100;
    listener({ type: 'progress', repo: 'a/b', file, receivedBytes: received, totalBytes: 100 * MB });
  }
  listener({ type: 'done', repo: 'a/b', file, totalBytes: 100 * MB, cached: false });
}

describe('progress reporters', () => {
  it('draws one line in place on a terminal, with bytes, rate and ETA', () => {
    const clock = { now: 0 };
    const { stream, writes } = recorder(true);
    play(consoleProgress(stream, { now: () => clock.now, intervalMs: 100 }), clock);
    const halfway = writes.find((text) => text.includes(' 50%'));
    assert.ok(halfway, writes.slice(0, 3).join('|'));
    assert.ok(halfway.startsWith('\r\x1b[K'), 'redrawn in place');
    assert.ok(!halfway.endsWith('\n'));
    assert.ok(halfway.endsWith('[##########..........]  50%  50 MB / 100 MB  10 MB/s  ETA 5s'), halfway);
    assert.ok((writes[writes.length - 1] ?? '').endsWith('100 MB  done, verified\n'));
  });

  it('writes plain lines, at most one per interval, without control characters', () => {
    const clock = { now: 0 };
    const { stream, writes } = recorder(false);
    play(consoleProgress(stream, { now: () => clock.now, intervalMs: 2000 }), clock, 20 * MB);
    assert.equal(writes[0], `${file}: resuming at 20 MB of 100 MB\n`);
    // 8 s of download at one line per 2 s, plus the first and last lines
    assert.equal(writes.length, 1 + 4 + 1);
    assert.equal(writes[1], `${file}: 40%  40 MB / 100 MB  10 MB/s  ETA 6s\n`);
    assert.equal(writes[writes.length - 1], `${file}: 100 MB, downloaded and verified\n`);
    assert.ok(writes.every((line) => !line.includes('\r') && !line.includes('\u001b')));
  });

  it('says when another process holds the download', () => {
    const { stream, writes } = recorder(false);
    lineProgress(stream)({ type: 'waiting', repo: 'a/b', file });
    assert.deepEqual(writes, [`${file}: another process is downloading it; waiting\n`]);
  });
});
