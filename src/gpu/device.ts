/**
 * The GPU device Loupe computes on: owned (requested here, destroyed by `release`) or borrowed
 * (the caller's, e.g. onnxruntime-web's — never destroyed by Loupe). Optional features
 * (shader-f16, subgroups, timestamp-query) are requested when the adapter offers them and
 * every kernel has a path without them.
 */
import { GpuDeviceLostError, GpuUnavailableError } from '../errors.js';

/** Which limits to request: the WebGPU defaults, or the adapter's maxima for buffer sizes. */
export type LimitsMode = 'default' | 'adapter';

export interface GpuContextOptions {
  /** A device to borrow; Loupe never destroys it. */
  readonly device?: GPUDevice;
  /** The GPU entry point (navigator.gpu in a page; `create([])` of the `webgpu` package in Node). */
  readonly gpu?: GPU;
  /** 'adapter' (default) asks for the adapter's largest buffer and binding sizes. */
  readonly limits?: LimitsMode;
  /** Refuse optional features even where offered (to exercise fallback paths). */
  readonly disableFeatures?: ReadonlyArray<'shader-f16' | 'subgroups' | 'timestamp-query'>;
  readonly powerPreference?: GPUPowerPreference;
  /**
   * How f16 weights are read: 'native' vec4<f16> loads (needs shader-f16) or 'packed' u32 pairs
   * widened with unpack2x16float (core WGSL). 'auto' (default): native on GPUs, packed on CPU
   * adapters, where it measured ~20% faster (lavapipe, bench/results).
   */
  readonly f16Loads?: 'auto' | 'native' | 'packed';
}

/** What the kernels may rely on. */
export interface GpuCapabilities {
  readonly f16: boolean;
  /** f16 weights are read with native f16 loads (else packed + unpack2x16float). */
  readonly nativeF16Weights: boolean;
  readonly subgroups: boolean;
  /** Smallest subgroup size the adapter may use (4 when unknown). */
  readonly subgroupMinSize: number;
  readonly timestamps: boolean;
  /** A software adapter that runs shaders on the CPU (Mesa lavapipe/llvmpipe, SwiftShader). */
  readonly cpuAdapter: boolean;
  readonly maxStorageBufferBindingSize: number;
  readonly maxBufferSize: number;
  readonly maxWorkgroupSize: number;
  readonly maxWorkgroupStorageSize: number;
  readonly maxWorkgroupsPerDimension: number;
  readonly minStorageBufferOffsetAlignment: number;
}

export class GpuContext {
  readonly device: GPUDevice;
  readonly capabilities: GpuCapabilities;
  /** Human-readable adapter description for benchmark records and the demo. */
  readonly adapterDescription: string;
  readonly owned: boolean;
  #lostReason: string | undefined;

  private constructor(
    device: GPUDevice,
    owned: boolean,
    adapterDescription: string,
    disable: ReadonlySet<string>,
    info: GPUAdapterInfo | undefined,
    f16Loads: 'auto' | 'native' | 'packed',
  ) {
    this.device = device;
    this.owned = owned;
    this.adapterDescription = adapterDescription;
    const l = device.limits;
    const f16 = device.features.has('shader-f16') && !disable.has('shader-f16');
    const cpuAdapter = isCpuAdapter(info, adapterDescription);
    this.capabilities = Object.freeze({
      f16,
      nativeF16Weights: f16 && (f16Loads === 'native' || (f16Loads === 'auto' && !cpuAdapter)),
      subgroups: device.features.has('subgroups') && !disable.has('subgroups'),
      subgroupMinSize: (info as (GPUAdapterInfo & { subgroupMinSize?: number }) | undefined)?.subgroupMinSize ?? 4,
      timestamps: device.features.has('timestamp-query') && !disable.has('timestamp-query'),
      cpuAdapter,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxWorkgroupSize: Math.min(l.maxComputeInvocationsPerWorkgroup, l.maxComputeWorkgroupSizeX),
      maxWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      minStorageBufferOffsetAlignment: l.minStorageBufferOffsetAlignment,
    });
    void device.lost.then((info) => {
      this.#lostReason = `${info.reason}: ${info.message}`;
    });
  }

