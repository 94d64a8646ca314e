/** JSON Schemas shared by the structured-output tests. */

/** Only enums, booleans and bounded integers: a random model's answer always terminates inside them. */
export const COLOR_SCHEMA = {
  type: 'object',
  properties: {
    color: { type: 'string', enum: ['red', 'green', 'blue'] },
    count: { type: 'integer', minimum: 0, maximum: 9 },
    bright: { type: 'boolean' },
  },
  required: ['color', 'count', 'bright'],
  additionalProperties: false,
} as const;
