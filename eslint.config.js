import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/", "native/build/", "dist/", "runs/", "data/", "test-artifacts/", "docs/api/"] },
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-explicit-any": "off",
      "no-constant-condition": ["error", { checkLoops: false }],
    },
  },
);
