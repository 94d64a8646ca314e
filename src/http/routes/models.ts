/**
 * GET /v1/openai/models and GET /v1/models (the OpenAI list shape), and GET .../models/{id}.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ModelEntry, ModelRegistry } from '../../models/model-registry.js';

/** A model as the models endpoints show it: OpenAI's fields plus Iris's extensions. */
export interface ModelObject {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  /** Extension: what the model accepts. */
  input_modalities: ('text' | 'image')[];
}

function toModelObject(entry: ModelEntry): ModelObject {
  return {
    id: entry.id,
    object: 'model',
    created: entry.created,
    owned_by: entry.ownedBy,
    input_modalities: entry.engine.capabilities.vision ? ['text', 'image'] : ['text'],
  };
}

/** Registers the models routes. */
export function registerModels(app: FastifyInstance, deps: { registry: ModelRegistry }): void {
  const list = async () => ({ object: 'list' as const, data: deps.registry.list().map(toModelObject) });
  const one = async (request: FastifyRequest<{ Params: { '*': string } }>) =>
    toModelObject(deps.registry.get(request.params['*']));
  app.get('/v1/openai/models', list);
  app.get('/v1/models', list);
  // Model ids contain slashes (`HuggingFaceTB/SmolVLM-256M-Instruct`), so take the rest of the path.
  app.get('/v1/openai/models/*', one);
  app.get('/v1/models/*', one);
}
