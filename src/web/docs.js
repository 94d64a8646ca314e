// The API reference page: renders this server's /openapi.json (operations by tag, their request and response
// schemas, Iris's extensions marked). A small renderer written for this spec rather than a vendored UI
// bundle, so the page stays a few kilobytes and loads nothing from other hosts.

const EXTENSION = 'x-iris-extension';
const root = /** @type {HTMLElement} */ (document.getElementById('docs'));

function element(tag, properties = {}, ...children) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children.filter((child) => child !== undefined && child !== null));
  return node;
}

/** Text with `code` spans, as the document's descriptions write them. */
function withCode(text) {
  return (text ?? '').split('`').map((piece, index) => (index % 2 === 1 ? element('code', { textContent: piece }) : piece));
}

/** What tells one variant of a union from the others: `role: "user"`, `type: "image_url"`. */
function variantLabel(schema) {
  for (const key of ['role', 'type']) {
    const property = schema.properties?.[key];
    if (property?.const !== undefined) return `${key}: ${JSON.stringify(property.const)}`;
    if (property?.enum) return `${key}: ${property.enum.map((value) => JSON.stringify(value)).join(' | ')}`;
  }
  return 'fields';
}

function extensionBadge(node) {
  return node && node[EXTENSION] ? element('span', { className: 'ext', textContent: 'Iris extension' }) : undefined;
}

function resolve(spec, schema) {
  if (schema && typeof schema.$ref === 'string') {
    const name = schema.$ref.split('/').pop();
    return { name, schema: spec.components.schemas[name] ?? {} };
  }
  return { name: undefined, schema: schema ?? {} };
}

/** A short type label: `string`, `number | null`, `array of object`, `"low" | "high"`. */
function typeLabel(spec, raw) {
  const { name, schema } = resolve(spec, raw);
  if (name) return name;
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.enum) return schema.enum.map((value) => JSON.stringify(value)).join(' | ');
  const union = schema.anyOf ?? schema.oneOf;
  if (union) return union.map((option) => typeLabel(spec, option)).join(' | ');
  const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  return types.map((type) => (type === 'array' && schema.items ? `array of ${typeLabel(spec, schema.items)}` : type)).join(' | ') || 'any';
}

function constraints(schema) {
  const parts = [];
  for (const [key, label] of [['minimum', '≥'], ['exclusiveMinimum', '>'], ['maximum', '≤'], ['minItems', 'items ≥'], ['maxItems', 'items ≤'], ['minLength', 'length ≥']]) {
    if (schema[key] !== undefined) parts.push(`${label} ${schema[key]}`);
  }
  return parts.join(', ');
}

/** Nested object schemas inside a property (directly, in arrays, in unions), to expand below it. */
function nestedObjects(spec, raw, depth) {
  const { schema } = resolve(spec, raw);
  if (depth > 4) return [];
  if (schema.properties) return [schema];
  const options = [...(schema.anyOf ?? []), ...(schema.oneOf ?? []), ...(schema.items ? [schema.items] : [])];
  return options.flatMap((option) => nestedObjects(spec, option, depth + 1));
}

function schemaTable(spec, raw, depth = 0) {
  const { schema } = resolve(spec, raw);
  if (!schema.properties) return element('p', { className: 'schema', textContent: typeLabel(spec, raw) });
  const required = new Set(schema.required ?? []);
  const rows = Object.entries(schema.properties).map(([name, property]) => {
    const nested = nestedObjects(spec, property, 0);
    const description = element('td', { className: 'desc' }, ...withCode(property.description), ' ', constraints(property));
    for (const object of nested) {
      description.append(element('details', {}, element('summary', { textContent: variantLabel(object) }), schemaTable(spec, object, depth + 1)));
    }
    return element(
      'tr',
      {},
      element('td', {}, name, required.has(name) ? ' *' : '', ' ', extensionBadge(property)),
      element('td', { className: 'type', textContent: typeLabel(spec, property) }),
      description,
    );
  });
  return element('div', { className: 'schema' }, element('table', {}, ...rows));
}

function operationView(spec, path, method, operation) {
  const body = element('div');
  if (operation.description) body.append(element('p', {}, ...withCode(operation.description)));
  if (operation.security && operation.security.length === 0) body.append(element('p', { className: 'hint', textContent: 'No API key needed.' }));
  for (const parameter of operation.parameters ?? []) {
    body.append(element('p', {}, element('code', { textContent: parameter.in === 'path' ? `{${parameter.name}}` : parameter.name }), ` (${parameter.in}) ${parameter.description ?? ''}`));
  }
  const requestSchema = operation.requestBody?.content?.['application/json']?.schema;
  if (requestSchema) body.append(element('h4', { textContent: `Request body: ${resolve(spec, requestSchema).name ?? ''}` }), schemaTable(spec, requestSchema));
  body.append(element('h4', { textContent: 'Responses' }));
  for (const [status, response] of Object.entries(operation.responses ?? {})) {
    const content = Object.entries(response.content ?? {});
    const line = element('p', {}, element('b', { textContent: status }), ' ', ...withCode(response.description), ' ');
    for (const [type, media] of content) line.append(element('code', { textContent: `${type}: ${typeLabel(spec, media.schema)}` }), ' ');
    body.append(line);
  }
  return element(
    'details',
    { className: 'operation', id: operation.operationId ?? '' },
    element('summary', {}, element('span', { className: `method ${method}`, textContent: method }), element('span', { className: 'path', textContent: path }), operation.summary ?? '', extensionBadge(operation)),
    body,
  );
}

function render(spec) {
  root.replaceChildren(
    element('h1', { textContent: `${spec.info.title} ${spec.info.version}` }),
    element('p', {}, ...withCode(spec.info.description)),
    element('p', { className: 'hint' }, `OpenAPI ${spec.openapi}. `, element('a', { href: '/openapi.json', textContent: 'Download openapi.json' })),
  );
  const byTag = new Map();
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      const tag = operation.tags?.[0] ?? 'other';
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operationView(spec, path, method, operation));
    }
  }
  for (const tag of spec.tags ?? [...byTag.keys()].map((name) => ({ name }))) {
    const views = byTag.get(tag.name);
    if (!views) continue;
    root.append(element('h2', { textContent: tag.description ?? tag.name }), ...views);
  }
  const schemas = element('section');
  for (const [name, schema] of Object.entries(spec.components.schemas)) {
    schemas.append(element('details', { className: 'operation', id: `schema-${name}` }, element('summary', {}, element('span', { className: 'path', textContent: name }), extensionBadge(schema)), element('div', {}, schemaTable(spec, schema))));
  }
  root.append(element('h2', { textContent: 'Schemas' }), schemas);
  window.document.body.dataset['ready'] = 'true';
}

fetch('/openapi.json')
  .then((response) => {
    if (!response.ok) throw new Error(`GET /openapi.json: ${response.status}`);
    return response.json();
  })
  .then(render)
  .catch((error) => root.replaceChildren(element('p', { className: 'banner', textContent: String(error) })));
