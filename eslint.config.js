// Lint config: typescript-eslint's recommended rules plus the project's few house rules.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  // AssemblyScript sources (plugins/*/assembly) use decorators typescript-eslint cannot parse.
  { ignores: ['dist/**', 'node_modules/**', 'schemas/json/**', '**/*.wasm', 'plugins/**/build/**', 'plugins/**/assembly/**', '.tap/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
      eqeqeq: ['error', 'always'],
    },
  },
  {
    files: ['bin/**/*.js', 'scripts/**/*.mjs', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
);
