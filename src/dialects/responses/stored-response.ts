/**
 * Stored responses (`store: true`, the default): the response object and the conversation that led to it,
 * so `GET /v1/responses/{id}` can return it and `previous_response_id` can continue from it. Each entry
 * belongs to the API key that made it; another key sees nothing (a 404, as for an id that never existed).
 *
 * Kept in memory, bounded by bytes (least recently used entries go first) and lost on restart, until
 * responses move into Iris's database.
 */
import { LRUCache } from 'lru-cache';
import type { ChatMessage } from '../../protocol/chat-request.js';
import type { ResponseObject } from './responses-response.js';

/** One stored response. */
export interface StoredResponse {
  /** Who made it (see http/auth.ts `apiKeyOwner`). */
  owner: string;
  response: ResponseObject;
  /** Its conversation without instructions, the answer included: what a follow-up continues from. */
  conversation: ChatMessage[];
}

/** Settings of a {@link ResponseStore}. */
export interface ResponseStoreOptions {
  /** Bytes of stored responses kept (JSON size); 0 stores nothing. */
  maxBytes: number;
}

/** The stored responses of this process. */
export class ResponseStore {
  readonly #entries: LRUCache<string, StoredResponse> | undefined;

  constructor(options: ResponseStoreOptions) {
    this.#entries =
      options.maxBytes > 0
        ? new LRUCache({ maxSize: options.maxBytes, sizeCalculation: (entry) => Math.max(1, JSON.stringify(entry).length) })
        : undefined;
  }

  /** Stores a response (an entry larger than the whole store is not kept). */
  put(entry: StoredResponse): void {
    this.#entries?.set(entry.response.id, entry);
  }

  /** The response `id` if `owner` made it and it is still stored. */
  get(id: string, owner: string): StoredResponse | undefined {
    const entry = this.#entries?.get(id);
    return entry?.owner === owner ? entry : undefined;
  }

  /** Deletes the response `id` if `owner` made it; says whether it was there. */
  delete(id: string, owner: string): boolean {
    if (this.get(id, owner) === undefined) return false;
    return this.#entries?.delete(id) ?? false;
  }

  /** Drops everything. */
  dispose(): void {
    this.#entries?.clear();
  }
}
