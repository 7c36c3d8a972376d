/**
 * Weight dtype conversion for `loadSae({ weightDtype })`: f32 → f16 / bf16 halves the GPU
 * memory of an SAE (R1's f32 SAE: 822 MB → 411 MB). Done chunk by chunk while streaming, with
 * the same round-to-nearest-even rules as PyTorch's `.to(dtype)`.
 */
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, type WeightDtype } from '../dtype.js';

/** Converts `src` (values of dtype `from`) to `to`; returns `src` itself when they match. */
export function convertWeights(src: Float32Array | Uint16Array, from: WeightDtype, to: WeightDtype): Float32Array | Uint16Array {
  if (from === to) return src;
  const n = src.length;
  if (to === 'f32') {
    const out = new Float32Array(n);
    const widen = from === 'bf16' ? bf16ToF32 : f16ToF32;
    for (let i = 0; i < n; i++) out[i] = widen(src[i] ?? 0);
    return out;
  }
  const out = new Uint16Array(n);
  if (from === 'f32') {
    if (to === 'bf16') {
      // Inline bf16 rounding on the bit pattern: this loop runs over 205 M weights for R1.
      const bits = new Uint32Array(src.buffer, src.byteOffset, n);
      for (let i = 0; i < n; i++) {
        const u = bits[i] ?? 0;
        out[i] = (u & 0x7fffffff) > 0x7f800000 ? ((u >>> 16) | 0x0040) & 0xffff : ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
      }
    } else {
      for (let i = 0; i < n; i++) out[i] = f32ToF16(src[i] ?? 0);
    }
    return out;
  }
  // 16-bit to 16-bit: through f32, exact on the way in, rounded once on the way out.
  const widen = from === 'bf16' ? bf16ToF32 : f16ToF32;
  const narrow = to === 'bf16' ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < n; i++) out[i] = narrow(widen(src[i] ?? 0));
  return out;
}
