/**
 * Where an SAE's files come from, behind one small interface: files in memory, a folder URL,
 * a Hugging Face repo (`{endpoint}/{repo}/resolve/{revision}/{path}`), or a local folder in
 * Node (`file:` URLs). Weights are always opened as byte streams, never read whole.
 */
import { SaeSourceError } from '../errors.js';
import type { ByteStream } from './byte-reader.js';
import { cachedFetch } from './cache.js';

export interface OpenedFile {
  /** Size in bytes when the source knows it (Content-Length, file size). */
  readonly size: number | undefined;
  readonly body: ByteStream;
}

export interface SaeFolder {
  /** Where the files are, for messages. */
  readonly where: string;
  /** Every file path (relative to the folder) when the source can list them; undefined when it cannot (plain HTTP). */
  list(): Promise<string[] | undefined>;
  /** A small file's bytes (configs, index JSON), undefined when it does not exist. */
  readSmall(path: string): Promise<Uint8Array | undefined>;
  exists(path: string): Promise<boolean>;
  open(path: string): Promise<OpenedFile>;
}

/** Files by path relative to the SAE's root (e.g. 'layers.3/cfg.json'). */
export type SaeFiles = Record<string, ArrayBuffer | Uint8Array | Blob>;

/** In-memory bytes are handed out in 4 MiB pieces, like a network body, so every path streams alike. */
function chunked(bytes: Uint8Array, size = 4 * 1024 * 1024): AsyncIterable<Uint8Array> {
  return {
    async *[Symbol.asyncIterator]() {
      for (let at = 0; at < bytes.byteLength; at += size) yield bytes.subarray(at, Math.min(at + size, bytes.byteLength));
    },
  };
}

export function memoryFolder(files: SaeFiles): SaeFolder {
  const get = (path: string): ArrayBuffer | Uint8Array | Blob | undefined => files[path];
  return {
    where: 'the files given',
    list: () => Promise.resolve(Object.keys(files)),
    async readSmall(path) {
      const f = get(path);
      if (f === undefined) return undefined;
      if (f instanceof Uint8Array) return f;
      if (f instanceof ArrayBuffer) return new Uint8Array(f);
      return new Uint8Array(await f.arrayBuffer());
    },
    exists: (path) => Promise.resolve(get(path) !== undefined),
    open(path) {
      const f = get(path);
      if (f === undefined) return Promise.reject(new SaeSourceError(`No file "${path}" among the files given (${Object.keys(files).join(', ')}).`));
      if (f instanceof Blob) return Promise.resolve({ size: f.size, body: f.stream() });
      const u8 = f instanceof Uint8Array ? f : new Uint8Array(f);
      return Promise.resolve({ size: u8.byteLength, body: chunked(u8) });
    },
  };
}

export interface HttpOptions {
  readonly fetch?: typeof fetch | undefined;
  readonly signal?: AbortSignal | undefined;
  /** Keep downloaded files in the browser's Cache Storage (default true where it exists). */
  readonly cache?: boolean | undefined;
}

function httpError(url: string, res: Response): SaeSourceError {
  return new SaeSourceError(
    `GET ${url} answered ${res.status} ${res.statusText}. ${res.status === 401 || res.status === 403 ? 'The repository may be gated or private: pass a fetch that adds an Authorization header.' : 'Check the URL, revision and subfolder.'}`,
  );
}

