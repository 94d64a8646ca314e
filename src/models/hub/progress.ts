/**
 * Download progress: the events a pull emits, and reporters that show them: a one-line bar with bytes,
 * rate and ETA redrawn in place on a terminal, plain periodic lines when the output is a file or pipe, and
 * pino records for the server's log. The bar is a single line of text redrawn with `\r`, written here rather
 * than taken from a progress-bar package because the same numbers feed the plain lines and the log records;
 * bytes and durations are formatted by pretty-bytes and pretty-ms.
 */
import prettyBytes from 'pretty-bytes';
import prettyMilliseconds from 'pretty-ms';
import type { Logger } from '../../logger.js';

/** One step of a file download. `file` is the path inside the repo. */
export type PullProgressEvent =
  /** Another process holds the file's download lock; this one waits for it. */
  | { type: 'waiting'; repo: string; file: string }
  /** Bytes start flowing; `resumedFromBytes` were already on disk from an earlier attempt. */
  | { type: 'start'; repo: string; file: string; totalBytes: number; resumedFromBytes: number }
  /** `receivedBytes` of `totalBytes` are on disk (resumed bytes included). */
  | { type: 'progress'; repo: string; file: string; receivedBytes: number; totalBytes: number }
  /** The file is complete and verified; `cached` when nothing had to be downloaded. */
  | { type: 'done'; repo: string; file: string; totalBytes: number; cached: boolean };

/** Receives progress events; must not throw. */
export type ProgressListener = (event: PullProgressEvent) => void;

/** A terminal-like stream the TTY bar draws on. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean | undefined;
  columns?: number | undefined;
}

/** Options shared by the reporters. */
export interface ReporterOptions {
  /** Shortest time between two updates, in ms. @default 100 for the bar, 5000 for lines and logs */
  intervalMs?: number | undefined;
  /** Clock, for tests. @default Date.now */
  now?: (() => number) | undefined;
}

/** A bar on a terminal (`stream.isTTY`), plain lines otherwise. */
export function consoleProgress(stream: ProgressStream, options: ReporterOptions = {}): ProgressListener {
  return stream.isTTY ? ttyProgress(stream, options) : lineProgress(stream, options);
}

/**
 * A single line redrawn in place:
 * `SmolVLM-256M-Instruct-Q8_0.gguf  [#########.........]  52%  91 MB / 175 MB  12 MB/s  ETA 7s`.
 */
export function ttyProgress(stream: ProgressStream, options: ReporterOptions = {}): ProgressListener {
  const interval = options.intervalMs ?? 100;
  const tracker = new RateTracker(options.now);
  let lastDraw = 0;
  const draw = (line: string, final: boolean): void => {
    const width = Math.max(20, (stream.columns || 80) - 1);
    stream.write(`\r\x1b[K${line.length > width ? line.slice(0, width) : line}${final ? '\n' : ''}`);
  };
  return (event) => {
    const now = tracker.now();
    switch (event.type) {
      case 'waiting':
        draw(`${event.file}: another process is downloading it; waiting`, true);
        return;
      case 'start':
        tracker.reset(event.resumedFromBytes);
        lastDraw = 0;
        if (event.resumedFromBytes > 0) {
          draw(`${event.file}: resuming at ${prettyBytes(event.resumedFromBytes)} of ${prettyBytes(event.totalBytes)}`, true);
        }
        return;
      case 'progress': {
        tracker.sample(event.receivedBytes);
        if (now - lastDraw < interval) return;
        lastDraw = now;
        const fraction = event.totalBytes > 0 ? event.receivedBytes / event.totalBytes : 1;
        const barWidth = 20;
        const filled = Math.min(barWidth, Math.round(fraction * barWidth));
        const bar = `[${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}]`;
        draw(`${event.file}  ${bar}  ${describe(event.receivedBytes, event.totalBytes, tracker)}`, false);
        return;
      }
      case 'done':
        draw(`${event.file}  ${prettyBytes(event.totalBytes)}  ${event.cached ? 'already in the cache' : 'done, verified'}`, true);
        return;
    }
  };
}

/** Plain lines (no control characters), at most one per `intervalMs` per file, for logs and pipes. */
export function lineProgress(stream: ProgressStream, options: ReporterOptions = {}): ProgressListener {
  return textReporter((line) => stream.write(`${line}\n`), options);
}