  /** Set once the device is lost; every later GPU call fails fast with `GpuDeviceLostError`. */
  get lostReason(): string | undefined {
    return this.#lostReason;
  }

  assertAlive(): void {
    if (this.#lostReason !== undefined) {
      throw new GpuDeviceLostError(
        `The GPU device was lost (${this.#lostReason}). Results returned before stay valid; create a new Sae (loadSae) to continue.`,
      );
    }
  }

  static async create(options: GpuContextOptions = {}): Promise<GpuContext> {
    const disable = new Set<string>(options.disableFeatures ?? []);
    if (options.device !== undefined) {
      return new GpuContext(options.device, false, describeDevice(options.device), disable, adapterInfoOf(options.device), options.f16Loads ?? 'auto');
    }
    const gpu = options.gpu ?? defaultGpu();
    if (gpu === undefined) {
      throw new GpuUnavailableError(
        'WebGPU is not available here (no navigator.gpu). Use a browser with WebGPU, pass { gpu } (in Node: create([]) from the "webgpu" package), or use backend: "cpu".',
      );
    }
    const adapter = await gpu.requestAdapter(options.powerPreference ? { powerPreference: options.powerPreference } : undefined);
    if (adapter === null) {
      throw new GpuUnavailableError(
        'No WebGPU adapter was found. On Linux without a GPU install Mesa 25 lavapipe (tools/ci/install-system-deps.sh), or use backend: "cpu".',
      );
    }
    const wanted: GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'];
    const requiredFeatures = wanted.filter((f) => adapter.features.has(f) && !disable.has(f));
    const requiredLimits: Record<string, number> = {};
    if ((options.limits ?? 'adapter') === 'adapter') {
      const a = adapter.limits;
      requiredLimits['maxStorageBufferBindingSize'] = a.maxStorageBufferBindingSize;
      requiredLimits['maxBufferSize'] = a.maxBufferSize;
      requiredLimits['maxComputeWorkgroupStorageSize'] = a.maxComputeWorkgroupStorageSize;
      requiredLimits['maxStorageBuffersPerShaderStage'] = Math.min(a.maxStorageBuffersPerShaderStage, 10);
    }
    const device = await adapter.requestDevice({ requiredFeatures, requiredLimits, label: 'loupe' });
    return new GpuContext(device, true, describeAdapter(adapter), disable, adapter.info, options.f16Loads ?? 'auto');
  }

  /** Destroys the device if Loupe created it; a borrowed device is left alone. */
  release(): void {
    if (this.owned) this.device.destroy();
  }
}

function defaultGpu(): GPU | undefined {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  return nav?.gpu;
}

function describeAdapter(adapter: GPUAdapter): string {
  const info = adapter.info;
  const parts = [info.vendor, info.architecture, info.device, info.description].filter((s) => s !== undefined && s !== '');
  return parts.length > 0 ? parts.join(' / ') : 'unknown adapter';
}

function isCpuAdapter(info: GPUAdapterInfo | undefined, description: string): boolean {
  const fallback = (info as (GPUAdapterInfo & { isFallbackAdapter?: boolean }) | undefined)?.isFallbackAdapter === true;
  return fallback || /llvmpipe|lavapipe|swiftshader/i.test(description);
}

function adapterInfoOf(device: GPUDevice): GPUAdapterInfo | undefined {
  return (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
}

function describeDevice(device: GPUDevice): string {
  const info = adapterInfoOf(device);
  if (info === undefined) return 'borrowed device';
  const parts = [info.vendor, info.architecture, info.device, info.description].filter((s) => s !== undefined && s !== '');
  return parts.length > 0 ? parts.join(' / ') : 'borrowed device';
}
