/**
 * Cancels a request's work when its client goes away: an AbortSignal that fires if the connection closes
 * before the response is complete (the engine then stops generating, the image fetches stop). It also fires
 * when `also` does (the end of the shutdown grace period), with that signal's reason.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';

/** An AbortController that fires when the client disconnects before the response is complete. */
export function abortOnDisconnect(
  request: FastifyRequest,
  reply: FastifyReply,
  also?: AbortSignal,
): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const onClose = (): void => {
    if (!reply.raw.writableFinished) controller.abort(new Error('client disconnected'));
  };
  const onAlso = (): void => controller.abort(also?.reason);
  reply.raw.on('close', onClose);
  request.raw.on('aborted', onClose);
  if (also?.aborted) onAlso();
  else also?.addEventListener('abort', onAlso, { once: true });
  return {
    signal: controller.signal,
    dispose: () => {
      reply.raw.off('close', onClose);
      request.raw.off('aborted', onClose);
      also?.removeEventListener('abort', onAlso);
    },
  };
}
