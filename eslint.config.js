// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Every URL from a request is hostile: remote media goes through src/images' one fetch helper.
const NODE_HTTP = [
  { name: 'node:http', message: 'Use undici (and for request URLs, the images fetch helper).' },
  { name: 'node:https', message: 'Use undici (and for request URLs, the images fetch helper).' },
];
const UNDICI = { name: 'undici', message: 'Remote media goes through src/images/fetch-remote-image.ts.' };

/**
 * Imports flow one way (STYLE.md):
 *   http -> dialects -> (images, models, scheduler, store) -> engines -> (protocol, gguf, metrics, errors, config)
 * Each layer lists the folders it must not import. cli/, synth/ and main.ts sit on top; tests may import anything.
 */
const TOP = ['cli', 'synth', 'main'];
const LAYERS = [
  { folders: ['http'], forbidden: TOP },
  { folders: ['dialects'], forbidden: ['http', ...TOP] },
  { folders: ['models', 'scheduler', 'store'], forbidden: ['dialects', 'http', ...TOP] },
  // images must not reach into models: what it needs from a model (the projector's metadata) comes from gguf/.
  { folders: ['images'], forbidden: ['models', 'dialects', 'http', ...TOP] },
  { folders: ['engines'], forbidden: ['images', 'models', 'scheduler', 'store', 'dialects', 'http', ...TOP] },
  {
    folders: ['protocol', 'gguf', 'metrics', 'config', 'errors', 'logger'],
    forbidden: ['engines', 'images', 'models', 'scheduler', 'store', 'dialects', 'http', ...TOP],
  },
];

/** no-restricted-imports per layer: the node:http ban everywhere, undici outside the fetch helper, the direction. */
function importRules() {
  const filesOf = (folder) => [`src/${folder}/**/*.ts`, `src/${folder}.ts`];
  const rule = (layer, paths) => ({
    'no-restricted-imports': ['error', {
      paths,
      patterns: [{
        regex: `^(\\.\\./)+(${layer.forbidden.join('|')})(/|\\.js$)`,
        message: `${layer.folders.join('/')} may not import ${layer.forbidden.join(', ')}: imports flow http -> dialects -> (images, models, scheduler, store) -> engines -> (protocol, gguf, metrics, errors, config).`,
      }],
    }],
  });
  const configs = LAYERS.map((layer) => ({
    files: layer.folders.flatMap(filesOf),
    ignores: ['src/**/*.test.ts'],
    rules: rule(layer, layer.folders.some((folder) => folder === 'images' || folder === 'http') ? [...NODE_HTTP, UNDICI] : NODE_HTTP),
  }));
  const images = LAYERS.find((layer) => layer.folders.includes('images'));
  configs.push({ files: ['src/images/fetch-remote-image.ts'], rules: rule(images, NODE_HTTP) });
  return [
    { files: ['src/**/*.ts'], ignores: ['src/**/*.test.ts'], rules: { 'no-restricted-imports': ['error', { paths: NODE_HTTP }] } },
    ...configs,
  ];
}

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'test-output/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['src/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  ...importRules(),
  {
    // Request URLs reach the network only through src/images/fetch-remote-image.ts (undici, SSRF checks).
    files: ['src/images/**/*.ts', 'src/http/**/*.ts'],
    ignores: ['src/images/fetch-remote-image.ts', 'src/**/*.test.ts'],
    rules: {
      'no-restricted-globals': ['error', { name: 'fetch', message: 'Remote media goes through src/images/fetch-remote-image.ts.' }],
    },
  },
  {
    // The playground's plain browser modules (src/web), served as they are.
    files: ['src/web/**/*.js'],
    languageOptions: {
      globals: Object.fromEntries(
        ['window', 'document', 'navigator', 'localStorage', 'fetch', 'performance', 'FileReader', 'AbortController',
          'TextDecoderStream', 'URL', 'Option', 'HTMLElement', 'HTMLDialogElement', 'setTimeout', 'clearTimeout', 'process']
          .map((name) => [name, 'readonly']),
      ),
    },
  },
  {
    // Tests poke at raw JSON bodies on purpose.
    files: ['test/**/*.ts', 'bench/**/*.ts', 'src/**/*.test.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
