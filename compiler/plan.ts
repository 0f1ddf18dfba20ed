// Scheduling and memory: which kernel computes each node, in which order, and where every
// value lives. Parameters, gradients and the optimizer's moments live in four "arenas" with
// one identical layout (each tensor 256-byte aligned, as storage-buffer binding offsets must
// be); activations get buffers from a pool, reused once a value's last reader has run.
import { MtcError } from './diagnostics.ts';
import type { Kernel } from './kernel.ts';
import { numel, type Graph, type Node } from './ir.ts';
import { emitKernel } from './wgsl/index.ts';

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
  workgroups: [number, number, number];
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
}

const ALIGN_FLOATS = 64; // 256 bytes
const align = (n: number, a: number): number => Math.ceil(n / a) * a;

export function planProgram(g: Graph, maxBindingBytes = Infinity): Plan {
  if (!g.grads) throw new Error('internal: plan needs a differentiated graph');
  const nodes = g.nodes;
  // Arena layout: params in declaration order.
  let arena = 0;
  const params: ParamSlot[] = g.params.map((p) => {
    const slot = { path: p.path, shape: p.shape, offset: arena };
    arena = align(arena + numel(p.shape), ALIGN_FLOATS);
    return slot;
  });
  arena = Math.max(arena, ALIGN_FLOATS);

  // Liveness: what is needed by the outputs, observations and gradients.
  const keep = new Set<number>([g.outputs.loss, g.outputs.logits, ...Object.values(g.observations).flat(), ...g.grads]);
  const live = new Array<boolean>(nodes.length).fill(false);
  for (const id of keep) live[id] = true;
  for (let i = nodes.length - 1; i >= 0; i--) if (live[i]) for (const j of nodes[i].inputs) live[j] = true;
  const root = (id: number): number => {
    while (nodes[id].op.kind === 'reshape') id = nodes[id].inputs[0];
    return id;
  };
  for (const id of [...keep]) keep.add(root(id));
  const lastUse = new Array<number>(nodes.length).fill(-1);
  for (const n of nodes) if (live[n.id]) for (const i of n.inputs) lastUse[root(i)] = Math.max(lastUse[root(i)], n.id);
  const isConst = (n: Node): boolean => (n.op.kind === 'fill' || n.op.kind === 'eye') && n.inputs.length === 0;

  const slots = new Map<number, Slot>();
  const gradOf = new Map<number, number>(g.grads.map((gid, pi) => [gid, pi]));
  const buffers: Array<{ name: string; bytes: number }> = [];
  const pool = new Map<number, string[]>(); // bytes -> free buffer names
  const take = (bytes: number): Slot => {
    if (bytes > maxBindingBytes)
      throw new MtcError(`a tensor of ${bytes} bytes exceeds the device's largest storage binding (${maxBindingBytes} bytes); reduce batch or ctx`);
    const reused = pool.get(bytes)?.pop();
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

  const kernels = new Map<string, Kernel>();
  const setup: Dispatch[] = [];
  const forward: Dispatch[] = [];
  const backward: Dispatch[] = [];
  const nFwd = g.backwardStart ?? nodes.length;

  for (const n of nodes) {
    if (!live[n.id]) continue;
    const bytes = numel(n.shape) * 4;
    let slot: Slot;
    if (n.op.kind === 'param') {
      const p = params[n.op.index];
      slot = { buffer: 'params', offset: p.offset * 4, bytes };
    } else if (n.op.kind === 'input') {
      slot = { buffer: n.op.name === 'tokens' ? 'tokens' : 'targets', offset: 0, bytes };
    } else if (gradOf.has(n.id)) {
      slot = { buffer: 'grads', offset: params[gradOf.get(n.id) as number].offset * 4, bytes };
    } else if (n.op.kind === 'reshape') {
      slot = { ...(slots.get(n.inputs[0]) as Slot), bytes };
    } else {
      slot = take(bytes);
    }
    slots.set(n.id, slot);
    let k: Kernel | null;
    try {
      k = emitKernel(g, n);
    } catch (e) {
      // Sizes past 32-bit indexing are the user's (a mistyped ctx or d), not a compiler bug.
      if (e instanceof Error && /too large for u32 indexing/.test(e.message)) throw new MtcError(e.message.replace(/^internal: /, ''), n.loc);
      throw e;
    }
    if (k) {
      const prev = kernels.get(k.name);
      if (prev && prev.code !== k.code) throw new Error(`internal: two kernels named ${k.name} differ`);
      kernels.set(k.name, k);
      const d: Dispatch = {
        kernel: k.name,
        node: n.id,
        bindings: [...n.inputs.map((i) => slots.get(i) as Slot), slot],
        usesStep: k.usesStep,
        workgroups: k.workgroups,
      };
      (isConst(n) ? setup : n.id < nFwd ? forward : backward).push(d);
    }
    // Free inputs whose last reader this was (never constants or kept values).
    for (const i of new Set(n.inputs.map(root))) {
      if (lastUse[i] === n.id && !keep.has(i) && !isConst(nodes[i])) release(slots.get(i) as Slot);
    }
    if (lastUse[n.id] < 0 && !keep.has(n.id) && !isConst(n) && n.op.kind !== 'reshape') release(slot);
  }
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
  };
}
