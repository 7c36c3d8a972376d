/**
 * A real HTTP server for loader tests (node:http on 127.0.0.1, a random port), serving fixture
 * folders in the two layouts users meet: plain folders (`/files/...`, no listing) and the
 * Hugging Face layout (`/{org}/{repo}/resolve/{revision}/{path}` plus the tree API
 * `/api/models/{org}/{repo}/tree/{revision}`). It honours single Range requests (206 with
 * Content-Range) unless told not to, can trickle bodies slowly (for abort tests), and logs
 * every request with the bytes it sent and whether the client hung up.
 */
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ServedRequest {
  readonly method: string;
  readonly path: string;
  readonly range: string | undefined;
  status: number;
  bytesSent: number;
  /** The client closed the connection before the body was complete. */
  aborted: boolean;
  finished: boolean;
}

export interface Mount {
  /** URL prefix, e.g. '/files/saelens' or 'hub:Goodfire/DeepSeek-R1-SAE-l37'. */
  readonly at: string;
  /** Folder on disk. */
  readonly dir: string;
  /** For hub mounts: put the folder under this path inside the repo (e.g. 'math'). */
  readonly under?: string;
}

export interface ServerOptions {
  /** Answer Range requests with 206 (default true); false sends the whole file with 200. */
  readonly range?: boolean;
  /** Send bodies in pieces of this many bytes with `delayMs` between them. */
  readonly trickle?: { readonly bytes: number; readonly delayMs: number };
  /** Revisions the hub layout answers (default ['main']). */
  readonly revisions?: readonly string[];
  /** Answer pages of any origin, as the Hub does (CORS, and CORP for cross-origin-isolated pages). */
  readonly cors?: boolean;
}

export interface TestServer {
  readonly origin: string;
  readonly requests: ServedRequest[];
  close(): Promise<void>;
}

function listRecursive(dir: string, prefix = ''): Array<{ path: string; size: number }> {
  return readdirSync(dir).flatMap((name) => {
    const p = `${dir}/${name}`;
    const st = statSync(p);
    return st.isDirectory() ? listRecursive(p, `${prefix}${name}/`) : [{ path: `${prefix}${name}`, size: st.size }];
  });
}

function fileAt(dir: string, rel: string): string | undefined {
  if (rel.split('/').some((s) => s === '..' || s === '')) return undefined;
  const p = `${dir}/${rel}`;
  try {
    return statSync(p).isFile() ? p : undefined;
  } catch {
    return undefined;
  }
}

export async function serveFixtures(mounts: readonly Mount[], options: ServerOptions = {}): Promise<TestServer> {
  const requests: ServedRequest[] = [];
  const revisions = options.revisions ?? ['main'];

  const resolve = (path: string): { file: string } | { json: unknown } | undefined => {
    for (const m of mounts) {
      if (m.at.startsWith('hub:')) {
        const repo = m.at.slice(4);
        const under = m.under !== undefined ? `${m.under}/` : '';
        for (const rev of revisions) {
          const tree = `/api/models/${repo}/tree/${encodeURIComponent(rev)}`;
          if (path === tree) return { json: [...(m.under !== undefined ? [{ type: 'directory', path: m.under }] : []), ...listRecursive(m.dir).map((f) => ({ type: 'file', path: under + f.path, size: f.size }))] };
          const res = `/${repo}/resolve/${encodeURIComponent(rev)}/${under}`;
          if (path.startsWith(res)) {
            const f = fileAt(m.dir, path.slice(res.length));
            if (f !== undefined) return { file: f };
          }
        }
      } else if (path.startsWith(`${m.at}/`)) {
        const f = fileAt(m.dir, path.slice(m.at.length + 1));
        if (f !== undefined) return { file: f };
      }
    }
    return undefined;
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const log: ServedRequest = { method: req.method ?? 'GET', path, range: req.headers.range, status: 0, bytesSent: 0, aborted: false, finished: false };
    requests.push(log);
    res.on('close', () => {
      if (!log.finished) log.aborted = true;
    });
    if (options.cors === true) {
      res.setHeader('access-control-allow-origin', '*');
      res.setHeader('access-control-allow-headers', '*');
      res.setHeader('access-control-expose-headers', 'content-length, content-range, etag');
      res.setHeader('cross-origin-resource-policy', 'cross-origin');
      if (req.method === 'OPTIONS') {
        log.status = 204;
        log.finished = true;
        res.writeHead(204).end();
        return;
      }
    }
    const found = resolve(path);
    if (found === undefined) {
      log.status = 404;
      log.finished = true;
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    if ('json' in found) {
      const body = JSON.stringify(found.json);
      log.status = 200;
      log.finished = true;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      return;
    }
    const size = statSync(found.file).size;
    let start = 0;
    let end = size - 1;
    let status = 200;
    const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
    if (m !== null && options.range !== false) {
      if (m[1] === '') {
        start = Math.max(0, size - Number(m[2]));
      } else {
        start = Number(m[1]);
        if (m[2] !== '') end = Math.min(size - 1, Number(m[2]));
      }
      if (start > end || start >= size) {
        log.status = 416;
        log.finished = true;
        res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
        return;
      }
      status = 206;
    }
    log.status = status;
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      'content-length': end - start + 1,
      'accept-ranges': options.range === false ? 'none' : 'bytes',
    };
    if (status === 206) headers['content-range'] = `bytes ${start}-${end}/${size}`;
    res.writeHead(status, headers);
    if (req.method === 'HEAD') {
      log.finished = true;
      res.end();
      return;
    }
    const trickle = options.trickle;
    const stream = createReadStream(found.file, { start, end, ...(trickle !== undefined ? { highWaterMark: trickle.bytes } : {}) });
    stream.on('data', (chunk: string | Buffer) => {
      log.bytesSent += chunk.length;
      res.write(chunk);
      if (trickle !== undefined) {
        stream.pause();
        setTimeout(() => stream.resume(), trickle.delayMs);
      }
    });
    stream.on('end', () => {
      log.finished = true;
      res.end();
    });
    res.on('close', () => stream.destroy());
  };

  const server = createServer(handle);
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}
