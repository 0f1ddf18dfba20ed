// Scheduling and memory: which kernel computes each node, in which order, and where every
// value lives. Parameters, gradients and the optimizer's moments live in four "arenas" with
// one identical layout (each tensor 256-byte aligned, as storage-buffer binding offsets must
// be); activations get buffers from a pool, reused once a value's last reader has run.
import { MtcError } from './diagnostics.ts';
import type { Kernel } from './kernel.ts';
import { reshapeRoot, numel, type Graph, type Node } from './ir.ts';
import { emitKernel } from './wgsl/index.ts';
import { emitRegion } from './wgsl/region.ts';
import { emitContraction } from './wgsl/contract.ts';
import { emitAttention } from './wgsl/attention.ts';
import { emitSum } from './wgsl/reduce.ts';
import { fuseGraph, isConstNode, keptNodes, liveNodes, type FuseOptions, type Group } from './fuse.ts';

/** A region of a device buffer. Buffers: "params", "grads", "tokens", "targets", "act<N>". */
export interface Slot {
  buffer: string;
  offset: number; // bytes
  bytes: number;
}

export interface Dispatch {
  kernel: string;
  node: number;
  /** inputs, then the output */
  bindings: Slot[];
  usesStep: boolean;
  /** the dropout keys bound for this dispatch (kernel.ts) */
  keys?: number[];
  workgroups: [number, number, number];
  /** a fused region: its last member (node is the first) */
  last?: number;
}

export interface ParamSlot {
  path: string;
  shape: number[];
  offset: number; // floats into the arena
}

export interface Plan {
  kernels: Kernel[]; // sorted by name, one per distinct code
  arenaFloats: number;
  params: ParamSlot[];
  /** activation buffers, by name, with their size in bytes */
  buffers: Array<{ name: string; bytes: number }>;
  /** computed once (constants) */
  setup: Dispatch[];
  forward: Dispatch[];
  backward: Dispatch[];
  slots: Map<number, Slot>;
  loss: Slot;
  logits: Slot;
  observations: Record<string, Slot[]>;
  /** the kernels' groups of nodes, in dispatch order (compiler/fuse.ts) */
  groups: Group[];
}

const ALIGN_FLOATS = 64; // 256 bytes

/** A value's bytes: 2 per element when stored as f16 (rounded up to whole 4-byte words), else 4. */
const bytesOf = (n: Node): number => (n.dtype === 'f16' ? Math.ceil(numel(n.shape) / 2) * 4 : numel(n.shape) * 4);
const keysOf = (k: Kernel): { keys?: number[] } => (k.keys?.length ? { keys: k.keys } : {});
const uncommented = (code: string): string => code.replace(/\/\/[^\n]*/g, '');
const align = (n: number, a: number): number => Math.ceil(n / a) * a;

export interface PlanOptions {
  /** the largest storage binding of the device, in bytes */
  maxBindingBytes?: number;
  /** fuse per-token stretches into regions (compiler/fuse.ts); false: one kernel per node */
  fuse?: boolean | FuseOptions;
}

