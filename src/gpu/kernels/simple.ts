/**
 * The one-workgroup-per-token kernels (input processing, top-k select, metrics) and sparse
 * decode: each a pipeline plus its bind group layout, built once per device.
 */
import type { GpuContext } from '../device.js';
import type { InputNorm } from '../../sae/config.js';
import type { WeightDtype } from '../../sae/dtype.js';
import { compactIo, composeShader, reduction, selectKeys, weightAccess } from '../shaders.js';
import { computeLayout, makePipeline, type BindingKind } from '../resources.js';

export interface Kernel {
  readonly layout: GPUBindGroupLayout;
  readonly pipeline: GPUComputePipeline;
}

export function buildKernel(
  ctx: GpuContext,
  name: Parameters<typeof composeShader>[0],
  variant: string,
  kinds: ReadonlyArray<BindingKind | undefined>,
  libs: readonly string[],
  enables: { f16?: boolean; subgroups?: boolean },
  constants: Record<string, number>,
): Kernel {
  const { device } = ctx;
  // The layout is part of the pipeline, so it is cached with it: one (layout, pipeline) per key.
  const key = `${name}:${variant}:${JSON.stringify(enables)}:${JSON.stringify(constants)}`;
  const cached = kernelCache.get(device)?.get(key);
  if (cached !== undefined) return cached;
  const layout = computeLayout(device, `loupe ${name} layout`, kinds);
  const pipeline = makePipeline(device, `loupe ${name} ${variant}`, composeShader(name, libs, enables), [layout], constants);
  const kernel = { layout, pipeline };
  let perDevice = kernelCache.get(device);
  if (perDevice === undefined) {
    perDevice = new Map();
    kernelCache.set(device, perDevice);
  }
  perDevice.set(key, kernel);
  return kernel;
}

const kernelCache = new WeakMap<GPUDevice, Map<string, Kernel>>();

const NORM_CODE: Record<InputNorm, number> = { none: 0, 'constant-norm-rescale': 1, 'layer-norm': 2 };

/** shaders/prepare_input.wgsl — bindings: params, x, b_dec, sae_in, transform. */
export function prepareInputKernel(ctx: GpuContext, norm: InputNorm, subtractBDec: boolean): Kernel {
  const f = ctx.capabilities;
  return buildKernel(ctx, 'prepareInput', 'f32', ['uniform', 'read', 'read', 'rw', 'rw'], [selectKeys, reduction(f)], { subgroups: f.subgroups }, {
    WG: 256,
    NORM: NORM_CODE[norm],
    SUB_B_DEC: subtractBDec ? 1 : 0,
  });
}

/** shaders/topk_select.wgsl — bindings: params, pre, top_indices, top_acts, counts, transform. */
export function topkSelectKernel(ctx: GpuContext): Kernel {
  return buildKernel(ctx, 'topkSelect', 'f32', ['uniform', 'read', 'rw', 'rw', 'rw', 'read'], [selectKeys], {}, {});
}

/** shaders/decode_sparse.wgsl — bindings: params, W shard, offsets, indices, values, b_dec, transform, x_hat. */
export function decodeSparseKernel(ctx: GpuContext, dtype: WeightDtype): Kernel {
  const f16 = ctx.capabilities.nativeF16Weights && dtype === 'f16';
  return buildKernel(
    ctx,
    'decodeSparse',
    dtype,
    ['uniform', 'read', 'read', 'read', 'read', 'read', 'read', 'rw'],
    [weightAccess(dtype, { f16, subgroups: false })],
    { f16 },
    { WG: 64 },
  );
}

/** shaders/reconstruction_metrics.wgsl — bindings: params, x, x_hat, metrics. */
export function metricsKernel(ctx: GpuContext): Kernel {
  const f = ctx.capabilities;
  return buildKernel(ctx, 'reconstructionMetrics', 'f32', ['uniform', 'read', 'read', 'rw'], [reduction(f)], { subgroups: f.subgroups }, { WG: 256 });
}

/** shaders/select_histogram.wgsl — bindings: params, pre, transform, state, hist. */
export function selectHistogramKernel(ctx: GpuContext): Kernel {
  return buildKernel(ctx, 'selectHistogram', 'f32', ['uniform', 'read', 'read', 'read', 'rw'], [selectKeys], {}, { WG: 256 });
}

/** shaders/select_bin.wgsl — bindings: params, transform, hist, state. */
export function selectBinKernel(ctx: GpuContext): Kernel {
  return buildKernel(ctx, 'selectBin', 'f32', ['uniform', 'read', 'rw', 'rw'], [selectKeys], {}, {});
}

/** shaders/compact_count.wgsl — bindings: params, pre, transform, state, counts. */
export function compactCountKernel(ctx: GpuContext): Kernel {
  return buildKernel(ctx, 'compactCount', 'f32', ['uniform', 'read', 'read', 'read', 'rw'], [selectKeys, compactIo], {}, {});
}

/** shaders/compact_scan.wgsl — bindings: params, counts, state, offsets, budgets. */
export function compactScanKernel(ctx: GpuContext): Kernel {
  return buildKernel(ctx, 'compactScan', 'f32', ['uniform', 'read', 'read', 'rw', 'rw'], [selectKeys], {}, {});
}

/** shaders/compact_write.wgsl — bindings: params, pre, transform, state, offsets, budgets, out_indices, out_values. */
export function compactWriteKernel(ctx: GpuContext): Kernel {
  return buildKernel(ctx, 'compactWrite', 'f32', ['uniform', 'read', 'read', 'read', 'read', 'read', 'rw', 'rw'], [selectKeys, compactIo], {}, {});
}
