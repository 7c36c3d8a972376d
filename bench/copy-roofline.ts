/**
 * The memory-bandwidth roofline of an adapter: a plain vec4 copy kernel
 * (shaders/copy_bandwidth.wgsl) over a buffer of `bytes`, bytes read + written per second.
 */
import { KERNELS } from '../src/gpu/shaders.js';
import { time, type Timing } from './stats.js';

export async function copyBandwidth(device: GPUDevice, bytes: number, reps = 10): Promise<{ gbps: number; timing: Timing }> {
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
  const src = device.createBuffer({ label: 'bench copy src', size: bytes, usage });
  const dst = device.createBuffer({ label: 'bench copy dst', size: bytes, usage });
  const module = device.createShaderModule({ code: KERNELS.copyBandwidth });
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main', constants: { WG: 256 } } });
  const group = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: src } },
      { binding: 1, resource: { buffer: dst } },
    ],
  });
  const vec4s = bytes / 16;
  const groups = Math.ceil(vec4s / 256);
  const x = Math.min(groups, 65535);
  const y = Math.ceil(groups / x);
  const run = async (): Promise<void> => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    for (let i = 0; i < reps; i++) pass.dispatchWorkgroups(x, y);
    pass.end();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  const timing = await time(run, { warmup: 1, runs: 5 });
  src.destroy();
  dst.destroy();
  return { gbps: (2 * bytes * reps) / (timing.medianMs / 1000) / 1e9, timing };
}
