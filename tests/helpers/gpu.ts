/**
 * WebGPU in Node for tests: Dawn (`webgpu` package) on Mesa lavapipe. In CI (CI=true) a
 * missing adapter FAILS the test; elsewhere the test is skipped with a message naming the
 * install script. The harness follows webgpu-utils: each test inside validation and
 * out-of-memory error scopes, every buffer created on the device tracked, and the test fails
 * if a scope caught an error or a buffer the code under test created was never destroyed.
 */
import { create, globals } from 'webgpu';
import type { TestContext } from 'vitest';
import { expect } from 'vitest';

Object.assign(globalThis, globals);

const INSTALL_HINT =
  'No WebGPU adapter: install Mesa 25 lavapipe with `sudo bash tools/ci/install-system-deps.sh` (Debian 12) to run the GPU tests.';

// Keep the GPU object alive for the whole file: dawn.node crashes if it is collected.
let gpu: GPU | undefined;
export function nodeGpu(): GPU {
  gpu ??= create([]);
  return gpu;
}

export async function nodeAdapter(ctx: TestContext | undefined): Promise<GPUAdapter | undefined> {
  const adapter = await nodeGpu().requestAdapter();
  if (adapter === null) {
    if (process.env['CI'] === 'true') throw new Error(`CI requires a WebGPU adapter. ${INSTALL_HINT}`);
    ctx?.skip(INSTALL_HINT);
    return undefined;
  }
  return adapter;
}

export interface GpuHarness {
  readonly device: GPUDevice;
  readonly adapter: GPUAdapter;
  /** Buffers created on the device during the test that were not destroyed yet. */
  liveBuffers(): GPUBuffer[];
}

export interface HarnessOptions {
  readonly features?: ReadonlyArray<'shader-f16' | 'subgroups'>;
  /** 'default' keeps WebGPU's default limits (128 MiB bindings, 256 MiB buffers). */
  readonly limits?: 'default' | 'adapter';
}

/** Runs `fn` on a fresh device inside error scopes; checks scopes and buffer hygiene after. */
export async function withGpu(ctx: TestContext, options: HarnessOptions, fn: (h: GpuHarness) => Promise<void>): Promise<void> {
  const adapter = await nodeAdapter(ctx);
  if (adapter === undefined) return;
  const wanted = options.features ?? [];
  const missing = wanted.filter((f) => !adapter.features.has(f));
  if (missing.length > 0) {
    if (process.env['CI'] === 'true') throw new Error(`CI requires adapter features ${missing.join(', ')}. ${INSTALL_HINT}`);
    ctx.skip(`adapter lacks ${missing.join(', ')}`);
    return;
  }
  const requiredLimits: Record<string, number> = {};
  if (options.limits === 'adapter') {
    requiredLimits['maxStorageBufferBindingSize'] = adapter.limits.maxStorageBufferBindingSize;
    requiredLimits['maxBufferSize'] = adapter.limits.maxBufferSize;
    requiredLimits['maxComputeWorkgroupStorageSize'] = adapter.limits.maxComputeWorkgroupStorageSize;
  }
  const device = await adapter.requestDevice({ requiredFeatures: [...wanted], requiredLimits });
  const live = new Set<GPUBuffer>();
  const createBuffer = device.createBuffer.bind(device);
  device.createBuffer = (descriptor: GPUBufferDescriptor): GPUBuffer => {
    const buffer = createBuffer(descriptor);
    live.add(buffer);
    const destroy = buffer.destroy.bind(buffer);
    buffer.destroy = (): undefined => {
      live.delete(buffer);
      return destroy();
    };
    return buffer;
  };
  const uncaptured: string[] = [];
  device.addEventListener('uncapturederror', (e) => uncaptured.push((e as GPUUncapturedErrorEvent).error.message));
  device.pushErrorScope('validation');
  device.pushErrorScope('out-of-memory');
  let lost: string | undefined;
  void device.lost.then((info) => {
    if (info.reason !== 'destroyed') lost = info.message;
  });
  try {
    await fn({ device, adapter, liveBuffers: () => [...live] });
    await device.queue.onSubmittedWorkDone();
  } finally {
    const oom = await device.popErrorScope();
    const validation = await device.popErrorScope();
    const leaked = [...live].map((b) => b.label);
    device.destroy();
    expect(validation?.message ?? null, 'validation error scope').toBeNull();
    expect(oom?.message ?? null, 'out-of-memory error scope').toBeNull();
    expect(uncaptured, 'uncaptured GPU errors').toEqual([]);
    expect(lost, 'device lost during the test').toBeUndefined();
    expect(leaked, 'buffers left undestroyed').toEqual([]);
  }
}
