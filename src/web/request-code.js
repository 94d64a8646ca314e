// The playground's "Code" dialog: one chat request written as a curl command, a Python script and a
// JavaScript module that send exactly that body (images included) to this server. The key is read from the
// IRIS_API_KEY environment variable rather than pasted in, so copied code carries no secret.

/** Fields the official SDKs do not know: Python's client needs them passed as `extra_body`. */
const EXTENSION_FIELDS = ['top_k', 'min_p', 'repetition_penalty', 'ignore_eos'];

/**
 * A curl command. The body goes through a quoted here-document, so no character of it is interpreted by the
 * shell and a large image does not hit the limit on one argument's length.
 * @param {string} origin e.g. http://127.0.0.1:8080
 * @param {object} body the chat request
 * @param {boolean} withKey whether to send the Authorization header
 */
export function toCurl(origin, body, withKey) {
  const json = JSON.stringify(body, null, 2);
  let marker = 'JSON';
  while (json.includes(marker)) marker += '_';
  const lines = [`curl -sS ${origin}/v1/openai/chat/completions \\`];
  if (body.stream) lines.push('  -N \\');
  if (withKey) lines.push('  -H "Authorization: Bearer $IRIS_API_KEY" \\');
  lines.push("  -H 'Content-Type: application/json' \\", `  --data-binary @- <<'${marker}'`, json, marker);
  return lines.join('\n');
}

/**
 * A Python script using the official `openai` package.
 * @param {string} origin
 * @param {object} body
 * @param {boolean} withKey
 */
export function toPython(origin, body, withKey) {
  // A raw triple-quoted string keeps the JSON's escapes; its only enemy, a quote, is escaped in the JSON.
  const json = JSON.stringify(body, null, 2).replaceAll("'", '\\u0027');
  const key = withKey ? 'os.environ["IRIS_API_KEY"]' : '"none"';
  const extras = EXTENSION_FIELDS.filter((name) => name in body);
  const lines = [
    'import json',
    'import os',
    '',
    'from openai import OpenAI',
    '',
    `client = OpenAI(base_url="${origin}/v1/openai", api_key=${key})`,
    `request = json.loads(r'''${json}''')`,
  ];
  const extraArg = extras.length > 0 ? ', extra_body=extra_body' : '';
  if (extras.length > 0) {
    lines.push(`extra_body = {name: request.pop(name) for name in ${JSON.stringify(extras)}}`);
  }
  if (body.stream) {
    lines.push(
      `for chunk in client.chat.completions.create(**request${extraArg}):`,
      '    if chunk.choices and chunk.choices[0].delta.content:',
      '        print(chunk.choices[0].delta.content, end="", flush=True)',
      '    if chunk.usage:',
      '        print("\\n", chunk.usage)',
    );
  } else {
    lines.push(`completion = client.chat.completions.create(**request${extraArg})`, 'print(completion.choices[0].message.content)', 'print(completion.usage)');
  }
  return lines.join('\n');
}

/**
 * A JavaScript module (Node 20+, or a bundler) using the official `openai` package.
 * @param {string} origin
 * @param {object} body
 * @param {boolean} withKey
 */
export function toJavaScript(origin, body, withKey) {
  const key = withKey ? 'process.env.IRIS_API_KEY' : "'none'";
  const lines = [
    "import OpenAI from 'openai';",
    '',
    `const client = new OpenAI({ baseURL: '${origin}/v1/openai', apiKey: ${key} });`,
    `const request = ${JSON.stringify(body, null, 2)};`,
  ];
  if (body.stream) {
    lines.push(
      'for await (const chunk of await client.chat.completions.create(request)) {',
      "  process.stdout.write(chunk.choices[0]?.delta?.content ?? '');",
      "  if (chunk.usage) console.log('\\n', chunk.usage);",
      '}',
    );
  } else {
    lines.push(
      'const completion = await client.chat.completions.create(request);',
      'console.log(completion.choices[0].message.content);',
      'console.log(completion.usage);',
    );
  }
  return lines.join('\n');
}
