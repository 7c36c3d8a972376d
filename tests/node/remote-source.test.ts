/**
 * RemoteSource against a scripted fake Loupe server (node:http, frames from the independent
 * encoder in tests/helpers/loupe-frames.ts): drops mid-stream and mid-frame are resumed with
 * exactly the positions and generated ids received — no token lost or duplicated —; refusals
 * and malformed streams give named errors; abort closes the connection; a consumer that stops
 * reading does not make the client buffer the stream.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { MalformedFrameError, RemoteSourceError, StreamDroppedError } from '../../src/errors.js';
import { activationToF32 } from '../../src/sources/frames.js';
import { RemoteSource, type SourceEvent } from '../../src/sources/remote.js';
import { concat, endFrame, headerFrame, preamble, tokenFrame } from '../helpers/loupe-frames.js';

const D_IN = 8;
const PROMPT = 3;
const TOTAL = 12; // prompt + generated positions of the scripted generation
const vec = (pos: number): number[] => Array.from({ length: D_IN }, (_, i) => pos * 10 + i);
const tok = (pos: number): Uint8Array => tokenFrame({ position: pos, tokenId: 1000 + pos, phase: pos < PROMPT ? 0 : 1, text: `t${pos}`, values: vec(pos), dtype: 'f32' });

interface Req {
  body: { resume?: { position: number; generated: number[] }; max_tokens: number };
  auth: string | undefined;
}

type Script = (req: Req, res: ServerResponse, n: number) => void | Promise<void>;

let close: (() => Promise<void>) | undefined;
afterEach(async () => {
  await close?.();
  close = undefined;
});

async function fakeServer(script: Script): Promise<{ url: string; requests: Req[]; closed: () => boolean[] }> {
  const requests: Req[] = [];
  const closed: boolean[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let data = '';
    req.on('data', (c: Buffer) => (data += c.toString()));
    req.on('end', () => {
      const r: Req = { body: JSON.parse(data) as Req['body'], auth: req.headers.authorization };
      requests.push(r);
      const i = closed.length;
      closed.push(false);
      res.on('close', () => (closed[i] = !res.writableFinished));
      void script(r, res, requests.length);
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  close = () =>
    new Promise<void>((ok) => {
      server.closeAllConnections();
      server.close(() => ok());
    });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, requests, closed: () => closed };
}

/** Sends the generation from `from` (as the protocol's resume says); `cutAfter` drops the connection after that many tokens, optionally mid-frame. */
function stream(res: ServerResponse, from: number, opts: { cutAfter?: number; midFrame?: boolean; startAt?: number } = {}): void {
  res.writeHead(200, { 'content-type': 'application/vnd.loupe.stream; version=1' });
  const parts = [preamble(), headerFrame({ d_in: D_IN, dtype: 'f32', prompt_tokens: PROMPT, resume_from: from })];
  for (let p = opts.startAt ?? from; p < TOTAL; p++) {
    if (opts.cutAfter !== undefined && parts.length - 2 === opts.cutAfter) {
      if (opts.midFrame === true) parts.push(tok(p).subarray(0, 17));
      // flush what was "sent", then drop the TCP connection without ending the response
      res.write(concat(parts), () => res.socket?.destroy());
      return;
    }
    parts.push(tok(p));
  }
  parts.push(endFrame('eos', PROMPT, TOTAL - PROMPT));
  res.end(concat(parts));
}

async function collect(source: RemoteSource): Promise<SourceEvent[]> {
  const out: SourceEvent[] = [];
  for await (const ev of source.events()) out.push(ev);
  return out;
}

const request = { messages: [{ role: 'user' as const, content: 'hi' }], max_tokens: 9, hook: { layer: 3 } };

