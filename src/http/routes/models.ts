/**
 * GET /v1/openai/models and GET /v1/models (the OpenAI list shape), and GET .../models/{id}. Besides
 * OpenAI's fields each model carries Iris extensions: what it accepts, whether it is loaded now, its
 * context size and estimated memory.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { modelNotFound } from '../../errors.js';
import type { ModelRegistry, ModelState, ModelStatus } from '../../models/model-registry.js';
import { callerOf, mayUseModel } from '../auth.js';

/** A model as the models endpoints show it. */
export interface ModelObject {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  /** Extension: what the model accepts. */
  input_modalities: ('text' | 'image')[];
  /** Extension: whether the model is loaded and serving now. */
  loaded: boolean;
  /** Extension: its lifecycle state. */
  state: ModelState;
  /** Extension: context size in tokens. */
  context_length: number;
  /** Extension: estimated resident memory when loaded, once known. */
  memory_bytes: number | null;
}

function toModelObject(status: ModelStatus): ModelObject {
  const { definition } = status;
  return {
    id: definition.id,
    object: 'model',
    created: definition.created,
    owned_by: definition.ownedBy,
    input_modalities: definition.vision ? ['text', 'image'] : ['text'],
    loaded: status.state === 'loaded',
    state: status.state,
    context_length: definition.context,
    memory_bytes: status.memoryBytes ?? null,
  };
}

/** Registers the models routes. */
export function registerModels(app: FastifyInstance, deps: { registry: ModelRegistry }): void {
  // A key scoped to some models sees only those, as if the others did not exist.
  const list = async (request: FastifyRequest) => {
    const caller = callerOf(request);
    const visible = deps.registry.list().filter((status) => mayUseModel(caller, status.definition.id));
    return { object: 'list' as const, data: visible.map(toModelObject) };
  };
  const one = async (request: FastifyRequest<{ Params: { '*': string } }>) => {
    const { id } = deps.registry.definition(request.params['*']); // 404 model_not_found for unknown ids
    if (!mayUseModel(callerOf(request), id)) throw modelNotFound(request.params['*']);
    const status = deps.registry.list().find((candidate) => candidate.definition.id === id);
    if (!status) throw modelNotFound(id);
    return toModelObject(status);
  };
  app.get('/v1/openai/models', list);
  app.get('/v1/models', list);
  // Model ids contain slashes (`HuggingFaceTB/SmolVLM-256M-Instruct`), so take the rest of the path.
  app.get('/v1/openai/models/*', one);
  app.get('/v1/models/*', one);
}
