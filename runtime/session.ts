// A compiled model on the device: loads generated/<model>/ (program.ts + kernels/*.wgsl),
// initialises the parameters, and runs training steps and evaluations. Losses are copied into
// a device-side log each step and read back in batches, so the GPU never waits for the host.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { writeCompiled, type Compiled } from '../compiler/pipeline.ts';
import { compileShader, type Gpu } from './device.ts';
import { initParams } from './init.ts';
import { checkpointPaths, pruneCheckpoints, readSafetensors, writeSafetensors } from './checkpoint.ts';
import { MtcError } from '../compiler/diagnostics.ts';
import { numel, type InitTerm, type ParamInfo } from '../compiler/ir.ts';
import type { Batch } from './data.ts';
import { makeDirs } from '../compiler/files.ts';
import { ACCUM_UNIFORM_BYTES } from '../compiler/wgsl/optimizer.ts';

type Binding = [GPUBuffer, number, number];
interface ProgramInstance {
  params: GPUBuffer;
  grads: GPUBuffer;
  m: GPUBuffer;
  v: GPUBuffer;
  tokens: GPUBuffer;
  targets: GPUBuffer;
  step: GPUBuffer;
  opt: GPUBuffer;
  norm: GPUBuffer;
  /** the AccumParams uniform, where micro-batches accumulate their gradients */
  accum?: GPUBuffer;
  outputs: { loss: Binding; logits: Binding; observations: Record<string, Binding[]> };
  setup(pass: GPUComputePassEncoder): void;
  forward(pass: GPUComputePassEncoder): void;
  backward(pass: GPUComputePassEncoder): void;
  optimizer(pass: GPUComputePassEncoder): void;
  accumulate?(pass: GPUComputePassEncoder): void;
}
export interface CompiledModule {
  model: {
    name: string;
    hypers: Record<string, number>;
    train: import('../compiler/config.ts').TrainConfig;
  };
  params: Array<{ path: string; shape: number[]; offset: number; init: InitTerm[] }>;
  /** tokens: [micro-batch, ctx], what one device step runs; accumulate: micro-batches per optimizer step */
  layout: { arenaFloats: number; tokens: [number, number]; accumulate?: number; vocab: number; kernels: string[]; dispatches: Record<string, number> };
  Program: new (device: GPUDevice, shaders: Record<string, GPUShaderModule>) => ProgramInstance;
}

const LOG_SLOTS = 1024;
/** Dispatches timed per query set (2 queries each; WebGPU allows 4096 queries a set). */
export const PROFILE_CHUNK = 2048;

const mb = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** Writes compiled code where Session.open can load it, also outside any ESM package. */
export function writeModule(c: Compiled, dir: string): void {
  writeCompiled(c, dir);
  fs.writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
}

export class Session {
  private readonly logBuf: GPUBuffer;
  private readonly staging: GPUBuffer;
  private pending = 0; // losses copied into logBuf since the last read
  private groups: number[] = []; // per reported loss, the logged losses it averages (micro-batches)
  private readonly logSlots: number;

