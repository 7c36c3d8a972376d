/**
 * Steering plans: which SAE features to push or clamp, from when — turned into raw residual
 * vectors for a source (the remote server sees vectors, never feature ids).
 *
 * - push (additive, Neuronpedia's "simple additive" method): h ← h + Σ strength_f · W_dec[f].
 * - clamp: set feature f's activation to `value` by adding (value − current) · W_dec[f]. A
 *   source that runs the SAE next to the model (the local ONNX model) computes `current`
 *   exactly; over the wire the server has no SAE, so the clamp travels as a projection clamp
 *   on u = W_dec[f]/‖W_dec[f]‖ with target value·‖W_dec[f]‖ — exact when the other features'
 *   decoder rows are orthogonal to u, an approximation otherwise (docs/protocol.md).
 */
import type { Sae } from '../runtime/sae.js';
import type { GenerateRequest, SteeringStart, WireSteering } from '../sources/remote.js';

export interface FeaturePush {
  readonly feature: number;
  readonly strength: number;
}

export interface FeatureClamp {
  readonly feature: number;
  readonly value: number;
}

export interface SteeringPlan {
  readonly push?: readonly FeaturePush[];
  readonly clamp?: readonly FeatureClamp[];
  /** Default 'after-prefix' (see prefix.ts). */
  readonly start?: SteeringStart;
}

/** Little-endian f32 bytes as base64 (the wire form of a steering vector). */
export function vectorToBase64(v: Float32Array): string {
  const bytes = new Uint8Array(v.length * 4);
  const view = new DataView(bytes.buffer);
  v.forEach((x, i) => view.setFloat32(i * 4, x, true));
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

export function base64ToVector(b64: string): Float32Array {
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  const view = new DataView(bytes.buffer);
  return Float32Array.from({ length: bytes.length / 4 }, (_, i) => view.getFloat32(i * 4, true));
}

/** Model-space direction of feature rows: decode divides by the SAE's fixed input scale. */
function modelSpace(sae: Sae, row: Float32Array): Float32Array {
  const s = sae.config.inputScale;
  return s === 1 ? row : row.map((x) => x / s);
}

/** The additive vector Σ strength_f · W_dec[f] in model space. */
export async function pushVector(sae: Sae, pushes: readonly FeaturePush[]): Promise<Float32Array> {
  const rows = await sae.decoderRows(pushes.map((p) => p.feature));
  const out = new Float32Array(sae.config.dIn);
  rows.forEach((r, k) => {
    const w = pushes[k]?.strength ?? 0;
    const m = modelSpace(sae, r);
    for (let i = 0; i < out.length; i++) out[i] = (out[i] ?? 0) + w * (m[i] ?? 0);
  });
  return out;
}

/** The plan as the entries of a remote request's `steering` list. */
export async function wireSteering(sae: Sae, plan: SteeringPlan): Promise<WireSteering[]> {
  const start = plan.start ?? 'after-prefix';
  const out: WireSteering[] = [];
  if (plan.push !== undefined && plan.push.length > 0) {
    out.push({ vector: vectorToBase64(await pushVector(sae, plan.push)), strength: 1, start, mode: 'add' });
  }
  const clamps = plan.clamp ?? [];
  const rows = await sae.decoderRows(clamps.map((c) => c.feature));
  clamps.forEach((c, k) => {
    const row = rows[k];
    if (row === undefined) return;
    const m = modelSpace(sae, row);
    let sq = 0;
    for (const x of m) sq += x * x;
    const norm = Math.sqrt(sq);
    out.push({ vector: vectorToBase64(m), strength: 1, start, mode: 'clamp-projection', target: c.value * norm });
  });
  return out;
}

/** Two requests that differ only in steering: run them side by side to compare. */
export async function sideBySide(sae: Sae, request: GenerateRequest, plan: SteeringPlan): Promise<{ steered: GenerateRequest; baseline: GenerateRequest }> {
  const { steering: _ignored, ...base } = request;
  return { steered: { ...base, steering: await wireSteering(sae, plan) }, baseline: base };
}