describe('RemoteSource', () => {
  test('a full stream: header, tokens with their activations, end; bearer token sent', async () => {
    const srv = await fakeServer((_r, res) => stream(res, 0));
    const source = new RemoteSource({ url: srv.url, request, token: 's3cret' });
    const events = await collect(source);
    expect(events.map((e) => e.kind)).toEqual(['header', ...Array<string>(TOTAL).fill('token'), 'end']);
    for (const e of events) if (e.kind === 'token') expect(Array.from(activationToF32(e.frame.activation, 'f32', D_IN))).toEqual(vec(e.frame.position));
    expect(srv.requests[0]?.auth).toBe('Bearer s3cret');
    expect(source.tokens.map((t) => t.position)).toEqual([...Array(TOTAL).keys()]);
  });

  test.for([{ midFrame: false }, { midFrame: true }])('a drop (mid-frame: $midFrame) is resumed from the next position with the generated ids; nothing lost or repeated', async ({ midFrame }) => {
    const srv = await fakeServer((r, res, n) => {
      const from = r.body.resume?.position ?? 0;
      if (n === 1) stream(res, from, { cutAfter: 6, midFrame });
      else if (n === 2) stream(res, from, { startAt: from - 2, cutAfter: 4 }); // a server that resends two old positions: they must be dropped
      else stream(res, from);
    });
    const source = new RemoteSource({ url: srv.url, request, reconnect: { delayMs: 5 } });
    const events = await collect(source);
    const positions = events.flatMap((e) => (e.kind === 'token' ? [e.frame.position] : []));
    expect(positions).toEqual([...Array(TOTAL).keys()]);
    expect(events.filter((e) => e.kind === 'reconnecting')).toHaveLength(2);
    expect(srv.requests[1]?.body.resume).toEqual({ position: 6, generated: [1003, 1004, 1005] });
    expect(srv.requests[2]?.body.resume?.position).toBe(8);
  });

  test('when reconnects keep failing: StreamDroppedError, every received token kept', async () => {
    const srv = await fakeServer((r, res, n) => {
      if (n === 1) stream(res, 0, { cutAfter: 5 });
      else res.destroy();
    });
    const source = new RemoteSource({ url: srv.url, request, reconnect: { retries: 2, delayMs: 5 } });
    await expect(collect(source)).rejects.toThrow(StreamDroppedError);
    expect(source.tokens.map((t) => t.position)).toEqual([0, 1, 2, 3, 4]);
    // the first request made progress; then the 2 reconnects allowed, both failing
    expect(srv.requests).toHaveLength(3);
  });

  test('refusals: 401 is not retried and says to pass the token; a non-retryable ERROR frame is fatal', async () => {
    const srv = await fakeServer((_r, res) => {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'unauthorized', message: 'bad token' }));
    });
    const source = new RemoteSource({ url: srv.url, request });
    await expect(collect(source)).rejects.toThrow(/401: bad token\. Pass the server token/);
    await close?.();
    const srv2 = await fakeServer((r, res, n) => {
      if (n === 1) {
        res.writeHead(200);
        res.end(concat([preamble(), headerFrame({ d_in: D_IN, dtype: 'f32', prompt_tokens: PROMPT }), tok(0), new Uint8Array(new Uint32Array([3]).buffer), Uint8Array.from([3, 0x7b, 0x7d])]));
      } else stream(res, r.body.resume?.position ?? 0);
    });
    // an ERROR frame with retryable false is fatal
    await expect(collect(new RemoteSource({ url: srv2.url, request }))).rejects.toThrow(RemoteSourceError);
  });

  test('a malformed stream is not retried', async () => {
    const srv = await fakeServer((_r, res) => {
      res.writeHead(200);
      res.end(concat([preamble(), headerFrame({ d_in: D_IN, dtype: 'f32' }), tokenFrame({ position: 0, tokenId: 1, phase: 0, text: '', values: vec(0).slice(1), dtype: 'f32', dIn: D_IN - 1 })]));
    });
    await expect(collect(new RemoteSource({ url: srv.url, request }))).rejects.toThrow(MalformedFrameError);
    expect(srv.requests).toHaveLength(1);
  });

  test('abort closes the connection and rejects with AbortError', async () => {
    const srv = await fakeServer((_r, res) => {
      res.writeHead(200);
      res.write(concat([preamble(), headerFrame({ d_in: D_IN, dtype: 'f32', prompt_tokens: PROMPT }), tok(0)]));
      // then nothing: the client aborts while waiting
    });
    const controller = new AbortController();
    const source = new RemoteSource({ url: srv.url, request, signal: controller.signal });
    const got: number[] = [];
    await expect(
      (async () => {
        for await (const ev of source.events()) {
          if (ev.kind === 'token') {
            got.push(ev.frame.position);
            setTimeout(() => controller.abort(), 20);
          }
        }
      })(),
    ).rejects.toMatchObject({ name: 'AbortError' });
    await new Promise((r) => setTimeout(r, 50));
    expect(got).toEqual([0]);
    expect(srv.closed()[0]).toBe(true);
  });

  test('a consumer that stops reading holds back the network (bounded buffering)', async () => {
    let written = 0;
    const big = 4096; // floats per token: 16 KB frames
    const frameOf = (p: number): Uint8Array => tokenFrame({ position: p, tokenId: p, phase: 0, text: '', values: new Float32Array(big), dtype: 'f32' });
    const srv = await fakeServer(async (_r, res) => {
      res.writeHead(200);
      res.write(concat([preamble(), headerFrame({ d_in: big, dtype: 'f32', prompt_tokens: 100000 })]));
      for (let p = 0; p < 20000; p++) {
        const f = frameOf(p);
        written += f.byteLength;
        if (!res.write(f)) await new Promise((ok) => res.once('drain', ok));
        if (res.destroyed) return;
      }
      res.end(endFrame());
    });
    const source = new RemoteSource({ url: srv.url, request });
    const it = source.events();
    await it.next(); // header
    await it.next(); // first token, then stop reading
    await new Promise((r) => setTimeout(r, 500));
    // 20,000 frames would be 320 MB; socket buffers and one chunk hold a few MB at most
    expect(written).toBeLessThan(16 * 1024 * 1024);
    await it.return(undefined);
  });

  test('a silent server counts as dropped after idleTimeoutMs', async () => {
    const srv = await fakeServer((r, res, n) => {
      if (n === 1) {
        res.writeHead(200);
        res.write(concat([preamble(), headerFrame({ d_in: D_IN, dtype: 'f32', prompt_tokens: PROMPT }), tok(0), tok(1)]));
      } else stream(res, r.body.resume?.position ?? 0);
    });
    const events = await collect(new RemoteSource({ url: srv.url, request, idleTimeoutMs: 200, reconnect: { delayMs: 5 } }));
    expect(events.flatMap((e) => (e.kind === 'token' ? [e.frame.position] : []))).toEqual([...Array(TOTAL).keys()]);
    const rec = events.find((e) => e.kind === 'reconnecting');
    expect(rec?.kind === 'reconnecting' ? rec.error.message : '').toMatch(/No data .* 0\.2 s/);
  });
});
