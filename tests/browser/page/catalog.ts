/**
 * In the browser: loadFeatureCatalog on Tiny-R1's files served by the Vite dev server, with
 * DuckDB-WASM's worker build loaded from the same origin and the example database read by HTTP
 * range requests (see ../catalog.test.ts, which watches the requests and checks the results).
 */
import { loadFeatureCatalog } from '../../../src/features/catalog.js';
import type { FeatureExample } from '../../../src/features/types.js';

const BASE = '/demo/public/models/tiny-r1/examples/';
const DIST = '/node_modules/@duckdb/duckdb-wasm/dist/';
const BUNDLE = { mainModule: `${DIST}duckdb-eh.wasm`, mainWorker: `${DIST}duckdb-browser-eh.worker.js` };

export interface CatalogPageResult {
  readonly examples: Record<string, FeatureExample[]>;
  readonly label540: string | undefined;
  readonly searchIds: number[];
  /** Error messages (name: message) of the refusals the page provokes. */
  readonly errors: { readonly missingBundle: string; readonly notDuckDb: string; readonly badBundle: string };
}

export interface CatalogPageApi {
  run(features: number[], limit: number, window: number): Promise<CatalogPageResult>;
}

declare global {
  interface Window {
    __catalog?: CatalogPageApi;
  }
}

async function failure(work: () => Promise<unknown>): Promise<string> {
  try {
    await work();
    return 'no error';
  } catch (e) {
    return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  }
}

async function run(features: number[], limit: number, window: number): Promise<CatalogPageResult> {
  const catalog = await loadFeatureCatalog({ size: 1024, labels: `${BASE}autointerp.csv`, examples: `${BASE}examples.duckdb`, duckdb: BUNDLE });
  try {
    const examples: Record<string, FeatureExample[]> = {};
    for (const f of features) examples[String(f)] = await catalog.examples(f, { limit, window });
    const errors = {
      missingBundle: await failure(() => loadFeatureCatalog({ examples: `${BASE}examples.duckdb` })),
      notDuckDb: await failure(async () => {
        const c = await loadFeatureCatalog({ examples: `${BASE}examples.sqlite`, duckdb: BUNDLE, size: 1024 });
        try {
          await c.examples(1);
        } finally {
          await c.close?.();
        }
      }),
      badBundle: await failure(async () => {
        const c = await loadFeatureCatalog({ examples: `${BASE}examples.duckdb`, duckdb: { mainModule: `${DIST}missing.wasm`, mainWorker: BUNDLE.mainWorker }, size: 1024 });
        await c.examples(1);
      }),
    };
    return { examples, label540: catalog.label(540)?.label, searchIds: catalog.search('#540', 3).map((l) => l.featureId), errors };
  } finally {
    await catalog.close?.();
  }
}

window.__catalog = { run };
document.getElementById('status')?.replaceChildren('ready');