export function planProgram(g: Graph, opts: PlanOptions = {}): Plan {
  if (!g.grads) throw new Error('internal: plan needs a differentiated graph');
  const maxBindingBytes = opts.maxBindingBytes ?? Infinity;
  const nodes = g.nodes;
  // Arena layout: params in declaration order.
  let arena = 0;
  const params: ParamSlot[] = g.params.map((p) => {
    const slot = { path: p.path, shape: p.shape, offset: arena };
    arena = align(arena + numel(p.shape), ALIGN_FLOATS);
    return slot;
  });
  arena = Math.max(arena, ALIGN_FLOATS);

  // What is computed, and in which kernels: one per node, or fused regions.
  const live = liveNodes(g);
  const keep = keptNodes(g);
  const groups: Group[] = opts.fuse === false ? nodes.filter((n) => live[n.id]).map((n) => ({ kind: 'node', node: n.id })) : fuseGraph(g, opts.fuse === true || opts.fuse === undefined ? {} : opts.fuse);
  // A reshape scheduled on its own is a view of its input's slot; one inside a region that is
  // written out has a slot of its own.
  const views = new Set(groups.flatMap((gr) => (gr.kind === 'node' && nodes[gr.node].op.kind === 'reshape' ? [gr.node] : [])));
  const root = (id: number): number => {
    while (views.has(id)) id = nodes[id].inputs[0];
    return id;
  };
  for (const id of [...keep]) keep.add(root(id));
  const isConst = (n: Node): boolean => isConstNode(n);

  /** A node kernel's operands: its inputs, or the memory a view of one reads. */
  const nodeReads = (gr: Group & { kind: 'node' }): number[] =>
    gr.sum ? [nodes[gr.sum.sum].inputs[0], gr.sum.addend] : nodes[gr.node].inputs.map((i, k) => gr.views?.get(k)?.node ?? i);
  // Liveness in dispatch order: the last group that reads each value (reshapes read nothing).
  const reads = (gr: Group): number[] =>
    gr.kind === 'region' ? gr.leaves : gr.kind === 'contract' ? [gr.a.node, gr.b.node, ...(gr.addend === undefined ? [] : [gr.addend])] : nodes[gr.node].op.kind === 'reshape' ? [] : nodeReads(gr);
  const lastUse = new Array<number>(nodes.length).fill(-1);
  const constNeeded = new Set<number>();
  groups.forEach((gr, gi) => {
    for (const i of reads(gr)) {
      lastUse[root(i)] = Math.max(lastUse[root(i)], gi);
      // a region computes the constants it reads itself, not those it reads through a view
      if (isConst(nodes[root(i)]) && !(gr.kind === 'region' && isConst(nodes[i]))) constNeeded.add(root(i));
    }
  });
  for (const id of keep) if (isConst(nodes[id])) constNeeded.add(id);

  const slots = new Map<number, Slot>();
  const gradOf = new Map<number, number>(g.grads.flatMap((gid, pi) => [[gid, pi], [reshapeRoot(g, gid), pi]] as Array<[number, number]>));
  const buffers: Array<{ name: string; bytes: number }> = [];
  const pool = new Map<number, string[]>(); // bytes -> free buffer names
  const take = (bytes: number, fresh = false): Slot => {
    if (bytes > maxBindingBytes)
      throw new MtcError(`a tensor of ${bytes} bytes exceeds the device's largest storage binding (${maxBindingBytes} bytes); reduce micro_batch (gradients then accumulate over more micro-batches), batch or ctx`);
    const reused = fresh ? undefined : pool.get(bytes)?.pop();
    if (reused) return { buffer: reused, offset: 0, bytes };
    const name = `act${buffers.length}`;
    buffers.push({ name, bytes });
    return { buffer: name, offset: 0, bytes };
  };
  const release = (s: Slot): void => {
    if (!s.buffer.startsWith('act')) return;
    const list = pool.get(s.bytes) ?? [];
    list.push(s.buffer);
    pool.set(s.bytes, list);
  };
  /** The slot of a node's own value (params, inputs and gradients have fixed places). */
  const slotFor = (n: Node): Slot => {
    const bytes = bytesOf(n);
    if (n.op.kind === 'param') return { buffer: 'params', offset: params[n.op.index].offset * 4, bytes };
    if (n.op.kind === 'input') return { buffer: n.op.name === 'tokens' ? 'tokens' : 'targets', offset: 0, bytes };
    if (gradOf.has(n.id)) return { buffer: 'grads', offset: params[gradOf.get(n.id) as number].offset * 4, bytes };
    if (views.has(n.id)) return { ...(slots.get(n.inputs[0]) as Slot), bytes };
    // constants are written once, in setup: a buffer of their own, never one of the pool
    if (isConst(n)) return take(bytes, true);
    return take(bytes);
  };

  const kernels = new Map<string, Kernel>();
  const addKernel = (k: Kernel): void => {
    // Fused kernels are named by their code; the comments of the first one are kept.
    const prev = kernels.get(k.name);
    if (prev && uncommented(prev.code) !== uncommented(k.code)) throw new Error(`internal: two kernels named ${k.name} differ`);
    if (!prev) kernels.set(k.name, k);
  };
  const setup: Dispatch[] = [];
  const forward: Dispatch[] = [];
  const backward: Dispatch[] = [];
  const nFwd = g.backwardStart ?? nodes.length;
  const listFor = (first: Node): Dispatch[] => (isConst(first) ? setup : first.id < nFwd ? forward : backward);
  const canRelease = (id: number): boolean => !keep.has(id) && !isConst(nodes[id]) && nodes[id].op.kind !== 'param' && nodes[id].op.kind !== 'input';
  const arenaSlot = (buffer: 'params' | 'grads', base: number): Slot => ({ buffer, offset: base * 4, bytes: (arena - base) * 4 });

  groups.forEach((gr, gi) => {
    const written: number[] = [];
    if (gr.kind === 'region') {
      const k = emitRegion(g, gr, (pi) => params[pi].offset, (id) => (gradOf.has(id) ? params[gradOf.get(id) as number].offset : undefined), root);
      for (const o of gr.outputs) {
        slots.set(o, gradOf.has(o) ? slotFor(nodes[o]) : take(bytesOf(nodes[o])));
        written.push(o);
      }
      addKernel(k);
      const bindings = k.bindings.map((b) => (b.kind === 'params' || b.kind === 'grads' ? arenaSlot(b.kind, b.base) : (slots.get(b.node) as Slot)));
      const first = nodes[gr.members[0]];
      const last = nodes[gr.members[gr.members.length - 1]];
      listFor(first).push({ kernel: k.name, node: first.id, last: last.id, bindings, usesStep: k.usesStep, ...keysOf(k), workgroups: k.workgroups });
    } else if (gr.kind === 'contract') {
      const n = nodes[gr.node];
      const slot = slotFor(n);
      slots.set(n.id, slot);
      written.push(n.id);
      const k = emitContraction(g, nodes[gr.shape ?? gr.node], nodes[gr.product], gr.summed, gr.a, gr.b, gr.addend, n.dtype);
      addKernel(k);
      const ins = [gr.a.node, gr.b.node, ...(gr.addend === undefined ? [] : [gr.addend])].map((i) => slots.get(i) as Slot);
      listFor(n).push({ kernel: k.name, node: n.id, bindings: [...ins, slot], usesStep: false, workgroups: k.workgroups });
    } else {
      const n = nodes[gr.node];
      if (isConst(n) && !constNeeded.has(n.id)) return;
      const slot = slotFor(n);
      slots.set(n.id, slot);
      if (!views.has(n.id)) written.push(n.id);
      let k: Kernel | null;
      try {
        k = gr.views ? emitAttention(n, g, gr.views) : gr.sum ? emitSum(nodes[gr.sum.sum], g, undefined, gr.sum.addend, n.dtype) : emitKernel(g, n);
      } catch (e) {
        // Sizes past 32-bit indexing are the user's (a mistyped ctx or d), not a compiler bug.
        if (e instanceof Error && /too large for u32 indexing/.test(e.message)) throw new MtcError(e.message.replace(/^internal: /, ''), n.loc);
        throw e;
      }
      if (k) {
        addKernel(k);
        listFor(n).push({ kernel: k.name, node: n.id, bindings: [...nodeReads(gr).map((i) => slots.get(i) as Slot), slot], usesStep: k.usesStep, ...keysOf(k), workgroups: k.workgroups });
      }
    }
    // Free what this group read for the last time, and what it wrote that nobody reads.
    for (const i of new Set(reads(gr).map(root))) if (lastUse[i] === gi && canRelease(i)) release(slots.get(i) as Slot);
    for (const w of written) if (lastUse[w] < 0 && canRelease(w)) release(slots.get(w) as Slot);
  });
  const sorted = [...kernels.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const obs: Record<string, Slot[]> = {};
  for (const [k, ids] of Object.entries(g.observations)) obs[k] = ids.map((i) => slots.get(i) as Slot);
  return {
    kernels: sorted,
    arenaFloats: arena,
    params,
    buffers,
    setup,
    forward,
    backward,
    slots,
    loss: slots.get(g.outputs.loss) as Slot,
    logits: slots.get(g.outputs.logits) as Slot,
    observations: obs,
    groups,
  };
}
