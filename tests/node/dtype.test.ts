/** Bit-exact dtype conversions against IEEE 754 values known independently of this code. */
import { describe, expect, test } from 'vitest';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, widenToF32 } from '../../src/sae/dtype.js';

describe('f16', () => {
  test.each([
    [0x3c00, 1],
    [0xc000, -2],
    [0x7bff, 65504],
    [0x0001, 2 ** -24],
    [0x0400, 2 ** -14],
    [0x3555, 0.333251953125],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ])('0x%s ↔ %s', (bits, value) => {
    expect(f16ToF32(bits)).toBe(value);
    expect(f32ToF16(value)).toBe(bits);
  });
  test('NaN, overflow, underflow and round-half-to-even', () => {
    expect(Number.isNaN(f16ToF32(0x7e00))).toBe(true);
    expect(f32ToF16(NaN) & 0x7c00).toBe(0x7c00);
    expect(f32ToF16(65520)).toBe(0x7c00); // rounds up past the largest finite half
    expect(f32ToF16(2 ** -26)).toBe(0); // below half the smallest subnormal
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // tie → even (mantissa 0)
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (mantissa 2)
  });
});

describe('bf16', () => {
  test.each([
    [0x3f80, 1],
    [0xc040, -3],
    [0x7f7f, 3.3895313892515355e38],
    [0x0080, 2 ** -126],
  ])('0x%s ↔ %s', (bits, value) => {
    expect(bf16ToF32(bits)).toBe(value);
    expect(f32ToBf16(value)).toBe(bits);
  });
  test('round-half-to-even as torch does', () => {
    expect(f32ToBf16(1 + 2 ** -8)).toBe(0x3f80); // tie → even
    expect(f32ToBf16(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(f32ToBf16(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
  });
  test('widenToF32 matches the scalar conversions and rejects wrong array types', () => {
    const bits = Uint16Array.from([0x3f80, 0xc040, 0x0001, 0x8000]);
    expect(Array.from(widenToF32(bits, 'bf16'))).toEqual(Array.from(bits, bf16ToF32));
    expect(Array.from(widenToF32(bits, 'f16'))).toEqual(Array.from(bits, f16ToF32));
    expect(() => widenToF32(new Float32Array(2), 'bf16')).toThrow(TypeError);
  });
});
