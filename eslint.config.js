// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['src/**/*.ts'],
    rules: {
      // Every URL from a request is hostile: remote media goes through src/images' one fetch helper.
      'no-restricted-imports': ['error', { paths: [{ name: 'node:http', message: 'Use undici (and for request URLs, the images fetch helper).' }, { name: 'node:https', message: 'Use undici (and for request URLs, the images fetch helper).' }] }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Request URLs reach the network only through src/images/fetch-remote-image.ts (undici, SSRF checks).
    files: ['src/images/**/*.ts', 'src/http/**/*.ts'],
    ignores: ['src/images/fetch-remote-image.ts', 'src/**/*.test.ts'],
    rules: {
      'no-restricted-globals': ['error', { name: 'fetch', message: 'Remote media goes through src/images/fetch-remote-image.ts.' }],
      'no-restricted-imports': ['error', {
        paths: [
          { name: 'node:http', message: 'Use undici (and for request URLs, the images fetch helper).' },
          { name: 'node:https', message: 'Use undici (and for request URLs, the images fetch helper).' },
          { name: 'undici', message: 'Remote media goes through src/images/fetch-remote-image.ts.' },
        ],
      }],
    },
  },
  {
    // Tests run local HTTP servers (image hosts, fake upstreams) on loopback.
    files: ['src/**/*.test.ts'],
    rules: { 'no-restricted-imports': 'off' },
  },
  {
    // Tests poke at raw JSON bodies on purpose.
    files: ['test/**/*.ts', 'bench/**/*.ts', 'src/**/*.test.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
