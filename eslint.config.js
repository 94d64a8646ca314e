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
    // Tests poke at raw JSON bodies on purpose.
    files: ['test/**/*.ts', 'bench/**/*.ts', 'src/**/*.test.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
