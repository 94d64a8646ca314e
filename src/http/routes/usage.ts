/**
 * GET /v1/usage (and /v1/openai/usage): token totals from the usage records, grouped by `day` (UTC),
 * `model` or `key`, between `from` (default 30 days ago) and `to` (default now). A key sees its own usage;
 * an admin key sees every key's, or one key's with `key=NAME`.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { invalidRequest, permissionDenied } from '../../errors.js';
import { parseTimeBound, type UsageGrouping, type UsageStore } from '../../store/usage-records.js';
import { callerOf } from '../auth.js';

/** What the route needs. */
export interface UsageRouteDeps {
  usage: UsageStore;
  /** Written rows are what the route reads: flush the queued ones first. */
  flush: () => Promise<void>;
  /** @default Date.now */
  now?: () => number;
}

/** One group's totals on the wire. */
export type UsageBucket = { [group in UsageGrouping]?: string | null } & {
  requests: number;
  errors: number;
  prompt_tokens: number;
  image_tokens: number;
  cached_tokens: number;
  completion_tokens: number;
  total_tokens: number;
};

/** The answer of GET /v1/usage. */
export interface UsageResponse {
  object: 'list';
  from: string;
  to: string;
  group_by: UsageGrouping;
  /** The key whose usage this is; null for all keys. */
  key: string | null;
  data: UsageBucket[];
}

const GROUPINGS: readonly UsageGrouping[] = ['day', 'model', 'key'];
const PARAMS = new Set(['from', 'to', 'group_by', 'key']);
const DEFAULT_SPAN_MS = 30 * 86_400_000;

/** Registers the usage routes. */
export function registerUsage(app: FastifyInstance, deps: UsageRouteDeps): void {
  const now = deps.now ?? Date.now;
  const handler = async (request: FastifyRequest<{ Querystring: Record<string, string | string[]> }>): Promise<UsageResponse> => {
    const query = request.query;
    for (const name of Object.keys(query)) {
      if (!PARAMS.has(name)) throw invalidRequest(`Unknown query parameter '${name}'; use from, to, group_by or key.`, name, 'unsupported_parameter');
      if (Array.isArray(query[name])) throw invalidRequest(`Give '${name}' once.`, name);
    }
    const text = (name: string): string | undefined => query[name] as string | undefined;
    const at = now();
    const bound = (name: 'from' | 'to', fallback: number): number => {
      const value = text(name);
      if (value === undefined || value === '') return fallback;
      const parsed = parseTimeBound(value, at);
      if (parsed === undefined) {
        throw invalidRequest(`'${name}' must be an ISO 8601 date or date-time, Unix seconds, or a span back from now such as 7d.`, name);
      }
      return parsed;
    };
    const to = bound('to', at);
    const from = bound('from', to - DEFAULT_SPAN_MS);
    if (from >= to) throw invalidRequest("'from' must be before 'to'.", 'from');
    const groupBy = (text('group_by') || 'day') as UsageGrouping;
    if (!GROUPINGS.includes(groupBy)) throw invalidRequest("'group_by' must be day, model or key.", 'group_by');
    const caller = callerOf(request);
    const asked = text('key') || undefined;
    if (asked !== undefined && !caller.admin && asked !== caller.keyName) {
      throw permissionDenied("Only an admin key may read another key's usage.", 'key');
    }
    // A plain key reads its own rows (by id: a revoked key's successor under the same name reads only its own).
    const scope = caller.admin ? (asked === undefined ? {} : { keyName: asked }) : { keyId: caller.keyId ?? '' };
    const keyName = caller.admin ? asked : (caller.keyName ?? undefined);
    await deps.flush();
    const totals = await deps.usage.totals({ from, to, groupBy, ...scope });
    return {
      object: 'list',
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
      group_by: groupBy,
      key: keyName ?? null,
      data: totals.map((row) => ({
        [groupBy]: row.group,
        requests: row.requests,
        errors: row.errors,
        prompt_tokens: row.promptTokens,
        image_tokens: row.imageTokens,
        cached_tokens: row.cachedTokens,
        completion_tokens: row.completionTokens,
        total_tokens: row.totalTokens,
      })),
    };
  };
  app.get('/v1/usage', handler);
  app.get('/v1/openai/usage', handler);
}
