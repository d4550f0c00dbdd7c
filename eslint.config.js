// ESLint flat config: typescript-eslint's recommended rules without type information (fast; tsc
// does the type checking) and no stylistic rules (Prettier formats). `npm run lint` runs it.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'native/build*/', 'web/editor/dist/', 'models/', 'output/', 'input/', 'temp/', 'user/', 'test-artifacts/', 'bench/results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2023, sourceType: 'module', globals: { ...globals.node } },
    rules: {
      // A leading underscore marks a value kept on purpose (destructured away, a required parameter).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
      // `{}` is the neutral element of `&` in engine/types.ts's mapped input types.
      '@typescript-eslint/no-empty-object-type': ['error', { allowObjectTypes: 'always' }],
      // Literals are written as their sources publish them: Cephes constants with more digits than a
      // double holds, ComfyUI's seed maximum 2^64 - 1. The rounding is intended.
      'no-loss-of-precision': 'off',
      // PNG text chunks and wire formats are matched with NUL and other control bytes on purpose.
      'no-control-regex': 'off',
    },
  },
  {
    // Tests read JSON and browser globals (page.evaluate bodies) without declaring their shapes.
    files: ['test/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // The editor runs in the browser.
    files: ['web/editor/**'],
    languageOptions: { globals: { ...globals.browser } },
  },
);
