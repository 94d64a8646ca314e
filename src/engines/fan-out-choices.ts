/**
 * `n` choices from any engine. An engine that produces that many choices per request gets the request as it
 * is; otherwise the request is fanned out into n engine requests that run side by side (each in its own
 * slot of the model), sharing the same prepared messages, so images are fetched and normalized once. With a
 * seed, choice i uses `seed + i`, so choices differ yet each is reproducible.
 *
 * The merged stream keeps the engine contract: a failure before the first part rejects (and cancels the
 * other choices); after it, it ends the stream with an `error` part. Usage comes once, at the end: the prompt
 * counted once, completion tokens summed over the choices.
 */
import type { Engine, EngineCompletion, EngineRequest, EngineUsage, StreamPart } from './engine.js';
import { collectCompletion } from './collect-completion.js';
import { toIrisError } from '../errors.js';

/** The whole completion with all `request.n` choices. */
export function completeChoices(engine: Engine, request: EngineRequest): Promise<EngineCompletion> {
  if ((request.n ?? 1) <= engine.capabilities.maxChoicesPerRequest) return engine.complete(request);
  return collectCompletion(streamChoices(engine, request));
}

/**
 * The stream of all `request.n` choices, each part tagged with its choice index: the engine's own stream
 * when it produces them all (no step in between), else the merged fan-out.
 */
export function streamChoices(engine: Engine, request: EngineRequest): AsyncIterable<StreamPart> {
  return (request.n ?? 1) <= engine.capabilities.maxChoicesPerRequest ? engine.stream(request) : fanOut(engine, request, request.n ?? 1);
}

async function* fanOut(engine: Engine, request: EngineRequest, n: number): AsyncGenerator<StreamPart> {
  const controller = new AbortController();
  const signal = AbortSignal.any([request.signal, controller.signal]);
  const iterators = Array.from({ length: n }, (_, index) => {
    const params = request.params.seed === undefined ? request.params : { ...request.params, seed: request.params.seed + index };
    return engine.stream({ ...request, n: 1, params, signal })[Symbol.asyncIterator]();
  });
  type Settled = { index: number; result: IteratorResult<StreamPart> } | { index: number; error: unknown };
  const pending = new Map<number, Promise<Settled>>();
  const pull = (index: number): void => {
    pending.set(
      index,
      iterators[index]!.next().then(
        (result) => ({ index, result }),
        (error: unknown) => ({ index, error }),
      ),
    );
  };
  iterators.forEach((_, index) => pull(index));
  const usage: EngineUsage = { promptTokens: 0, completionTokens: 0 };
  let produced = false;
  try {
    while (pending.size > 0) {
      const settled = await Promise.race(pending.values());
      if ('error' in settled || (!settled.result.done && settled.result.value.type === 'error')) {
        const failure = 'error' in settled ? settled.error : (settled.result.value as { error: unknown }).error;
        if (!produced) throw toIrisError(failure);
        yield { type: 'error', error: toIrisError(failure) };
        return;
      }
      if (settled.result.done) {
        pending.delete(settled.index);
        continue;
      }
      pull(settled.index);
      const part = settled.result.value;
      if (part.type === 'error') continue;
      if (part.type === 'usage') {
        // Every choice saw the same prompt: count it once.
        usage.promptTokens = Math.max(usage.promptTokens, part.usage.promptTokens);
        usage.completionTokens += part.usage.completionTokens;
        if (part.usage.cachedTokens !== undefined && usage.cachedTokens === undefined) usage.cachedTokens = part.usage.cachedTokens;
        continue;
      }
      produced = true;
      yield { ...part, choice: settled.index };
    }
    yield { type: 'usage', usage };
  } finally {
    controller.abort();
    await Promise.all(iterators.map((iterator) => iterator.return?.().catch(() => undefined)));
  }
}
