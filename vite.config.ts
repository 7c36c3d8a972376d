/**
 * Vite, two uses:
 *
 *   npm run demo                                  → dev server for demo/ (http://127.0.0.1:5173)
 *   vite build --config vite.config.ts            → static demo in demo/dist/
 *   vite build --config vite.config.ts --mode lib → the library, dist/sae-loupe.js (ESM)
 *
 * The demo is offline: no CDN, fonts or remote models; it imports ../src directly and reads its
 * model from demo/public/models/. Pages are cross-origin isolated (COOP + COEP) so that
 * SharedArrayBuffer and wasm threads (onnxruntime-web) are available later. WGSL files are
 * imported with `?raw`, which Vite handles without a plugin.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin, type UserConfig } from 'vite';

const repoRoot = fileURLToPath(new URL('.', import.meta.url));

/** onnxruntime-web's wasm runtime files (the version transformers.js pins: one ORT in the page). */
function ortDistDir(): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve('onnxruntime-web/ort-wasm-simd-threaded.wasm'));
}

/**
 * Serves onnxruntime-web's .wasm/.mjs runtime at `/ort/` (dev) and copies them into the build, so
 * a page using LocalModelSource passes `wasmPaths: './ort/'` and never reaches for a CDN.
 */
export function ortAssets(): Plugin {
  // The webgpu bundle loads the asyncify build; the plain one serves the wasm EP. The jsep/jspi
  // variants (unused by this bundle) stay out of the build.
  const files = (): string[] => readdirSync(ortDistDir()).filter((f) => /^ort-wasm-simd-threaded(\.asyncify)?\.(wasm|mjs)$/.test(f));
  return {
    name: 'loupe-ort-assets',
    configureServer(server) {
      server.middlewares.use('/ort/', (req, res, next) => {
        const name = (req.url ?? '').replace(/^\//, '').split('?')[0] ?? '';
        if (!files().includes(name)) return next();
        res.setHeader('Content-Type', name.endsWith('.wasm') ? 'application/wasm' : 'text/javascript');
        res.end(readFileSync(join(ortDistDir(), name)));
      });
    },
    generateBundle() {
      for (const name of files()) this.emitFile({ type: 'asset', fileName: `ort/${name}`, source: readFileSync(join(ortDistDir(), name)) });
    },
  };
}

/** Cross-origin isolation: needed for SharedArrayBuffer / multi-threaded wasm. */
export const isolationHeaders: Record<string, string> = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

function libraryConfig(): UserConfig {
  return {
    root: repoRoot,
    publicDir: false,
    build: {
      outDir: 'dist',
      emptyOutDir: true,
      sourcemap: true,
      target: 'es2022',
      // Readable output: the application that bundles Loupe minifies it anyway.
      minify: false,
      lib: {
        entry: fileURLToPath(new URL('./src/index.ts', import.meta.url)),
        formats: ['es'],
        fileName: () => 'sae-loupe.js',
      },
      rolldownOptions: {
        // lit is the runtime dependency; transformers.js and onnxruntime-web are optional peers,
        // loaded only by LocalModelSource: the app that uses Loupe brings its own copies.
        external: [/^lit($|\/)/, /^@lit\//, /^@lit-labs\//, /^@huggingface\/transformers/, /^onnxruntime-web/],
      },
    },
  };
}

function demoConfig(): UserConfig {
  return {
    root: fileURLToPath(new URL('./demo', import.meta.url)),
    publicDir: 'public',
    plugins: [ortAssets()],
    // Relative asset URLs: the built demo works from any folder (or a file server sub-path).
    base: './',
    server: {
      host: '127.0.0.1',
      port: 5173,
      strictPort: false,
      headers: isolationHeaders,
      fs: {
        // demo/ imports ../src and ../shaders; tests fetch ../tests/fixtures.
        allow: [repoRoot],
        strict: true,
      },
    },
    preview: {
      host: '127.0.0.1',
      headers: isolationHeaders,
    },
    build: {
      outDir: 'dist',
      emptyOutDir: true,
      target: 'es2022',
      sourcemap: true,
    },
  };
}

export default defineConfig(({ mode }) => (mode === 'lib' ? libraryConfig() : demoConfig()));
