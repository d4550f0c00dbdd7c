// Builds the editor into web/editor/dist (served by web/server at /). The bundle also pulls the
// UI->API converter from ../../engine, which is browser-safe.
import { defineConfig } from 'vite';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root,
  base: './',
  logLevel: 'warn',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    chunkSizeWarningLimit: 2000,
    sourcemap: true,
    rollupOptions: {
      onwarn(warning, warn) {
        // litegraph's number prompt evaluates arithmetic typed by the user; known and harmless.
        if (warning.code === 'EVAL' && /litegraph/.test(warning.id ?? '')) return;
        warn(warning);
      },
    },
  },
  server: {
    fs: { allow: [fileURLToPath(new URL('../..', import.meta.url))] },
    // `vite dev` against a running `sana-graph serve`: everything but the app goes there.
    proxy: {
      ...Object.fromEntries(
        ['/object_info', '/prompt', '/queue', '/history', '/view', '/interrupt', '/upload', '/workflows'].map((p) => [p, 'http://127.0.0.1:8188']),
      ),
      '/ws': { target: 'ws://127.0.0.1:8188', ws: true },
    },
  },
});
