/**
 * Checks against Iris's own OpenAPI document (GET /openapi.json): that it is a valid OpenAPI 3.1 document,
 * and a validator for each of its component schemas (JSON Schema 2020-12, compiled strictly by ajv, so a
 * schema ajv cannot understand fails here rather than passing everything).
 */
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { EXTENSION_MARKER } from '../../src/http/openapi-document.js';

/** Throws with the validator's errors unless `document` is a valid OpenAPI 3.1 document. */
export async function assertValidOpenApi31(document: unknown): Promise<void> {
  const validator = new Validator();
  const result = await validator.validate(structuredClone(document) as Record<string, unknown>);
  if (!result.valid) throw new Error(`not a valid OpenAPI document: ${JSON.stringify(result.errors, null, 2)}`);
  if (validator.version !== '3.1') throw new Error(`expected OpenAPI 3.1, got ${validator.version}`);
}

/** Compiles the document's `components.schemas[name]` for validating values. */
export function componentValidators(document: { components: { schemas: Record<string, unknown> } }): (name: string) => ValidateFunction {
  const ajv = new Ajv2020({ strict: true, allErrors: true, strictRequired: false, allowUnionTypes: true });
  ajv.addKeyword(EXTENSION_MARKER);
  ajv.addKeyword('components'); // the document's own schemas hang under it
  ajv.addSchema({ $id: 'iris', components: document.components });
  return (name) => {
    const validate = ajv.getSchema(`iris#/components/schemas/${name}`);
    if (!validate) throw new Error(`no schema ${name} in the document`);
    return validate;
  };
}
