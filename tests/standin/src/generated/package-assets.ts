// Placeholder: `bun run build:binary` regenerates this file (scripts/gen-assets.ts).
export const PACKAGE_ASSETS: Record<string, string> = {};
