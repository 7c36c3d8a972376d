/**
 * Small helpers for buffers, bind group layouts and a per-device pipeline cache. Every GPU
 * object carries a label so a validation message names the Loupe object it concerns.
 */

export type BindingKind = 'uniform' | 'read' | 'rw';

/** A compute bind group layout from binding kinds, binding index = position (undefined = gap). */
export function computeLayout(device: GPUDevice, label: string, kinds: ReadonlyArray<BindingKind | undefined>): GPUBindGroupLayout {
  const entries: GPUBindGroupLayoutEntry[] = [];
  kinds.forEach((kind, binding) => {
    if (kind === undefined) return;
    entries.push({
      binding,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type: kind === 'uniform' ? 'uniform' : kind === 'read' ? 'read-only-storage' : 'storage' },
    });
  });
  return device.createBindGroupLayout({ label, entries });
}

export function bindGroup(
  device: GPUDevice,
  label: string,
  layout: GPUBindGroupLayout,
  buffers: ReadonlyArray<GPUBuffer | undefined>,
): GPUBindGroup {
  const entries: GPUBindGroupEntry[] = [];
  buffers.forEach((buffer, binding) => {
    if (buffer !== undefined) entries.push({ binding, resource: { buffer } });
  });
  return device.createBindGroup({ label, layout, entries });
}

export function makePipeline(
  device: GPUDevice,
  label: string,
  code: string,
  layouts: GPUBindGroupLayout[],
  constants: Record<string, number>,
): GPUComputePipeline {
  const module = device.createShaderModule({ label, code });
  return device.createComputePipeline({
    label,
    layout: device.createPipelineLayout({ label, bindGroupLayouts: layouts }),
    compute: { module, entryPoint: 'main', constants },
  });
}

/** Rounds up to a multiple of `m`. */
export function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}

/**
 * Owns the buffers one object allocates, so `destroy()` frees exactly those — never a caller's
 * buffers (TypeGPU's rule).
 */
export class BufferPool {
  readonly #device: GPUDevice;
  readonly #owned = new Set<GPUBuffer>();

  constructor(device: GPUDevice) {
    this.#device = device;
  }

  create(label: string, size: number, usage: GPUBufferUsageFlags): GPUBuffer {
    const buffer = this.#device.createBuffer({ label, size: Math.max(16, roundUp(size, 16)), usage });
    this.#owned.add(buffer);
    return buffer;
  }

  storage(label: string, size: number, extra: GPUBufferUsageFlags = 0): GPUBuffer {
    return this.create(label, size, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | extra);
  }

  uniform(label: string, size: number): GPUBuffer {
    return this.create(label, size, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
  }

  readback(label: string, size: number): GPUBuffer {
    return this.create(label, size, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
  }

  release(buffer: GPUBuffer): void {
    if (this.#owned.delete(buffer)) buffer.destroy();
  }

  destroyAll(): void {
    for (const b of this.#owned) b.destroy();
    this.#owned.clear();
  }

  get size(): number {
    return this.#owned.size;
  }
}

/** A storage buffer that grows (never shrinks) to the largest size asked of it. */
export class GrowableBuffer {
  #buffer: GPUBuffer | undefined;
  #capacity = 0;
  constructor(
    readonly pool: BufferPool,
    readonly label: string,
    readonly make: (pool: BufferPool, label: string, size: number) => GPUBuffer,
  ) {}

  /** The buffer, at least `size` bytes; a new one when it grows (bind groups must be rebuilt). */
  ensure(size: number): { buffer: GPUBuffer; grew: boolean } {
    if (this.#buffer !== undefined && this.#capacity >= size) return { buffer: this.#buffer, grew: false };
    if (this.#buffer !== undefined) this.pool.release(this.#buffer);
    this.#capacity = Math.max(16, roundUp(size, 256));
    this.#buffer = this.make(this.pool, this.label, this.#capacity);
    return { buffer: this.#buffer, grew: true };
  }
}
