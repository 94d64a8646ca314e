/**
 * Reads the `data:` payloads of a Server-Sent Events body. Bytes are decoded with a streaming UTF-8
 * decoder, so a multi-byte character split across network chunks is never torn apart.
 *
 * Hand-written because it is a dozen lines and the SSE client libraries on npm are built around
 * EventSource reconnect semantics that a one-shot POST stream does not want.
 */

/** Yields each event's `data` (multi-line data joined with `\n`). */
export async function* parseSseData(body: AsyncIterable<Uint8Array | string>): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8');
  let buffer = '';
  let data: string[] = [];
  const flushLines = function* (final: boolean): Generator<string> {
    for (;;) {
      const newline = buffer.indexOf('\n');
      if (newline === -1) break;
      let line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line === '') {
        if (data.length > 0) yield data.join('\n');
        data = [];
      } else if (line.startsWith('data:')) {
        data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
      }
      // Other fields (event:, id:, retry:) and comments carry nothing we use.
    }
    if (final && data.length > 0) {
      yield data.join('\n');
      data = [];
    }
  };
  for await (const chunk of body) {
    buffer += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    yield* flushLines(false);
  }
  buffer += decoder.decode();
  if (buffer.length > 0 && !buffer.endsWith('\n')) buffer += '\n';
  yield* flushLines(true);
}
