/**
 * Bounds on the work one chat request may ask for, checked right after parsing and before anything else
 * (model lookup, images, the engine): a chat template rendered over a million messages, or megabytes of text
 * that cannot fit any context, would hold the engine for minutes for nothing.
 */
import { invalidRequest } from '../errors.js';
import type { ChatRequest } from './chat-request.js';

/** The limits (config `limits:`). */
export interface RequestLimits {
  /** Messages in one request. */
  maxMessages: number;
  /** UTF-8 bytes of all text in the messages together. */
  maxTextBytes: number;
}

/** Throws a 400 naming the limit when a request asks for more than the limits allow. */
export function checkRequestLimits(chat: ChatRequest, limits: RequestLimits): void {
  if (chat.messages.length > limits.maxMessages) {
    throw invalidRequest(
      `Too many messages: ${chat.messages.length}; this server takes at most ${limits.maxMessages} in one request.`,
      'messages',
      'array_above_max_length',
    );
  }
  let bytes = 0;
  for (const message of chat.messages) {
    const content = message.content;
    if (typeof content === 'string') bytes += Buffer.byteLength(content);
    else if (Array.isArray(content)) {
      for (const part of content) if (part.type === 'text') bytes += Buffer.byteLength(part.text);
    }
    if (bytes > limits.maxTextBytes) {
      throw invalidRequest(
        `The messages hold more than ${limits.maxTextBytes} bytes of text, the most this server takes in one request.`,
        'messages',
        'string_above_max_length',
      );
    }
  }
}
