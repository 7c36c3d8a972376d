/**
 * Streamed activations on the GPU: each token's vector is written, in the dtype it arrived in,
 * into the next slot of a ring buffer (no CPU conversion, half the upload for f16/bf16), and
 * `widen` turns a run of slots into f32 rows [count][dIn] for `Sae.encode(buffer, { tokens })`.
 * A slot stays valid until `slots` later tokens have been written.
 */
import { composeShader } from '../gpu/shaders.js';
import { computeLayout, makePipeline } from '../gpu/resources.js';
import { dtypeBytes, type WireDtype } from './frames.js';

const WG = 64;
const DTYPE_CODE: Record<WireDtype, number> = { f32: 0, f16: 1, bf16: 2 };

export class ActivationRing {
  readonly buffer: GPUBuffer;
  readonly slots: number;
  readonly slotBytes: number;
  /** Slots written so far (the next slot is written % slots). */
  written = 0;
  readonly #device: GPUDevice;
  readonly #dIn: number;
  readonly #params: GPUBuffer;
  readonly #layout: GPUBindGroupLayout;
  readonly #pipeline: GPUComputePipeline;
  #out: GPUBuffer | undefined;
  readonly #pad: Uint8Array | undefined;

  constructor(device: GPUDevice, dIn: number, readonly dtype: WireDtype, slots: number) {
    this.#device = device;
    this.#dIn = dIn;
    this.slots = slots;
    const bytes = dIn * dtypeBytes(dtype);
    // writeBuffer moves whole 4-byte words: an odd count of 16-bit values gets one pad value
    this.slotBytes = Math.ceil(bytes / 4) * 4;
    this.#pad = this.slotBytes !== bytes ? new Uint8Array(this.slotBytes) : undefined;
    this.buffer = device.createBuffer({ label: 'loupe activation ring', size: this.slotBytes * slots, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    this.#params = device.createBuffer({ label: 'loupe activation ring params', size: 32, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.#layout = computeLayout(device, 'loupe widen activations layout', ['uniform', 'read', 'rw']);
    this.#pipeline = makePipeline(device, `loupe widen activations ${dtype}`, composeShader('widenActivations', []), [this.#layout], { WG, DTYPE: DTYPE_CODE[dtype] });
  }

  /** Writes one activation into the next slot; returns where it went. */
  write(activation: Uint8Array): { buffer: GPUBuffer; offset: number; slot: number } {
    const slot = this.written % this.slots;
    const offset = slot * this.slotBytes;
    if (this.#pad !== undefined) {
      this.#pad.set(activation);
      this.#device.queue.writeBuffer(this.buffer, offset, this.#pad.buffer, 0, this.slotBytes);
    } else {
      this.#device.queue.writeBuffer(this.buffer, offset, activation.buffer, activation.byteOffset, activation.byteLength);
    }
    this.written++;
    return { buffer: this.buffer, offset, slot };
  }

  /**
   * f32 rows [count][dIn] of `count` slots starting at `firstSlot` (wrapping), in a buffer this
   * ring owns and reuses (valid until the next call).
   */
  widen(firstSlot: number, count: number): GPUBuffer {
    const bytes = count * this.#dIn * 4;
    if (this.#out === undefined || this.#out.size < bytes) {
      this.#out?.destroy();
      this.#out = this.#device.createBuffer({ label: 'loupe widened activations', size: Math.max(16, bytes), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    }
    this.#device.queue.writeBuffer(this.#params, 0, new Uint32Array([this.#dIn, firstSlot % this.slots, count, this.slots, this.slotBytes / 4]));
    const enc = this.#device.createCommandEncoder({ label: 'loupe widen activations' });
    const pass = enc.beginComputePass({ label: 'loupe widen activations' });
    pass.setPipeline(this.#pipeline);
    pass.setBindGroup(
      0,
      this.#device.createBindGroup({
        label: 'loupe widen activations',
        layout: this.#layout,
        entries: [
          { binding: 0, resource: { buffer: this.#params } },
          { binding: 1, resource: { buffer: this.buffer } },
          { binding: 2, resource: { buffer: this.#out } },
        ],
      }),
    );
    pass.dispatchWorkgroups(Math.ceil(this.#dIn / WG), count);
    pass.end();
    this.#device.queue.submit([enc.finish()]);
    return this.#out;
  }

  destroy(): void {
    this.buffer.destroy();
    this.#params.destroy();
    this.#out?.destroy();
    this.#out = undefined;
  }
}

/**
 * Widens a [tokens][dIn] f16 or bf16 activation buffer someone else owns (onnxruntime's fp16
 * hook output) into f32 rows on the GPU, with the ring's kernel: the buffer is read as `tokens`
 * consecutive slots. Nothing reaches the CPU.
 */
export class ActivationWidener {
  readonly #device: GPUDevice;
  readonly #layout: GPUBindGroupLayout;
  readonly #pipelines = new Map<WireDtype, GPUComputePipeline>();
  readonly #params: GPUBuffer;
  #out: GPUBuffer | undefined;

  constructor(device: GPUDevice) {
    this.#device = device;
    this.#layout = computeLayout(device, 'loupe widen activations layout', ['uniform', 'read', 'rw']);
    this.#params = device.createBuffer({ label: 'loupe widener params', size: 32, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  }

  /** f32 rows [tokens][dIn] in a buffer this widener owns and reuses (valid until the next call). */
  widen(src: GPUBuffer, dtype: WireDtype, dIn: number, tokens: number): GPUBuffer {
    if (dtype !== 'f32' && dIn % 2 !== 0) throw new RangeError('16-bit activations need an even dIn to be read as u32 words.');
    let pipeline = this.#pipelines.get(dtype);
    if (pipeline === undefined) {
      pipeline = makePipeline(this.#device, `loupe widen ${dtype}`, composeShader('widenActivations', []), [this.#layout], { WG, DTYPE: DTYPE_CODE[dtype] });
      this.#pipelines.set(dtype, pipeline);
    }
    const bytes = tokens * dIn * 4;
    if (this.#out === undefined || this.#out.size < bytes) {
      this.#out?.destroy();
      this.#out = this.#device.createBuffer({ label: 'loupe widened hook', size: Math.max(16, bytes), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    }
    const strideWords = (dIn * dtypeBytes(dtype)) / 4;
    this.#device.queue.writeBuffer(this.#params, 0, new Uint32Array([dIn, 0, tokens, Math.max(1, tokens), strideWords]));
    const enc = this.#device.createCommandEncoder({ label: 'loupe widen hook' });
    const pass = enc.beginComputePass({ label: 'loupe widen hook' });
    pass.setPipeline(pipeline);
    pass.setBindGroup(
      0,
      this.#device.createBindGroup({
        label: 'loupe widen hook',
        layout: this.#layout,
        entries: [
          { binding: 0, resource: { buffer: this.#params } },
          { binding: 1, resource: { buffer: src } },
          { binding: 2, resource: { buffer: this.#out } },
        ],
      }),
    );
    pass.dispatchWorkgroups(Math.ceil(dIn / WG), tokens);
    pass.end();
    this.#device.queue.submit([enc.finish()]);
    return this.#out;
  }

  destroy(): void {
    this.#params.destroy();
    this.#out?.destroy();
    this.#out = undefined;
  }
}
