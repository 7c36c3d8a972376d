/**
 * An encoder for the Loupe stream protocol written from docs/protocol.md alone (independent of
 * src/sources/frames.ts), for feeding the client parser in tests, and a small fake server.
 */
import { f32ToBf16, f32ToF16 } from '../../src/sae/dtype.js';

export type Dtype = 'f32' | 'f16' | 'bf16';

export function preamble(major = 1, minor = 0): Uint8Array {
  return Uint8Array.from([0x4c, 0x4f, 0x55, 0x50, 0x45, major, minor, 0]);
}

export function frame(type: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + payload.byteLength);
  new DataView(out.buffer).setUint32(0, payload.byteLength + 1, true);
  out[4] = type;
  out.set(payload, 5);
  return out;
}

export function jsonFrame(type: number, value: unknown): Uint8Array {
  return frame(type, new TextEncoder().encode(JSON.stringify(value)));
}

export function headerFrame(fields: { d_in: number; dtype: Dtype; prompt_tokens?: number; resume_from?: number; version?: number; layer?: number }): Uint8Array {
  return jsonFrame(1, { protocol: 'loupe-stream', version: 1, model: 'test', layer: 3, site: 'resid_post', prompt_tokens: 2, resume_from: 0, ...fields });
}

export function encodeActivation(values: ArrayLike<number>, dtype: Dtype): Uint8Array {
  const n = values.length;
  const out = new Uint8Array(n * (dtype === 'f32' ? 4 : 2));
  const v = new DataView(out.buffer);
  for (let i = 0; i < n; i++) {
    const x = values[i] ?? 0;
    if (dtype === 'f32') v.setFloat32(i * 4, x, true);
    else v.setUint16(i * 2, dtype === 'bf16' ? f32ToBf16(x) : f32ToF16(x), true);
  }
  return out;
}

export function tokenFrame(t: { position: number; tokenId: number; phase: 0 | 1 | 2; flags?: number; text: string; values: ArrayLike<number>; dtype: Dtype; dIn?: number }): Uint8Array {
  const text = new TextEncoder().encode(t.text);
  const pad = (4 - (text.byteLength % 4)) % 4;
  const act = encodeActivation(t.values, t.dtype);
  const p = new Uint8Array(16 + text.byteLength + pad + act.byteLength);
  const v = new DataView(p.buffer);
  v.setUint32(0, t.position, true);
  v.setUint32(4, t.tokenId, true);
  v.setUint8(8, t.phase);
  v.setUint8(9, t.flags ?? 0);
  v.setUint16(10, text.byteLength, true);
  v.setUint32(12, t.dIn ?? t.values.length, true);
  p.set(text, 16);
  p.set(act, 16 + text.byteLength + pad);
  return frame(2, p);
}

export function endFrame(reason = 'eos', prompt = 2, generated = 0): Uint8Array {
  return jsonFrame(5, { reason, prompt_tokens: prompt, generated_tokens: generated, elapsed_ms: 1 });
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
