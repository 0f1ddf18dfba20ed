// A small executor for single kernels, for tests and measurements: one device for the whole
// test file, a buffer per input and one for the output, a dispatch, a readback. Not the
// runtime's scheduler: it only runs one node at a time.
import type { Graph, Node } from '../../compiler/ir.ts';
import { numel } from '../../compiler/ir.ts';
import { keysUniformBytes, STEP_UNIFORM_BYTES, type Kernel } from '../../compiler/kernel.ts';
import { emitKernel } from '../../compiler/wgsl/index.ts';
import { acquireDevice, compileShader, type Gpu } from '../../runtime/device.ts';
import { gently as gentle } from '../../runtime/wait.ts';

export type HostArray = Float32Array | Int32Array;

export interface StepValues {
  seed: number;
  step: number;
  training: boolean;
}

const byteSize = (n: number): number => Math.max(16, Math.ceil((n * 4) / 16) * 16);

export class GpuExec {
  private pipelines = new Map<string, { code: string; pipeline: GPUComputePipeline }>();
  private constructor(readonly gpu: Gpu) {}

  static async open(): Promise<GpuExec> {
    return new GpuExec(await acquireDevice());
  }

  get device(): GPUDevice {
    return this.gpu.device;
  }

  close(): void {
    this.gpu.close();
  }

  /** The compiled pipeline of a kernel, cached by name (a name must always mean the same code). */
  async pipeline(kernel: Kernel): Promise<GPUComputePipeline> {
    const hit = this.pipelines.get(kernel.name);
    if (hit) {
      if (hit.code !== kernel.code) throw new Error(`kernel name ${kernel.name} used for two different codes`);
      return hit.pipeline;
    }
    const module = await compileShader(this.device, kernel.code, kernel.name);
    this.device.pushErrorScope('validation');
    const pipeline = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const err = await this.device.popErrorScope();
    if (err) throw new Error(`pipeline ${kernel.name}: ${err.message}`);
    this.pipelines.set(kernel.name, { code: kernel.code, pipeline });
    return pipeline;
  }

  private upload(data: HostArray): GPUBuffer {
    const buf = this.device.createBuffer({ size: byteSize(data.length), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, mappedAtCreation: true });
    const view = data instanceof Int32Array ? new Int32Array(buf.getMappedRange()) : new Float32Array(buf.getMappedRange());
    view.set(data);
    buf.unmap();
    return buf;
  }

  /** Buffers and a bind group for one run of `kernel`. */
  private async prepare(kernel: Kernel, inputs: HostArray[], outLength: number, step?: StepValues) {
    const pipeline = await this.pipeline(kernel);
    const buffers = inputs.map((a) => this.upload(a));
    const out = this.device.createBuffer({ size: byteSize(outLength), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const entries: GPUBindGroupEntry[] = [...buffers, out].map((buffer, binding) => ({ binding, resource: { buffer } }));
    const owned = [...buffers, out];
    if (kernel.usesStep) {
      const s = step ?? { seed: 0, step: 0, training: false };
      const u = this.device.createBuffer({ size: STEP_UNIFORM_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      this.device.queue.writeBuffer(u, 0, new Uint32Array([s.seed >>> 0, s.step >>> 0, s.training ? 1 : 0, 0]));
      entries.push({ binding: inputs.length + 1, resource: { buffer: u } });
      owned.push(u);
    }
    if (kernel.keys?.length) {
      // the dropout keys of the sites, as the program binds them per dispatch
      const k = this.device.createBuffer({ size: keysUniformBytes(kernel.keys.length), usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      const words = new Uint32Array(keysUniformBytes(kernel.keys.length) / 4);
      words.set(kernel.keys);
      this.device.queue.writeBuffer(k, 0, words);
      entries.push({ binding: inputs.length + 2, resource: { buffer: k } });
      owned.push(k);
    }
    const bindGroup = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    return { pipeline, bindGroup, out, owned };
  }

  private encode(kernel: Kernel, pipeline: GPUComputePipeline, bindGroup: GPUBindGroup, reps: number): GPUCommandBuffer {
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    for (let r = 0; r < reps; r++) pass.dispatchWorkgroups(...kernel.workgroups);
    pass.end();
    return enc.finish();
  }

  /** Run `kernel` once on `inputs`; the output (outLength elements of outDtype) read back. */
  async run(kernel: Kernel, inputs: HostArray[], outLength: number, outDtype: 'f32' | 'i32' = 'f32', step?: StepValues): Promise<HostArray> {
    const { pipeline, bindGroup, out, owned } = await this.prepare(kernel, inputs, outLength, step);
    const readback = this.device.createBuffer({ size: byteSize(outLength), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.device.pushErrorScope('validation');
    const cmd = this.encode(kernel, pipeline, bindGroup, 1);
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(out, 0, readback, 0, byteSize(outLength));
    this.device.queue.submit([cmd, enc.finish()]);
    const err = await this.device.popErrorScope();
    if (err) throw new Error(`dispatch of ${kernel.name}: ${err.message}`);
    await gentle(readback.mapAsync(GPUMapMode.READ));
    const bytes = readback.getMappedRange().slice(0, outLength * 4);
    readback.unmap();
    readback.destroy();
    for (const b of owned) b.destroy();
    return outDtype === 'i32' ? new Int32Array(bytes) : new Float32Array(bytes);
  }

  /**
   * Microseconds per dispatch of `kernel`, from `reps` dispatches in one pass (after a warm-up):
   * wall-clock, and the CPU time of this process (lavapipe's threads run in it), which is less
   * disturbed by other processes on a shared machine.
   */
  async time(kernel: Kernel, inputs: HostArray[], outLength: number, reps: number, step?: StepValues): Promise<{ wallUs: number; cpuUs: number }> {
    const { pipeline, bindGroup, owned } = await this.prepare(kernel, inputs, outLength, step);
    this.device.queue.submit([this.encode(kernel, pipeline, bindGroup, 1)]);
    await gentle(this.device.queue.onSubmittedWorkDone());
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    this.device.pushErrorScope('validation');
    this.device.queue.submit([this.encode(kernel, pipeline, bindGroup, reps)]);
    const err = await this.device.popErrorScope();
    if (err) throw new Error(`dispatch of ${kernel.name}: ${err.message}`);
    await gentle(this.device.queue.onSubmittedWorkDone());
    const wallUs = ((performance.now() - t0) * 1000) / reps;
    const cpu = process.cpuUsage(c0);
    for (const b of owned) b.destroy();
    return { wallUs, cpuUs: (cpu.user + cpu.system) / reps };
  }

  /** Run the kernel of `node` on the given values of its inputs (e.g. from the interpreter). */
  async runNode(graph: Graph, node: Node, inputValues: ArrayLike<number>[], step?: StepValues): Promise<HostArray> {
    const kernel = emitKernel(graph, node);
    if (!kernel) throw new Error(`node ${node.name} (${node.op.kind}) has no kernel`);
    const inputs = node.inputs.map((id, k) => (graph.nodes[id].dtype === 'i32' ? Int32Array.from(inputValues[k]) : Float32Array.from(inputValues[k])));
    return this.run(kernel, inputs, numel(node.shape), node.dtype === 'i32' ? 'i32' : 'f32', step);
  }
}