/** pino records (`msg` plus `repo`, `file`, `receivedBytes`, `totalBytes`), for the server's log. */
export function logProgress(logger: Logger, options: ReporterOptions = {}): ProgressListener {
  const interval = options.intervalMs ?? 5000;
  const tracker = new RateTracker(options.now);
  let lastLog = 0;
  return (event) => {
    const now = tracker.now();
    const fields = { repo: event.repo, file: event.file };
    switch (event.type) {
      case 'waiting':
        logger.info(fields, `another process is downloading ${event.file}; waiting for it`);
        return;
      case 'start':
        tracker.reset(event.resumedFromBytes);
        lastLog = now;
        logger.info(
          { ...fields, totalBytes: event.totalBytes, resumedFromBytes: event.resumedFromBytes },
          event.resumedFromBytes > 0
            ? `resuming ${event.file} at ${prettyBytes(event.resumedFromBytes)} of ${prettyBytes(event.totalBytes)}`
            : `downloading ${event.file} (${prettyBytes(event.totalBytes)})`,
        );
        return;
      case 'progress':
        tracker.sample(event.receivedBytes);
        if (now - lastLog < interval) return;
        lastLog = now;
        logger.info(
          { ...fields, receivedBytes: event.receivedBytes, totalBytes: event.totalBytes },
          `${event.file}: ${describe(event.receivedBytes, event.totalBytes, tracker)}`,
        );
        return;
      case 'done':
        logger.info({ ...fields, totalBytes: event.totalBytes, cached: event.cached }, `${event.file}: ${event.cached ? 'already in the cache' : 'downloaded and verified'}`);
        return;
    }
  };
}

function textReporter(emit: (line: string) => void, options: ReporterOptions): ProgressListener {
  const interval = options.intervalMs ?? 5000;
  const tracker = new RateTracker(options.now);
  let lastLine = 0;
  return (event) => {
    const now = tracker.now();
    switch (event.type) {
      case 'waiting':
        emit(`${event.file}: another process is downloading it; waiting`);
        return;
      case 'start':
        tracker.reset(event.resumedFromBytes);
        lastLine = now;
        emit(
          event.resumedFromBytes > 0
            ? `${event.file}: resuming at ${prettyBytes(event.resumedFromBytes)} of ${prettyBytes(event.totalBytes)}`
            : `${event.file}: downloading ${prettyBytes(event.totalBytes)}`,
        );
        return;
      case 'progress':
        tracker.sample(event.receivedBytes);
        if (now - lastLine < interval) return;
        lastLine = now;
        emit(`${event.file}: ${describe(event.receivedBytes, event.totalBytes, tracker)}`);
        return;
      case 'done':
        emit(`${event.file}: ${prettyBytes(event.totalBytes)}, ${event.cached ? 'already in the cache' : 'downloaded and verified'}`);
        return;
    }
  };
}

/** `52%  91 MB / 175 MB  12 MB/s  ETA 7s` */
function describe(received: number, total: number, tracker: RateTracker): string {
  const percent = total > 0 ? Math.floor((received / total) * 100) : 100;
  const rate = tracker.bytesPerSecond();
  const parts = [`${percent}%`, `${prettyBytes(received)} / ${prettyBytes(total)}`];
  if (rate > 0) {
    parts.push(`${prettyBytes(rate)}/s`);
    parts.push(`ETA ${prettyMilliseconds(Math.max(0, ((total - received) / rate) * 1000), { secondsDecimalDigits: 0, unitCount: 2 })}`);
  }
  return parts.join('  ');
}

/** Download rate over the last few seconds, so the ETA follows the connection rather than the average. */
class RateTracker {
  static readonly WINDOW_MS = 5000;
  #samples: { at: number; bytes: number }[] = [];
  readonly #clock: () => number;

  constructor(clock: (() => number) | undefined) {
    this.#clock = clock ?? Date.now;
  }

  now(): number {
    return this.#clock();
  }

  reset(bytes: number): void {
    this.#samples = [{ at: this.#clock(), bytes }];
  }

  sample(bytes: number): void {
    const at = this.#clock();
    this.#samples.push({ at, bytes });
    while (this.#samples.length > 2 && at - (this.#samples[0]?.at ?? at) > RateTracker.WINDOW_MS) this.#samples.shift();
  }

  bytesPerSecond(): number {
    const first = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    if (!first || !last || last.at <= first.at) return 0;
    return ((last.bytes - first.bytes) / (last.at - first.at)) * 1000;
  }
}