  private constructor(
    readonly gpu: Gpu,
    readonly mod: CompiledModule,
    readonly prog: ProgramInstance,
  ) {
    const d = gpu.device;
    this.logSlots = LOG_SLOTS * this.accumulation;
    this.logBuf = d.createBuffer({ label: 'loss log', size: this.logSlots * 4, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    this.staging = d.createBuffer({ label: 'readback', size: this.logSlots * 4, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
  }

  /** Loads a compiled model folder and builds its device state. */
  static async open(dir: string, gpu: Gpu): Promise<Session> {
    const mod = (await import(pathToFileURL(path.resolve(dir, 'program.ts')).href)) as CompiledModule;
    const shaders: Record<string, GPUShaderModule> = {};
    for (const name of mod.layout.kernels) {
      const code = fs.readFileSync(path.join(dir, 'kernels', `${name}.wgsl`), 'utf8');
      shaders[name] = await compileShader(gpu.device, code, `${name}.wgsl`);
    }
    // The parameter arena is bound whole (the optimizer and gradient-norm kernels), so it has
    // to fit one storage binding; activations were checked against it when compiling.
    const arenaBytes = mod.layout.arenaFloats * 4;
    const maxBinding = gpu.device.limits.maxStorageBufferBindingSize;
    if (arenaBytes > maxBinding) {
      throw new MtcError(
        `the model's parameters take ${mb(arenaBytes)} (${mod.layout.arenaFloats} floats), more than this device binds as one storage buffer (${mb(maxBinding)}); ` +
          'make the model smaller (fewer or smaller parameters), or use a device with a larger maxStorageBufferBindingSize',
      );
    }
    gpu.device.pushErrorScope('out-of-memory');
    gpu.device.pushErrorScope('validation');
    const prog = new mod.Program(gpu.device, shaders);
    const invalid = await gpu.settle(gpu.device.popErrorScope(), "creating the model's buffers");
    const oom = await gpu.settle(gpu.device.popErrorScope(), "creating the model's buffers");
    if (oom) {
      const bytes = Object.values(prog as object)
        .flat()
        .reduce((sum: number, b: unknown) => sum + (b instanceof GPUBuffer ? b.size : 0), 0);
      throw new MtcError(
        `the device ran out of memory creating the model's buffers (${mb(bytes)} in all; ${oom.message}), so nothing was run; ` +
          'reduce micro_batch (the batch is then run as more micro-batches), batch or ctx (or the model size) with --set, or use a device with more memory',
      );
    }
    if (invalid) throw new MtcError(`creating the compiled program failed on this device: ${invalid.message}; this is a compiler bug, please report it with the model file`);
    const s = new Session(gpu, mod, prog);
    s.encode((pass) => prog.setup(pass));
    return s;
  }

  /** Micro-batches per optimizer step (train setting micro_batch; 1: no accumulation). */
  get accumulation(): number {
    return this.mod.layout.accumulate ?? 1;
  }

  /** Tokens per optimizer step (all its micro-batches). */
  get tokensPerStep(): number {
    return this.mod.layout.tokens[0] * this.mod.layout.tokens[1] * this.accumulation;
  }

  /** Parameter infos as the initialiser takes them. */
  paramInfos(): ParamInfo[] {
    return this.mod.params.map((p) => ({ path: p.path, shape: p.shape, init: p.init }));
  }

  /** Fresh weights from the seed (same seed, same weights). */
  initialise(seed: number): void {
    const values = initParams(this.paramInfos(), seed);
    const arena = new Float32Array(this.mod.layout.arenaFloats);
    this.mod.params.forEach((p, i) => arena.set(values[i], p.offset));
    this.gpu.device.queue.writeBuffer(this.prog.params, 0, arena);
    const zeros = new Float32Array(this.mod.layout.arenaFloats);
    this.gpu.device.queue.writeBuffer(this.prog.m, 0, zeros);
    this.gpu.device.queue.writeBuffer(this.prog.v, 0, zeros);
  }

  private encode(body: (pass: GPUComputePassEncoder) => void, after?: (enc: GPUCommandEncoder) => void): void {
    const enc = this.gpu.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    body(pass);
    pass.end();
    after?.(enc);
    this.gpu.device.queue.submit([enc.finish()]);
  }

  private writeBatch(b: Batch, seed: number, step: number, training: boolean): void {
    const q = this.gpu.device.queue;
    q.writeBuffer(this.prog.tokens, 0, b.tokens);
    q.writeBuffer(this.prog.targets, 0, b.targets);
    q.writeBuffer(this.prog.step, 0, new Uint32Array([seed >>> 0, step >>> 0, training ? 1 : 0, 0]));
  }

  private logLoss(enc: GPUCommandEncoder): void {
    if (this.pending >= this.logSlots) throw new Error('internal: loss log overflow; read losses more often');
    const [buf, off] = this.prog.outputs.loss;
    enc.copyBufferToBuffer(buf, off, this.logBuf, this.pending * 4, 4);
    this.pending++;
  }

  /**
   * One optimizer step (0-based `step`) at learning rate `lr`: one batch, or where the program
   * accumulates gradients, its micro-batches in order (as many as `accumulation`). Micro-batch
   * k draws the dropout of device step `step · accumulation + k`; the loss reported for the
   * step is the mean of the micro-batches' losses.
   */
  trainStep(b: Batch | readonly Batch[], step: number, lr: number, seed: number): void {
    const micro = Array.isArray(b) ? (b as readonly Batch[]) : [b as Batch];
    const n = this.accumulation;
    if (micro.length !== n) throw new Error(`internal: a step of this program takes ${n} micro-batch${n === 1 ? '' : 'es'}, got ${micro.length}`);
    const accum = this.prog.accum;
    if (n > 1 && (!accum || !this.prog.accumulate)) throw new Error('internal: the program accumulates gradients but has no accumulate pass');
    micro.forEach((mb, k) => {
      const last = k === n - 1;
      this.writeTrain(mb, step, lr, seed, step * n + k);
      if (n > 1) {
        const u = new ArrayBuffer(ACCUM_UNIFORM_BYTES); // AccumParams: first, last, scale
        new Uint32Array(u, 0, 2).set([k === 0 ? 1 : 0, last ? 1 : 0]);
        new Float32Array(u, 8, 1)[0] = 1 / n;
        this.gpu.device.queue.writeBuffer(accum!, 0, u);
      }
      this.encode(
        (pass) => {
          this.prog.forward(pass);
          this.prog.backward(pass);
          if (n > 1) this.prog.accumulate!(pass);
          if (last) this.prog.optimizer(pass);
        },
        (enc) => this.logLoss(enc),
      );
    });
    this.groups.push(n);
  }

  /**
   * One optimizer step as trainStep (the weights move), each dispatch in a compute pass of its
   * own between two timestamps: the device time of every kernel, in dispatch order. Needs a
   * device acquired with `timestamps` (gpu.hasTimestamps). The per-pass split adds a little
   * to each kernel; the figures are for finding where a step's time goes, not its length.
   * `chunk`: dispatches per query set.
   */
  async profileStep(b: Batch, step: number, lr: number, seed: number, chunk = PROFILE_CHUNK): Promise<Array<{ kernel: string; ms: number }>> {
    if (this.accumulation > 1)
      throw new MtcError(`profiling times one device step, and this program accumulates ${this.accumulation} micro-batches a step; profile it with --set micro_batch equal to the batch`);
    if (!this.gpu.hasTimestamps) throw new MtcError(`profiling needs timestamp queries; ${this.gpu.description} was not acquired with them or has none`);
    const dev = this.gpu.device;
    // the step's dispatches, recorded through a pass that only takes notes
    const names = new Map(Object.entries((this.prog as unknown as { pipelines: Record<string, GPUComputePipeline> }).pipelines).map(([k, p]) => [p, k]));
    type Call = { kernel: string; pipeline: GPUComputePipeline; group: GPUBindGroup; x: number; y: number; z: number };
    const calls: Call[] = [];
    let pipeline: GPUComputePipeline | undefined;
    let group: GPUBindGroup | undefined;
    const notes = {
      setPipeline: (p: GPUComputePipeline) => void (pipeline = p),
      setBindGroup: (index: number, g: GPUBindGroup) => void (group = index === 0 ? g : group),
      dispatchWorkgroups: (x: number, y = 1, z = 1) => {
        if (!pipeline || !group) throw new Error('internal: a dispatch before its pipeline and bind group');
        calls.push({ kernel: names.get(pipeline) ?? 'unnamed', pipeline, group, x, y, z });
      },
    } as unknown as GPUComputePassEncoder;
    this.prog.forward(notes);
    this.prog.backward(notes);
    this.prog.optimizer(notes);
    this.writeTrain(b, step, lr, seed);
    // a query set holds at most 4096 queries (WebGPU): one set per chunk of dispatches
    const chunks: Array<{ querySet: GPUQuerySet; resolved: GPUBuffer; readback: GPUBuffer; from: number; n: number }> = [];
    for (let from = 0; from < calls.length; from += chunk) {
      const n = Math.min(chunk, calls.length - from);
      chunks.push({
        querySet: dev.createQuerySet({ type: 'timestamp', count: 2 * n }),
        resolved: dev.createBuffer({ size: 16 * n, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }),
        readback: dev.createBuffer({ size: 16 * n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }),
        from,
        n,
      });
    }
    try {
      dev.pushErrorScope('validation');
      const enc = dev.createCommandEncoder();
      for (const c of chunks) {
        for (let i = 0; i < c.n; i++) {
          const d = calls[c.from + i];
          const pass = enc.beginComputePass({ timestampWrites: { querySet: c.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
          pass.setPipeline(d.pipeline);
          pass.setBindGroup(0, d.group);
          pass.dispatchWorkgroups(d.x, d.y, d.z);
          pass.end();
        }
        enc.resolveQuerySet(c.querySet, 0, 2 * c.n, c.resolved, 0);
        enc.copyBufferToBuffer(c.resolved, 0, c.readback, 0, 16 * c.n);
      }
      this.logLoss(enc);
      const cmd = enc.finish();
      const invalid = await this.gpu.settle(dev.popErrorScope(), 'encoding a profiled step');
      if (invalid) {
        this.pending--; // its loss is never copied
        throw new MtcError(`profiling a step failed on this device: ${invalid.message}`);
      }
      dev.queue.submit([cmd]);
      this.groups.push(1);
      const ms: number[] = [];
      for (const c of chunks) {
        await this.gpu.settle(c.readback.mapAsync(GPUMapMode.READ), 'reading the timestamps of a profiled step');
        const t = new BigInt64Array(c.readback.getMappedRange().slice(0));
        c.readback.unmap();
        for (let i = 0; i < c.n; i++) ms.push(Number(t[2 * i + 1] - t[2 * i]) / 1e6);
      }
      return calls.map((c, i) => ({ kernel: c.kernel, ms: ms[i] }));
    } finally {
      for (const c of chunks) {
        c.querySet.destroy();
        c.resolved.destroy();
        c.readback.destroy();
      }
    }
  }

  /** The batch, step uniform and optimizer uniform of a training step (`device`: its dropout's step). */
  private writeTrain(b: Batch, step: number, lr: number, seed: number, device = step): void {
    const t = this.mod.model.train;
    this.writeBatch(b, seed, device, true);
    const n = step + 1;
    const opt = new Float32Array([lr, t.betas[0], t.betas[1], t.eps, t.weightDecay, t.clip, 1 - t.betas[0] ** n, 1 - t.betas[1] ** n]);
    this.gpu.device.queue.writeBuffer(this.prog.opt, 0, opt);
  }

  /** Forward only, dropout off; the loss joins the pending log. */
  evalStep(b: Batch): void {
    this.writeBatch(b, 0, 0, false);
    this.encode(
      (pass) => this.prog.forward(pass),
      (enc) => this.logLoss(enc),
    );
    this.groups.push(1);
  }

  /** Logits [batch, ctx, vocab] of one batch, dropout off. */
  async logits(b: Batch): Promise<Float32Array> {
    this.writeBatch(b, 0, 0, false);
    this.encode((pass) => this.prog.forward(pass));
    return this.read(this.prog.outputs.logits);
  }

  /**
   * Runs the forward pass on one batch and reads back what is asked: the logits and/or every
   * value of one observation point (one per iteration). Training mode draws the dropout of
   * (seed, step), the masks of that training step; evaluation mode turns dropout off.
   */
  async forwardRead(
    b: Batch,
    o: { training?: boolean; seed?: number; step?: number; logits?: boolean; observe?: string },
  ): Promise<{ logits?: Float32Array; observations: Float32Array[] }> {
    const training = o.training ?? false;
    this.writeBatch(b, training ? (o.seed ?? 0) : 0, training ? (o.step ?? 0) : 0, training);
    this.encode((pass) => this.prog.forward(pass));
    const logits = o.logits ? await this.read(this.prog.outputs.logits) : undefined;
    const observations = o.observe === undefined ? [] : await this.readObservation(o.observe);
    return { logits, observations };
  }

  /** The values of an observation point (one per iteration) left by the last forward pass. */
  async readObservation(name: string): Promise<Float32Array[]> {
    const slots = Object.hasOwn(this.prog.outputs.observations, name) ? this.prog.outputs.observations[name] : undefined;
    if (!slots) throw new MtcError(`the model has no observation point '${name}' (it observes: ${Object.keys(this.prog.outputs.observations).join(', ') || 'nothing'})`);
    const out: Float32Array[] = [];
    for (const s of slots) out.push(await this.read(s));
    return out;
  }

  /**
   * Waits for the device and returns the losses logged since the last read, in order: one per
   * training step (the mean over its micro-batches) or evaluated batch.
   */
  async readLosses(): Promise<number[]> {
    const n = this.pending;
    if (n === 0) return [];
    const groups = this.groups;
    this.groups = [];
    const enc = this.gpu.device.createCommandEncoder();
    enc.copyBufferToBuffer(this.logBuf, 0, this.staging, 0, n * 4);
    this.gpu.device.queue.submit([enc.finish()]);
    this.pending = 0;
    await this.gpu.settle(this.staging.mapAsync(GPUMapMode.READ, 0, n * 4), 'reading the losses back from it');
    const raw = new Float32Array(this.staging.getMappedRange(0, n * 4).slice(0));
    this.staging.unmap();
    if (groups.reduce((a, g) => a + g, 0) !== n) throw new Error('internal: the loss log and its groups disagree');
    const out: number[] = [];
    let at = 0;
    for (const g of groups) {
      let sum = 0;
      for (let i = 0; i < g; i++) sum += raw[at + i];
      out.push(sum / g);
      at += g;
    }
    return out;
  }

  /**
   * Mean held-out loss over the batches (dropout off). With `onBatch`, the forward pass of
   * each batch is followed by a call that may read its observations (the device then waits
   * for each batch in turn).
   */
  async evaluate(batches: Batch[], onBatch?: (b: Batch) => Promise<void>): Promise<number> {
    const before = this.pending;
    if (before) throw new Error('internal: read training losses before evaluating');
    let sum = 0;
    let count = 0;
    for (let i = 0; i < batches.length; i += LOG_SLOTS) {
      for (const b of batches.slice(i, i + LOG_SLOTS)) {
        this.evalStep(b);
        if (onBatch) await onBatch(b);
      }
      for (const l of await this.readLosses()) {
        sum += l;
        count++;
      }
    }
    return sum / count;
  }

  /** Reads a whole device buffer region as float32. */
  async read([buf, off, size]: Binding): Promise<Float32Array> {
    const d = this.gpu.device;
    const staging = d.createBuffer({ size, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
    const enc = d.createCommandEncoder();
    enc.copyBufferToBuffer(buf, off, staging, 0, size);
    d.queue.submit([enc.finish()]);
    await this.gpu.settle(staging.mapAsync(GPUMapMode.READ), 'reading results back from it');
    const out = new Float32Array(staging.getMappedRange().slice(0));
    staging.destroy();
    return out;
  }

  /** The parameter arena as float32 (for checkpoints and tests). */
  async readParams(): Promise<Float32Array> {
    return this.readArena('params');
  }

  /** Writes the arena (or one of the same layout) to the device. */
  writeArena(which: 'params' | 'grads' | 'm' | 'v', data: Float32Array): void {
    this.gpu.device.queue.writeBuffer(this.prog[which], 0, data);
  }

  /** Saves weights and AdamW moments after `step` steps into <runDir>/checkpoints. */
  async saveCheckpoint(runDir: string, step: number, seed: number): Promise<string> {
    const paths = checkpointPaths(runDir, step);
    makeDirs(path.dirname(paths.model));
    const meta = { format: 'mtc', model: this.mod.model.name, hypers: JSON.stringify(this.mod.model.hypers), step: String(step), seed: String(seed) };
    const table = (arena: Float32Array, prefix: string) => ({
      names: this.mod.params.map((p) => prefix + p.path),
      shapes: this.mod.params.map((p) => p.shape),
      data: this.mod.params.map((p) => arena.slice(p.offset, p.offset + numel(p.shape))),
    });
    const [params, m, v] = [await this.readArena('params'), await this.readArena('m'), await this.readArena('v')];
    // optimizer first: the model file's presence marks a complete checkpoint
    writeSafetensors(paths.optimizer, { names: [...table(m, 'm.').names, ...table(v, 'v.').names], shapes: [...table(m, 'm.').shapes, ...table(v, 'v.').shapes], data: [...table(m, 'm.').data, ...table(v, 'v.').data] }, meta);
    writeSafetensors(paths.model, table(params, ''), meta);
    pruneCheckpoints(runDir);
    return paths.model;
  }

  /** Loads weights (and, given its file, the AdamW moments) written for this model. */
  loadCheckpoint(modelFile: string, optimizerFile?: string): Record<string, string> {
    const fill = (file: string, prefix: string): [Float32Array, Record<string, string>] => {
      const ck = readSafetensors(file);
      const arena = new Float32Array(this.mod.layout.arenaFloats);
      for (const p of this.mod.params) {
        const t = ck.tensors.get(prefix + p.path);
        if (!t) throw new MtcError(`checkpoint ${file} has no tensor '${prefix}${p.path}': it was written for another model`);
        if (t.shape.join(',') !== p.shape.join(','))
          throw new MtcError(`checkpoint ${file}: tensor '${prefix}${p.path}' has shape [${t.shape.join(', ')}], the model has [${p.shape.join(', ')}]`);
        arena.set(t.data, p.offset);
      }
      return [arena, ck.meta];
    };
    const [params, meta] = fill(modelFile, '');
    this.writeArena('params', params);
    if (optimizerFile) {
      this.writeArena('m', fill(optimizerFile, 'm.')[0]);
      this.writeArena('v', fill(optimizerFile, 'v.')[0]);
    }
    return meta;
  }

  /** One of the four arenas (same layout): parameters, gradients, Adam moments. */
  async readArena(which: 'params' | 'grads' | 'm' | 'v'): Promise<Float32Array> {
    return this.read([this.prog[which], 0, this.mod.layout.arenaFloats * 4]);
  }
}
