/**
 * End-to-end harness: the demo as a user gets it. `startDemoCommand` runs the README's command
 * (`npm run demo`) as a child process; `buildAndPreview` builds the static demo with
 * `vite build` and serves the folder with `vite preview`, as a static host would. Pages are
 * driven in Debian's headless Chromium (tests/browser/harness.ts), every request outside the
 * page's origin recorded and refused.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page, Request } from 'playwright-core';
import { build, preview, type PreviewServer } from 'vite';
import { expect } from 'vitest';
import type { AppToken } from '../../demo/app-state.js';
import { freePort } from '../helpers/python-server.js';
import { repoRoot, withTimeout } from '../browser/harness.js';

/** Screenshots of each state (kept by CI as test artifacts). */
export const ARTIFACTS = process.env['LOUPE_E2E_ARTIFACTS'] ?? join(repoRoot, 'test-results', 'e2e');

export function artifactPath(name: string): string {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}

export interface DemoProcess {
  readonly url: string;
  readonly output: string[];
  stop(): Promise<void>;
}

/** `npm run demo -- --port N --strictPort`, resolved once Vite prints its local URL. */
export async function startDemoCommand(): Promise<DemoProcess> {
  const port = await freePort();
  const child: ChildProcess = spawn('npm', ['run', 'demo', '--', '--port', String(port), '--strictPort'], {
    cwd: repoRoot,
    env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const output: string[] = [];
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.pid === undefined) return;
    const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
    process.kill(-child.pid, 'SIGTERM');
    await withTimeout(exited, 15_000, 'npm run demo shutdown').catch(() => {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    });
  };
  const url = await withTimeout(
    new Promise<string>((ok, fail) => {
      const onData = (b: Buffer): void => {
        const text = b.toString('utf8');
        output.push(text);
        const m = /Local:\s+(http:\/\/127\.0\.0\.1:\d+\/)/.exec(output.join(''));
        if (m?.[1] !== undefined) ok(m[1]);
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.once('exit', (code) => fail(new Error(`npm run demo exited with ${String(code)} before serving:\n${output.join('')}`)));
    }),
    60_000,
    'npm run demo start',
  ).catch(async (e: unknown) => {
    await stop();
    throw e;
  });
  return { url, output, stop };
}

export interface StaticDemo {
  readonly url: string;
  readonly outDir: string;
  close(): Promise<void>;
}

/** `vite build` of the demo into `outDir`, then `vite preview` of that folder. */
export async function buildAndPreview(outDir: string): Promise<StaticDemo> {
  const configFile = join(repoRoot, 'vite.config.ts');
  await build({ configFile, logLevel: 'warn', build: { outDir, emptyOutDir: true, sourcemap: false } });
  const port = await freePort();
  const server: PreviewServer = await preview({ configFile, logLevel: 'warn', build: { outDir }, preview: { host: '127.0.0.1', port, strictPort: true } });
  const url = server.resolvedUrls?.local[0];
  if (url === undefined) {
    await server.close();
    throw new Error('vite preview reported no local URL.');
  }
  return { url, outDir, close: () => server.close() };
}

/** Requests the page made, and those refused because they left its origin. */
export interface RequestLog {
  readonly all: string[];
  readonly foreign: string[];
}

/**
 * Every request is checked: same origin (or a data:/blob: URL the page made itself, or an origin
 * in `alsoAllowed`, e.g. a remote endpoint under test) continues, anything else is recorded and
 * aborted — a local-mode page must never need it.
 */
export async function guardOrigin(page: Page, origin: string, alsoAllowed: readonly string[] = []): Promise<RequestLog> {
  const log: RequestLog = { all: [], foreign: [] };
  const allowed = (u: string): boolean => u.startsWith('data:') || u.startsWith('blob:') || new URL(u).origin === origin || alsoAllowed.includes(new URL(u).origin);
  await page.context().route('**/*', async (route) => {
    const u = route.request().url();
    log.all.push(u);
    if (allowed(u)) await route.continue();
    else {
      log.foreign.push(u);
      await route.abort('blockedbyclient');
    }
  });
  // Workers' and service workers' requests are seen here too (route covers the context).
  page.on('request', (r: Request) => {
    const u = r.url();
    if (!allowed(u) && !log.foreign.includes(u)) log.foreign.push(u);
  });
  return log;
}

/** Tiny-R1's PyTorch golden run (tools/tiny-r1/golden.py): prompt, greedy ids, SAE codes per position. */
export interface TinyR1Golden {
  readonly prompt: string;
  readonly prompt_ids: number[];
  readonly ids: number[];
  readonly codes: Array<{ indices: number[]; values: number[] }>;
}

/**
 * The page's codes vs PyTorch's, position by position: a shared feature's value within `rel`
 * (relative, floor 1); a feature PyTorch did not keep only where its value ties PyTorch's k-th
 * value within 1 % (summation order decides such near-ties).
 */
export function expectCodesLikeGolden(readouts: readonly AppToken[], golden: TinyR1Golden, rel: number): void {
  golden.codes.forEach((want, p) => {
    const got = readouts[p];
    if (got === undefined) throw new Error(`position ${p} is missing`);
    const cut = Math.min(...want.values);
    got.indices.forEach((f, j) => {
      const v = got.values[j] ?? NaN;
      const r = want.indices.indexOf(f);
      if (r < 0) expect(Math.abs(v - cut), `feature ${f} at position ${p}`).toBeLessThan(1e-2 * Math.max(1, cut));
      else expect(Math.abs(v - (want.values[r] ?? NaN)), `feature ${f} at position ${p}`).toBeLessThan(rel * Math.max(1, Math.abs(v)));
    });
  });
}
