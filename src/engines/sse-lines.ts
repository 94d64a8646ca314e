/**
 * Reads the `data:` payloads of a Server-Sent Events body. Bytes are decoded with a streaming UTF-8
 * decoder, so a multi-byte character split across network chunks is never torn apart.
 *
 * Every event one network read completes is handed on at once, as one array: at high token rates an
 * upstream read carries many chunks, and a step through an async generator per event would cost more than
 * the event itself.
 *
 * Hand-written because it is a dozen lines and the SSE client libraries on npm are built around
 * EventSource reconnect semantics that a one-shot POST stream does not want.
 */

/** Yields, per network read, the `data` of each event it completed (multi-line data joined with `\n`). */
export async function* parseSseData(body: AsyncIterable<Uint8Array | string>): AsyncGenerator<string[]> {
  const decoder = new TextDecoder('utf-8');
  // Text not yet ending in a newline, and the data lines of the event under way.
  let rest = '';
  let data: string[] = [];
  const events = (text: string, final: boolean): string[] => {
    const done: string[] = [];
    let start = 0;
    for (;;) {
      const newline = text.indexOf('\n', start);
      if (newline === -1) break;
      const end = newline > start && text.charCodeAt(newline - 1) === 13 /* \r */ ? newline - 1 : newline;
      if (end === start) {
        if (data.length > 0) done.push(data.length === 1 ? data[0]! : data.join('\n'));
        data = [];
      } else if (text.startsWith('data:', start)) {
        data.push(text.slice(start + (text.charCodeAt(start + 5) === 32 /* space */ ? 6 : 5), end));
      }
      // Other fields (event:, id:, retry:) and comments carry nothing we use.
      start = newline + 1;
    }
    rest = text.slice(start);
    if (final && data.length > 0) {
      done.push(data.join('\n'));
      data = [];
    }
    return done;
  };
  for await (const chunk of body) {
    const done = events(rest + (typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true })), false);
    if (done.length > 0) yield done;
  }
  let tail = rest + decoder.decode();
  if (tail.length > 0 && !tail.endsWith('\n')) tail += '\n';
  const done = events(tail, true);
  if (done.length > 0) yield done;
}
