// Lint is part of `npm test`. Type-aware rules catch floating promises, the classic bug of
// event-driven network code.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'scripts/**', 'packages/*/scripts/**', 'eslint.config.js', 'packages/postern/bin/**'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': ['error', { selector: 'ExportAllDeclaration', message: 'Re-export by name: the public surface is reviewed.' }],
    },
  },
  {
    // The wire format and routing core run in browsers too.
    files: ['packages/protocol/src/**', 'packages/core/src/**', 'packages/client/src/index.browser.ts', 'packages/transport-ws/src/index.ts', 'packages/transport-ws/src/client.ts', 'packages/transport-ws/src/duplex.ts', 'packages/transport-http/src/{index,client,auto,constants,wire,requester,fetch-requester,fetch-dialer}.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['node:*', 'ws'], message: 'No Node-only imports here: this code runs in browsers.' }] }],
    },
  },
  {
    files: ['**/test/**', 'packages/testing/src/**'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-floating-promises': 'off',
      '@typescript-eslint/require-await': 'off',
    },
  },
);
