/**
 * WGSL sources, imported as text, and their composition. A kernel file uses helper functions
 * (`load_w8`, `workgroup_sum4`) whose body depends on the weight dtype and on the optional
 * features; the matching lib/ file is prepended, with the `enable` directives first. Shapes and
 * workgroup sizes come in through `override` constants at pipeline creation.
 */
import type { WeightDtype } from '../sae/dtype.js';
import weightsF32 from '../../shaders/lib/weights_f32.wgsl?raw';
import weightsBf16 from '../../shaders/lib/weights_bf16.wgsl?raw';
import weightsF16 from '../../shaders/lib/weights_f16.wgsl?raw';
import weightsF16Packed from '../../shaders/lib/weights_f16_packed.wgsl?raw';
import reduceShared from '../../shaders/lib/reduce_shared.wgsl?raw';
import reduceSubgroup from '../../shaders/lib/reduce_subgroup.wgsl?raw';
import encodeIoLib from '../../shaders/lib/encode_io.wgsl?raw';
import selectKeysLib from '../../shaders/lib/select_keys.wgsl?raw';
import compactIoLib from '../../shaders/lib/compact_io.wgsl?raw';
import encodeGemv from '../../shaders/encode_gemv.wgsl?raw';
import encodeGemvSubgroup from '../../shaders/encode_gemv_subgroup.wgsl?raw';
import encodeGemm from '../../shaders/encode_gemm.wgsl?raw';
import prepareInput from '../../shaders/prepare_input.wgsl?raw';
import topkSelect from '../../shaders/topk_select.wgsl?raw';
import decodeSparse from '../../shaders/decode_sparse.wgsl?raw';
import reconstructionMetrics from '../../shaders/reconstruction_metrics.wgsl?raw';
import copyBandwidth from '../../shaders/copy_bandwidth.wgsl?raw';
import selectHistogram from '../../shaders/select_histogram.wgsl?raw';
import selectBin from '../../shaders/select_bin.wgsl?raw';
import compactCount from '../../shaders/compact_count.wgsl?raw';
import compactScan from '../../shaders/compact_scan.wgsl?raw';
import compactWrite from '../../shaders/compact_write.wgsl?raw';
import transposeRows from '../../shaders/transpose_rows.wgsl?raw';
import widenActivations from '../../shaders/widen_activations.wgsl?raw';

export const KERNELS = {
  encodeGemv,
  encodeGemvSubgroup,
  encodeGemm,
  prepareInput,
  topkSelect,
  decodeSparse,
  reconstructionMetrics,
  copyBandwidth,
  selectHistogram,
  selectBin,
  compactCount,
  compactScan,
  compactWrite,
  transposeRows,
  widenActivations,
} as const;

export type KernelName = keyof typeof KERNELS;

/** Which optional features a composed module may use. */
export interface ShaderFeatures {
  readonly f16: boolean;
  readonly subgroups: boolean;
}

/** key_of, is_finite, the keep rules and SelectState, shared by the selection kernels and prepare_input. */
export const selectKeys: string = selectKeysLib;

/** Params and inputs shared by compact_count and compact_write. */
export const compactIo: string = compactIoLib;

/** Params, bindings and activation shared by the encode kernels. */
export const encodeIo: string = encodeIoLib;

/** The `load_w8` implementation for a weight dtype (native f16 only with shader-f16). */
export function weightAccess(dtype: WeightDtype, features: ShaderFeatures): string {
  if (dtype === 'f32') return weightsF32;
  if (dtype === 'bf16') return weightsBf16;
  return features.f16 ? weightsF16 : weightsF16Packed;
}

/** The `workgroup_sum4` implementation. */
export function reduction(features: ShaderFeatures): string {
  return features.subgroups ? reduceSubgroup : reduceShared;
}

/**
 * Joins enable directives, helper libs and the kernel into one module. Directives (`enable`,
 * `requires`, `diagnostic`) must precede every declaration, so they are hoisted from all parts.
 */
export function composeShader(kernel: KernelName, libs: readonly string[], enables: { f16?: boolean; subgroups?: boolean } = {}): string {
  const head: string[] = [];
  if (enables.f16 === true) head.push('enable f16;');
  if (enables.subgroups === true) head.push('enable subgroups;');
  const body: string[] = [];
  for (const part of [...libs, KERNELS[kernel]]) {
    for (const line of part.split('\n')) {
      if (/^(enable|requires|diagnostic)\b.*;\s*$/.test(line)) {
        if (!head.includes(line.trim())) head.push(line.trim());
      } else {
        body.push(line);
      }
    }
  }
  return [...head, ...body].join('\n');
}
