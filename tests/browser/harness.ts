/**
 * Browser tests, Node side: a Vite dev server on 127.0.0.1 (random free port) and Debian's
 * headless Chromium driven by playwright-core, WebGPU on SwiftShader
 * (../shared/reference/webgpu-testing.md, route 2). Never downloads a browser: the binary is
 * /usr/bin/chromium (override with LOUPE_CHROMIUM). Every wait is time-boxed.
 */
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type ConsoleMessage, type Page } from 'playwright-core';
import { createServer, type InlineConfig, type Plugin, type ViteDevServer } from 'vite';
import { isolationHeaders } from '../../vite.config.js';
import type { GpuProbe } from './page/protocol.js';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const CHROMIUM = process.env['LOUPE_CHROMIUM'] ?? '/usr/bin/chromium';
export const PAGE_TIMEOUT_MS = 120_000;

/** Launch flags known to work on a GPU-less Linux box (no Vulkan/ANGLE flags: they hang the GPU process). */
export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--enable-unsafe-webgpu',
  '--enable-webgpu-developer-features',
];

export const IN_CI = process.env['CI'] === 'true';

/** Rejects after `ms` with a message naming what timed out (page.evaluate has no timeout of its own). */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s.`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface ViteHandle {
  readonly server: ViteDevServer;
  readonly url: string;
}

/**
 * Starts Vite on 127.0.0.1 at a free port. `configFile` (the repo's vite.config.ts) serves the demo
 * exactly as `npm run demo` does; without it the root is the repository (test pages, fixtures).
 */
export interface StartViteOptions {
  /** The repo's vite.config.ts: serve the demo exactly as `npm run demo` does. */
  readonly configFile?: string;
  /** CommonJS packages a test page imports (React) that must be pre-bundled to ESM. */
  readonly optimizeDeps?: readonly string[];
  /** Lit's and other packages' production builds (benchmarks measure what users run). */
  readonly production?: boolean;
  /** Extra plugins, e.g. a request log. */
  readonly plugins?: readonly Plugin[];
  readonly logLevel?: InlineConfig['logLevel'];
}

export async function startVite(options: StartViteOptions = {}): Promise<ViteHandle> {
  const server: InlineConfig['server'] = { host: '127.0.0.1', port: 0, strictPort: false, hmr: false };
  const config: InlineConfig =
    options.configFile !== undefined
      ? { configFile: options.configFile, logLevel: 'warn', server }
      : {
          configFile: false,
          root: repoRoot,
          publicDir: false,
          logLevel: options.logLevel ?? 'warn',
          plugins: [...(options.plugins ?? [])],
          ...(options.production === true ? { mode: 'production', resolve: { conditions: ['module', 'browser', 'production'] } } : {}),
          // CommonJS packages a test page imports (React) must be pre-bundled to ESM; nothing else is.
          optimizeDeps: { noDiscovery: true, include: [...(options.optimizeDeps ?? [])] },
          server: { ...server, headers: isolationHeaders, fs: { allow: [repoRoot], strict: true } },
        };
  const vite = await createServer(config);
  await withTimeout(vite.listen(), 30_000, 'Vite dev server start');
  const url = vite.resolvedUrls?.local[0];
  if (url === undefined) {
    await vite.close();
    throw new Error('Vite started but reported no local URL.');
  }
  return { server: vite, url };
}

export interface BrowserHandle {
  readonly browser: Browser;
  readonly page: Page;
  /** Console messages and page errors seen so far (for failure messages). */
  readonly log: string[];
}

export async function launchChromium(): Promise<BrowserHandle> {
  process.env['XDG_RUNTIME_DIR'] ??= '/tmp';
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 60_000,
  });
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(PAGE_TIMEOUT_MS);
  page.setDefaultNavigationTimeout(PAGE_TIMEOUT_MS);
  const log: string[] = [];
  page.on('console', (m: ConsoleMessage) => log.push(`[console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e: Error) => log.push(`[pageerror] ${e.message}`));
  page.on('crash', () => log.push('[crash] the page crashed'));
  return { browser, page, log };
}

/** What the page sees of WebGPU: evaluated in the page, needs no test code loaded. */
export async function probeWebGpu(page: Page): Promise<GpuProbe> {
  return withTimeout(
    page.evaluate(async (): Promise<GpuProbe> => {
      const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
      if (gpu === undefined) return { ok: false, reason: `navigator.gpu is missing (secure context: ${String(window.isSecureContext)})` };
      const adapter = await gpu.requestAdapter();
      if (adapter === null) return { ok: false, reason: 'navigator.gpu.requestAdapter() returned null' };
      const info = adapter.info;
      return {
        ok: true,
        vendor: info.vendor,
        architecture: info.architecture,
        device: info.device,
        description: info.description,
        isFallbackAdapter: (info as Partial<GPUAdapterInfo>).isFallbackAdapter ?? null,
        features: [...adapter.features].sort(),
      };
    }),
    PAGE_TIMEOUT_MS,
    'WebGPU adapter probe',
  );
}

/** One line for logs: "SwiftShader Device (Subzero) [google / swiftshader], fallback, features: …". */
export function describeProbe(p: GpuProbe): string {
  if (!p.ok) return `no WebGPU: ${p.reason}`;
  const who = [p.vendor, p.architecture, p.device].filter((s) => s !== '').join(' / ');
  return `${p.description || '(no description)'} [${who}]${p.isFallbackAdapter === true ? ', fallback adapter' : ''}; features: ${p.features.join(', ') || 'none'}`;
}

/** SwiftShader (the only adapter Chromium offers on a GPU-less machine), or any fallback adapter. */
export function isSwiftShaderLike(p: GpuProbe): boolean {
  if (!p.ok) return false;
  return p.isFallbackAdapter === true || /swiftshader|subzero/i.test(`${p.vendor} ${p.architecture} ${p.device} ${p.description}`);
}

export const NO_GPU_HINT =
  'Chromium offered no WebGPU adapter. Install Debian\'s `chromium` (its SwiftShader gives WebGPU without a GPU) and run with the flags in tests/browser/harness.ts.';

/** In CI a missing adapter fails; elsewhere returns the reason to skip with. */
export function requireGpu(p: GpuProbe): string | undefined {
  if (p.ok) return undefined;
  const message = `${NO_GPU_HINT} (${p.reason})`;
  if (IN_CI) throw new Error(`CI requires WebGPU in Chromium. ${message}`);
  return message;
}

/** Closes whatever was opened, ignoring errors from parts that never started. */
export async function shutdown(browser: Browser | undefined, vite: ViteHandle | undefined): Promise<void> {
  await Promise.allSettled([
    browser !== undefined ? withTimeout(browser.close(), 30_000, 'browser.close') : Promise.resolve(),
    vite !== undefined ? withTimeout(vite.server.close(), 30_000, 'vite.close') : Promise.resolve(),
  ]);
}
