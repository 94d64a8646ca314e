/**
 * Validates our responses against OpenAI's official OpenAPI spec (../shared/spec/openai-openapi.yaml).
 * The whole document is registered with ajv, and each check compiles `#/components/schemas/<Name>`.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { parse as parseYaml } from 'yaml';

const SPEC_PATH = fileURLToPath(new URL('../../../shared/spec/openai-openapi.yaml', import.meta.url));

let ajv: Ajv2020 | undefined;
let parsedSpec: { components: { schemas: Record<string, SchemaNode> } } | undefined;

/** The parts of a spec schema that {@link specProperties} follows. */
interface SchemaNode {
  $ref?: string;
  properties?: Record<string, unknown>;
  allOf?: SchemaNode[];
  anyOf?: SchemaNode[];
  oneOf?: SchemaNode[];
}

function spec(): { components: { schemas: Record<string, SchemaNode> } } {
  parsedSpec ??= parseYaml(readFileSync(SPEC_PATH, 'utf8')) as { components: { schemas: Record<string, SchemaNode> } };
  return parsedSpec;
}

/** Every property name the spec's `components.schemas[name]` defines, through `$ref`, `allOf`, `anyOf` and `oneOf`. */
export function specProperties(name: string): string[] {
  const schemas = spec().components.schemas;
  const names = new Set<string>();
  const visit = (node: SchemaNode | undefined): void => {
    if (node === undefined) return;
    if (node.$ref !== undefined) return visit(schemas[node.$ref.split('/').pop() ?? '']);
    for (const property of Object.keys(node.properties ?? {})) names.add(property);
    for (const part of [...(node.allOf ?? []), ...(node.anyOf ?? []), ...(node.oneOf ?? [])]) visit(part);
  };
  if (schemas[name] === undefined) throw new Error(`schema ${name} not found in the OpenAI spec`);
  visit(schemas[name]);
  return [...names];
}

function instance(): Ajv2020 {
  if (ajv) return ajv;
  ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
  const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;
  addFormats(ajv);
  ajv.addFormat('unixtime', { type: 'number', validate: (value: number) => Number.isInteger(value) && value >= 0 });
  ajv.addSchema({ $id: 'openai', components: toJsonSchema(spec().components) });
  return ajv;
}

/** Throws with ajv's errors unless `value` matches the spec's `components.schemas[name]`. */
export function assertMatchesSchema(name: string, value: unknown): void {
  const validate = instance().getSchema(`openai#/components/schemas/${name}`);
  if (!validate) throw new Error(`schema ${name} not found in the OpenAI spec`);
  if (!validate(value)) {
    throw new Error(`response does not match OpenAI schema ${name}: ${JSON.stringify(validate.errors, null, 2)}\n${JSON.stringify(value).slice(0, 2000)}`);
  }
}

/** Each Responses stream event type and the spec's schema for it. */
const RESPONSE_EVENT_SCHEMAS: Readonly<Record<string, string>> = {
  'response.created': 'ResponseCreatedEvent',
  'response.in_progress': 'ResponseInProgressEvent',
  'response.output_item.added': 'ResponseOutputItemAddedEvent',
  'response.content_part.added': 'ResponseContentPartAddedEvent',
  'response.output_text.delta': 'ResponseTextDeltaEvent',
  'response.output_text.done': 'ResponseTextDoneEvent',
  'response.content_part.done': 'ResponseContentPartDoneEvent',
  'response.output_item.done': 'ResponseOutputItemDoneEvent',
  'response.completed': 'ResponseCompletedEvent',
  'response.incomplete': 'ResponseIncompleteEvent',
  'response.failed': 'ResponseFailedEvent',
  'response.function_call_arguments.delta': 'ResponseFunctionCallArgumentsDeltaEvent',
  'response.function_call_arguments.done': 'ResponseFunctionCallArgumentsDoneEvent',
  error: 'ResponseErrorEvent',
};

/**
 * Throws unless `event` is a Responses stream event the spec defines: checked by its own schema first (its
 * errors are readable), then as the `ResponseStreamEvent` union.
 */
export function assertResponseStreamEvent(event: { type: string }): void {
  const schema = RESPONSE_EVENT_SCHEMAS[event.type];
  if (schema === undefined) throw new Error(`unexpected Responses stream event type ${event.type}`);
  assertMatchesSchema(schema, event);
  assertMatchesSchema('ResponseStreamEvent', event);
}

/**
 * The spec is OpenAPI 3.1 but still writes 3.0's `nullable: true` in places; JSON Schema 2020-12 spells
 * that as a `null` type (or an `anyOf` with one, where there is no `type`).
 */
function toJsonSchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(toJsonSchema);
  if (node === null || typeof node !== 'object') return node;
  const { nullable, ...rest } = node as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(rest)) out[key] = toJsonSchema(value);
  if (nullable !== true) return out;
  if (Array.isArray(out['enum'])) out['enum'] = [...(out['enum'] as unknown[]), null];
  if (typeof out['type'] === 'string') return { ...out, type: [out['type'], 'null'] };
  if (Array.isArray(out['type'])) return { ...out, type: [...(out['type'] as unknown[]), 'null'] };
  return { anyOf: [out, { type: 'null' }] };
}
