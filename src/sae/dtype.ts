/**
 * Weight dtypes and their bit-level conversions. 16-bit weights are kept as raw bits in
 * Uint16Array (no Float16Array in Node 20) and widened in the shader; the CPU reference widens
 * with the same exact rules, so both backends read identical f32 values.
 */

/** Storage dtype of an SAE's weight matrices. Biases are always widened to f32. */
export type WeightDtype = 'f32' | 'f16' | 'bf16';

/** Bytes per element of a weight dtype. */
export function bytesPerElement(dtype: WeightDtype): 2 | 4 {
  return dtype === 'f32' ? 4 : 2;
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** bf16 bits → f32 (exact: bf16 is the upper half of an f32). */
export function bf16ToF32(bits: number): number {
  scratchU32[0] = (bits & 0xffff) << 16;
  return scratchF32[0] ?? 0;
}

/** f32 → bf16 bits, round to nearest even (PyTorch's rule); NaN stays a quiet NaN. */
export function f32ToBf16(value: number): number {
  scratchF32[0] = value;
  const u = scratchU32[0] ?? 0;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x0040) & 0xffff;
  const rounded = u + 0x7fff + ((u >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** IEEE half bits → f32 (exact, subnormals included). */
export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** f32 → IEEE half bits, round to nearest even; overflow goes to ±Inf. */
export function f32ToF16(value: number): number {
  scratchF32[0] = value;
  const u = scratchU32[0] ?? 0;
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let out = mant >>> shift;
    if (rest > half || (rest === half && (out & 1) === 1)) out += 1;
    return sign | out;
  }
  const rest = mant & 0x1fff;
  mant >>>= 13;
  if (rest > 0x1000 || (rest === 0x1000 && (mant & 1) === 1)) {
    mant += 1;
    if (mant === 0x400) {
      mant = 0;
      e += 1;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | mant;
}

/** Widens a whole 16-bit weight array (or copies an f32 one) to f32. */
export function widenToF32(data: Float32Array | Uint16Array, dtype: WeightDtype): Float32Array {
  if (dtype === 'f32') {
    if (!(data instanceof Float32Array)) throw new TypeError('f32 weights must be a Float32Array');
    return data;
  }
  if (!(data instanceof Uint16Array)) throw new TypeError(`${dtype} weights must be a Uint16Array of raw bits`);
  const out = new Float32Array(data.length);
  if (dtype === 'bf16') {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < data.length; i++) u[i] = (data[i] ?? 0) << 16;
  } else {
    const table = f16Table();
    for (let i = 0; i < data.length; i++) out[i] = table[data[i] ?? 0] ?? 0;
  }
  return out;
}

let f16Lut: Float32Array | undefined;
/** All 65,536 half values, built once: widening by lookup is ~20× faster than by arithmetic. */
function f16Table(): Float32Array {
  if (f16Lut === undefined) {
    f16Lut = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Lut[h] = f16ToF32(h);
  }
  return f16Lut;
}