function sizeOf(res: Response): number | undefined {
  // A compressed transfer's Content-Length is not the file size.
  if (res.headers.get('content-encoding') !== null) return undefined;
  const n = Number(res.headers.get('content-length') ?? NaN);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** A folder served over HTTP(S). `base` ends with '/'. */
export function httpFolder(base: URL, options: HttpOptions, list?: () => Promise<string[] | undefined>): SaeFolder {
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const url = (path: string): string => new URL(path.split('/').map(encodeURIComponent).join('/'), base).href;
  const get = async (path: string, init: RequestInit = {}): Promise<Response> => {
    try {
      return await doFetch(url(path), { ...init, ...(options.signal !== undefined ? { signal: options.signal } : {}) });
    } catch (cause) {
      if (options.signal?.aborted === true) throw cause;
      throw new SaeSourceError(`Could not reach ${url(path)} (${String(cause)}). Check the network, or that the server allows cross-origin requests.`, { cause });
    }
  };
  return {
    where: base.href,
    list: list ?? (() => Promise.resolve(undefined)),
    async readSmall(path) {
      const res = await get(path);
      if (res.status === 404) return undefined;
      if (!res.ok) throw httpError(url(path), res);
      return new Uint8Array(await res.arrayBuffer());
    },
    async exists(path) {
      const res = await get(path, { method: 'HEAD' });
      if (res.status === 404) return false;
      if (res.ok) return true;
      if (res.status === 405 || res.status === 501) {
        // No HEAD: ask for one byte instead.
        const one = await get(path, { headers: { Range: 'bytes=0-0' } });
        await one.body?.cancel();
        return one.ok;
      }
      throw httpError(url(path), res);
    },
    async open(path) {
      const res = await cachedFetch(url(path), () => get(path), options.cache ?? true);
      if (!res.ok) throw httpError(url(path), res);
      if (res.body === null) throw new SaeSourceError(`GET ${url(path)} returned no body.`);
      return { size: sizeOf(res), body: res.body };
    },
  };
}

export interface HubOptions extends HttpOptions {
  /** Default 'https://huggingface.co'. */
  readonly endpoint?: string | undefined;
  /** Branch, tag or commit; default 'main'. */
  readonly revision?: string | undefined;
}

/**
 * A Hugging Face repo: files at `{endpoint}/{repo}/resolve/{revision}/{path}`, listed by the
 * Hub's tree API (`/api/models/{repo}/tree/{revision}?recursive=true`) when it answers — a
 * mirror without the API still works by probing the known file names.
 */
export function hubFolder(repo: string, options: HubOptions): SaeFolder {
  const endpoint = (options.endpoint ?? 'https://huggingface.co').replace(/\/+$/, '');
  const revision = encodeURIComponent(options.revision ?? 'main');
  const base = new URL(`${endpoint}/${repo}/resolve/${revision}/`);
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const list = async (): Promise<string[] | undefined> => {
    let res: Response;
    try {
      res = await doFetch(`${endpoint}/api/models/${repo}/tree/${revision}?recursive=true`, options.signal !== undefined ? { signal: options.signal } : {});
    } catch (cause) {
      if (options.signal?.aborted === true) throw cause;
      return undefined;
    }
    if (!res.ok) return undefined;
    const items: unknown = await res.json().catch(() => undefined);
    if (!Array.isArray(items)) return undefined;
    return items.flatMap((x: unknown) => {
      const it = x as { type?: unknown; path?: unknown };
      return it.type === 'file' && typeof it.path === 'string' ? [it.path] : [];
    });
  };
  return { ...httpFolder(base, options, list), where: `${repo}@${options.revision ?? 'main'} on ${endpoint}` };
}

interface NodeFs {
  readFile(path: string): Promise<Uint8Array>;
  readdir(path: string, options: { recursive: true }): Promise<string[]>;
  stat(path: string): Promise<{ size: number; isFile(): boolean }>;
  open(path: string, flags: string): Promise<{ read(buf: Uint8Array, offset: number, length: number, position: number | null): Promise<{ bytesRead: number }>; close(): Promise<void> }>;
}

/** A local folder in Node (file: URLs); node:fs is imported only when one is used. */
export async function nodeFolder(dir: string): Promise<SaeFolder> {
  const modName = 'node:fs/promises';
  const fs = (await import(/* @vite-ignore */ modName)) as NodeFs;
  const root = dir.endsWith('/') ? dir : `${dir}/`;
  const missing = (e: unknown): boolean => (e as { code?: unknown }).code === 'ENOENT';
  return {
    where: root,
    async list() {
      try {
        return (await fs.readdir(root, { recursive: true })).map((p) => p.split('\\').join('/'));
      } catch (cause) {
        throw new SaeSourceError(`Cannot list the folder ${root} (${String(cause)}).`, { cause });
      }
    },
    async readSmall(path) {
      try {
        return await fs.readFile(root + path);
      } catch (e) {
        if (missing(e)) return undefined;
        throw new SaeSourceError(`Cannot read ${root + path} (${String(e)}).`, { cause: e });
      }
    },
    async exists(path) {
      try {
        return (await fs.stat(root + path)).isFile();
      } catch {
        return false;
      }
    },
    async open(path) {
      let size: number;
      let handle: Awaited<ReturnType<NodeFs['open']>>;
      try {
        size = (await fs.stat(root + path)).size;
        handle = await fs.open(root + path, 'r');
      } catch (cause) {
        throw new SaeSourceError(`Cannot open ${root + path} (${String(cause)}).`, { cause });
      }
      const body: AsyncIterable<Uint8Array> = {
        async *[Symbol.asyncIterator]() {
          try {
            for (;;) {
              // A fresh buffer per chunk: the parser may still hold a view of the previous one.
              const buf = new Uint8Array(4 * 1024 * 1024);
              const { bytesRead } = await handle.read(buf, 0, buf.byteLength, null);
              if (bytesRead === 0) return;
              yield buf.subarray(0, bytesRead);
            }
          } finally {
            await handle.close();
          }
        },
      };
      return { size, body };
    },
  };
}
