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

/** The folder holding `file` of an installed package (resolved like an import would). */
function packageDistDir(file: string): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve(file));
}

/**
 * Serves runtime files of an installed package under `/{prefix}/` (dev) and copies them into the
 * build, so the page never reaches for a CDN and works offline.
 */
function localRuntimeAssets(name: string, prefix: string, distOf: string, pick: RegExp): Plugin {
  const dir = (): string => packageDistDir(distOf);
  const files = (): string[] => readdirSync(dir()).filter((f) => pick.test(f));
  return {
    name,
    configureServer(server) {
      server.middlewares.use(`/${prefix}/`, (req, res, next) => {
        const file = (req.url ?? '').replace(/^\//, '').split('?')[0] ?? '';
        if (!files().includes(file)) return next();
        res.setHeader('Content-Type', file.endsWith('.wasm') ? 'application/wasm' : 'text/javascript');
        res.end(readFileSync(join(dir(), file)));
      });
    },
    generateBundle() {
      for (const file of files()) this.emitFile({ type: 'asset', fileName: `${prefix}/${file}`, source: readFileSync(join(dir(), file)) });
    },
  };
}

/**
 * onnxruntime-web's wasm runtime at `/ort/` (the version transformers.js pins: one ORT in the
 * page); a page using LocalModelSource passes `wasmPaths: './ort/'`. The webgpu bundle loads the
 * asyncify build; the plain one serves the wasm EP. The jsep/jspi variants (unused) stay out.
 */
export function ortAssets(): Plugin {
  return localRuntimeAssets('loupe-ort-assets', 'ort', 'onnxruntime-web/ort-wasm-simd-threaded.wasm', /^ort-wasm-simd-threaded(\.asyncify)?\.(wasm|mjs)$/);
}

/**
 * DuckDB-WASM's engine and worker at `/duckdb/` for the feature catalog's example queries. Only
 * the exception-handling build: every browser with WebGPU also has wasm exceptions, so the
 * larger MVP build (39 MB) would never be picked.
 */
export function duckdbAssets(): Plugin {
  return localRuntimeAssets('loupe-duckdb-assets', 'duckdb', '@duckdb/duckdb-wasm/dist/duckdb-eh.wasm', /^duckdb-(eh\.wasm|browser-eh\.worker\.js)$/);
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
    // The feature-map worker is emitted next to the library and found relative to it.
    base: './',
    worker: { format: 'es' },
    build: {
      outDir: 'dist',
      emptyOutDir: true,
      sourcemap: true,
      target: 'es2022',
      // Readable output: the application that bundles Loupe minifies it anyway.
      minify: false,
      lib: {
        // Two entries: the API, and the custom elements (importing it defines them: a side effect).
        entry: {
          'sae-loupe': fileURLToPath(new URL('./src/index.ts', import.meta.url)),
          components: fileURLToPath(new URL('./src/components/index.ts', import.meta.url)),
        },
        formats: ['es'],
        fileName: (_format, name) => `${name}.js`,
      },
      rolldownOptions: {
        // lit and DuckDB-WASM are runtime dependencies (DuckDB loaded on the first example query);
        // transformers.js and onnxruntime-web are optional peers, loaded only by LocalModelSource:
        // the app that uses Loupe brings its own copies.
        external: [/^lit($|\/)/, /^@lit\//, /^@lit-labs\//, /^@huggingface\/transformers/, /^onnxruntime-web/, /^@duckdb\//],
      },
    },
  };
}

function demoConfig(): UserConfig {
  return {
    root: fileURLToPath(new URL('./demo', import.meta.url)),
    publicDir: 'public',
    plugins: [ortAssets(), duckdbAssets()],
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
      // Two pages: the app (index.html) and the kernel page (kernels.html).
      rolldownOptions: {
        input: {
          index: fileURLToPath(new URL('./demo/index.html', import.meta.url)),
          kernels: fileURLToPath(new URL('./demo/kernels.html', import.meta.url)),
        },
      },
    },
    worker: { format: 'es' },
  };
}

export default defineConfig(({ mode }) => (mode === 'lib' ? libraryConfig() : demoConfig()));
