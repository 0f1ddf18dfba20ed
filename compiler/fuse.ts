// The fusion pass: which nodes of the graph are computed together in one kernel.
//
// The Matrix Thinker is a long chain of small per-token operations (norms, products of d x d
// matrices, gates, residual adds) broken only by attention, which mixes tokens, and by the
// weight gradients, which sum over them. This pass finds the per-token stretches and makes
// each one a *region*: one kernel in which a thread owns one token and computes every member
// of the region for it, keeping intermediate values in private memory. Only what is read
// outside the region is written to device memory.
//
// Token blocks. A tensor of `tokens` blocks (tokens = the numel of the `tokens` input) is cut
// into contiguous blocks, one per token, in row-major order: [16, 64, 8, 8] into 1024 blocks of
// [8, 8]; the rows of [8192, 8] (the builder's folded product) into 1024 blocks of [8, 8].
// A node may join a region when every output block depends only on the same block of each
// operand that has blocks, and on whole operands that are the same for every token
// (*uniform*: parameters and what is computed from them alone). This is checked per op, from
// strides: for each axis of the output, the stride at which each operand is read.
//
// Partition. Nodes are visited in order. A node that can join joins the open region; a node
// that cannot is scheduled on its own, after the open region is closed if it reads from it
// (otherwise before it: it cannot depend on the region, whose members come earlier). A region
// also closes at the start of the backward pass, and before it would bind more storage buffers
// than `maxStorageBuffers` (the WebGPU default, 8) or keep more than `maxPrivateFloats` floats
// per thread alive.
import { numel, reshapeRoot, strides, type Graph, type Node, type OpOf } from './ir.ts';
import type { OperandView } from './wgsl/contract.ts';

/** A unit of scheduling: one node with its own kernel (or none), a fused region, or a contraction. */
/**
 * A node in a kernel of its own; an attention node may read some operands through views
 * (`views`: input position -> view; `absorbed`: the permutes it is the first to read in place).
 */
export type Group = { kind: 'node'; node: number; views?: Map<number, OperandView>; absorbed?: number[]; sum?: SumEpilogue } | Region | Contraction;

/** `node` = add(sum, addend) (through a reshape of the sum or not), in the sum's kernel. */
export interface SumEpilogue {
  sum: number;
  addend: number;
}

/**
 * `node` = sum(product, summed) with product = matmul(a, b), in one kernel that reads the
 * product's operands (a transposed one as a strided view of its input): neither the product
 * nor the transposes (`absorbed`) are computed.
 */
export interface Contraction {
  kind: 'contract';
  node: number;
  product: number;
  summed: number[];
  a: OperandView;
  b: OperandView;
  absorbed: number[];
  /** `node` is add(contraction, addend): the kernel adds it as it stores (gradients accumulated over uses) */
  addend?: number;
  /** with an addend: the contraction's own node (its shape is the kernel's; `node` has its elements) */
  shape?: number;
}

export interface Region {
  kind: 'region';
  /** member node ids, in graph order */
  members: number[];
  /** members whose values are written to device memory (read outside, or kept) */
  outputs: number[];
  /** values read from device memory: non-members (params and constants included) */
  leaves: number[];
  /** the number of token blocks (one thread each) */
  tokens: number;
  /** per member: 'tok' (one block per token) or 'uni' (the same for every token) */
  modes: Map<number, Mode>;
}

export type Mode = 'tok' | 'uni';

export interface FuseOptions {
  /** storage buffers one kernel may bind (WebGPU's default limit is 8) */
  maxStorageBuffers?: number;
  /** private floats per thread (values alive at once in a region) */
  maxPrivateFloats?: number;
  /** uniform members larger than this are not recomputed by every thread */
  maxUniformFloats?: number;
  /** token blocks larger than this (floats) are not fused: see MAX_BLOCK_FLOATS */
  maxBlockFloats?: number;
}

/** Multiply-adds of one block's product above which a matmul is not fused (8 x 8 x 8 = 512). */
export const MAX_BLOCK_MATMUL_FLOPS = 1024;

/**
 * A region computes a token block per thread, so it runs `tokens` threads, each walking its
 * block through private memory. Blocks past this many floats are left to one kernel per node,
 * which spreads a node over its elements: the full preset's 32 x 32 blocks (1024 floats) ran
 * fused at 0.76x the unfused speed (full, batch 1 x 32 tokens, lavapipe: 32 threads for a
 * whole region), and on a GPU a thread per token leaves most of it idle.
 */
export const MAX_BLOCK_FLOATS = 256;

export const FUSE_DEFAULTS: Required<FuseOptions> = { maxStorageBuffers: 8, maxPrivateFloats: 4096, maxUniformFloats: 256, maxBlockFloats: MAX_BLOCK_FLOATS };

// ---------------------------------------------------------------------------------------------
// Token blocks

/** How a shape is cut into `tokens` row-major blocks: axes before `axis`, and the high part of `axis`, index the block. */
export interface Split {
  axis: number;
  /** the low factor of `axis` that lies inside a block */
  lo: number;
}

export function tokenSplit(shape: readonly number[], tokens: number): Split | null {
  let p = 1;
  for (let a = 0; a < shape.length; a++) {
    const q = p * shape[a];
    if (q % tokens === 0 && tokens % p === 0) return { axis: a, lo: q / tokens };
    if (tokens % q !== 0) return null;
    p = q;
  }
  return null;
}

/** The shape of one block: the low part of the split axis, then the axes after it. */
export const blockDims = (shape: readonly number[], s: Split): number[] => [s.lo, ...shape.slice(s.axis + 1)];

/** How one operand of an op is read for one output block. */
export interface OperandRead {
  /** the operand's stride for each axis of the output block (blockDims) */
  local: number[];
  /** the axes that index blocks (axes before the split, then the split axis's high part): sizes and the operand's strides */
  blockDims: number[];
  blockStrides: number[];
  /** block t of the output reads block t of the operand (cut into `tokens` blocks), at the same place */
  aligned: boolean;
  /** every output block reads the same elements */
  same: boolean;
}

/** How an operand with stride `perAxis[a]` for output axis a is read by one block of an output of `outShape` cut by `split`. */
export function operandRead(outShape: readonly number[], split: Split, perAxis: readonly number[], operandNumel: number, tokens: number): OperandRead {
  const local = [perAxis[split.axis], ...perAxis.slice(split.axis + 1)];
  const blockDims = [...outShape.slice(0, split.axis), outShape[split.axis] / split.lo];
  const blockStrides = [...perAxis.slice(0, split.axis), perAxis[split.axis] * split.lo];
  const same = blockDims.every((d, k) => d === 1 || blockStrides[k] === 0);
  const size = operandNumel / tokens;
  const w = strides(blockDims);
  const aligned = operandNumel % tokens === 0 && blockDims.every((d, k) => d === 1 || blockStrides[k] === size * w[k]);
  return { local, blockDims, blockStrides, aligned, same };
}

/** Strides of `shape` broadcast to `to` (aligned right, 0 on stretched axes). */
export function broadcastAxisStrides(shape: readonly number[], to: readonly number[]): number[] {
  const s = strides(shape);
  return to.map((_, i) => {
    const j = i - (to.length - shape.length);
    return j < 0 || shape[j] === 1 ? 0 : s[j];
  });
}

/**
 * Per operand of `n`, its stride for each output axis (null: the op has no such form, or
 * reads its operands in a way a block cannot: reshape is handled apart).
 */
export function readStrides(n: Node, g: Graph): number[][] | null {
  const ins = n.inputs.map((i) => g.nodes[i].shape);
  const out = n.shape;
  const r = out.length;
  switch (n.op.kind) {
    case 'unary':
    case 'affine':
    case 'clamp':
    case 'inrange':
    case 'binary':
    case 'expand':
    case 'dropout':
    case 'softmax':
    case 'causal_mask':
      return ins.map((s) => broadcastAxisStrides(s, out));
    case 'sum':
      return [strides(ins[0])]; // same rank; reduced axes are size 1 in the output
    case 'permute': {
      const s = strides(ins[0]);
      return [n.op.perm.map((p) => s[p])];
    }
    case 'slice':
    case 'pad':
      return [strides(ins[0])];
    case 'matmul': {
      const [a, b] = ins;
      const batch = out.slice(0, -2);
      const [m, k] = a.slice(-2);
      const nn = b[b.length - 1];
      const ab = broadcastAxisStrides(a.slice(0, -2), batch).map((x) => x * m * k);
      const bb = broadcastAxisStrides(b.slice(0, -2), batch).map((x) => x * k * nn);
      return [
        [...ab, k, 0],
        [...bb, 0, 1],
      ];
    }
    case 'gather':
    case 'onehot': {
      const idx = ins[n.op.kind === 'gather' ? 1 : 0];
      const s = [...strides(idx), ...new Array<number>(r - idx.length).fill(0)];
      return n.op.kind === 'gather' ? [new Array<number>(r).fill(0), s] : [s];
    }
    default:
      return null;
  }
}

/** Per-op conditions on the split: the axes an op works along must lie inside a block. */
function splitAllowed(n: Node, s: Split, g: Graph): boolean {
  const r = n.shape.length;
  switch (n.op.kind) {
    case 'matmul':
    case 'softmax':
      return s.axis < r - 1; // never cut the columns (matmul: rows may be cut, see memberMode)
    case 'causal_mask':
      return s.axis < r - 2;
    case 'sum': {
      const x = g.nodes[n.inputs[0]].shape;
      return n.op.axes.every((a) => a > s.axis || x[a] === 1);
    }
    case 'slice':
    case 'pad':
      return n.op.axis > s.axis;
    case 'gather':
    case 'onehot':
      return s.axis < g.nodes[n.inputs[n.op.kind === 'gather' ? 1 : 0]].shape.length;
    default:
      return true;
  }
}

// ---------------------------------------------------------------------------------------------
// Which nodes may join a region, and how

const FUSIBLE = new Set<string>(['unary', 'affine', 'clamp', 'inrange', 'binary', 'expand', 'dropout', 'softmax', 'causal_mask', 'sum', 'permute', 'slice', 'pad', 'matmul', 'gather', 'onehot', 'reshape']);

/** Constants with no inputs are recomputed where they are read, never fused as members. */
export const isConstNode = (n: Node): boolean => (n.op.kind === 'fill' || n.op.kind === 'eye') && n.inputs.length === 0;

/** How a region holds a value: one block per thread ('tok'), the whole value in every thread ('uni'), or in device memory ('leaf'). */
export type Holding = 'tok' | 'uni' | 'leaf';

/** The reads of each operand of a block member `n` (mode 'tok'; reshape excluded). */
export function memberReads(n: Node, g: Graph, tokens: number): OperandRead[] | null {
  const split = tokenSplit(n.shape, tokens);
  if (!split || !splitAllowed(n, split, g)) return null;
  const per = readStrides(n, g);
  if (!per) return null;
  return n.inputs.map((i, k) => operandRead(n.shape, split, per[k], numel(g.nodes[i].shape), tokens));
}

/**
 * The mode of `n` as a member of a region in which each operand is held as `held(id)`, or
 * null when it cannot join: computed from uniform values only, it is 'uni'; otherwise 'tok',
 * when every operand held as blocks is read at its own block.
 */
export function memberMode(n: Node, g: Graph, tokens: number, uniform: (id: number) => boolean, held: (id: number) => Holding): Mode | null {
  if (!FUSIBLE.has(n.op.kind) || n.dtype === 'i32') return null;
  if (n.inputs.every(uniform)) return n.op.kind === 'gather' || n.op.kind === 'onehot' ? null : 'uni';
  if (n.op.kind === 'reshape') return numel(n.shape) % tokens === 0 ? 'tok' : null;
  const reads = memberReads(n, g, tokens);
  if (!reads) return null;
  // a thread computes its whole block: large products per block (the head, attention rows,
  // outer products of weight gradients) run faster as the tiled matmul kernels
  if (n.op.kind === 'matmul') {
    const k = g.nodes[n.inputs[0]].shape.at(-1) as number;
    if ((numel(n.shape) / tokens) * k > MAX_BLOCK_MATMUL_FLOPS) return null;
  }
  return n.inputs.every((i, k) => held(i) !== 'tok' || reads[k].aligned) ? 'tok' : null;
}

// ---------------------------------------------------------------------------------------------
// Partition

/** The live nodes: what the loss, logits, observations and gradients need. */
export function liveNodes(g: Graph): boolean[] {
  const keep = [g.outputs.loss, g.outputs.logits, ...Object.values(g.observations).flat(), ...(g.grads ?? [])];
  const live = new Array<boolean>(g.nodes.length).fill(false);
  for (const id of keep) live[id] = true;
  for (let i = g.nodes.length - 1; i >= 0; i--) if (live[i]) for (const j of g.nodes[i].inputs) live[j] = true;
  return live;
}

/** Nodes whose values must be in device memory whatever reads them. */
export function keptNodes(g: Graph): Set<number> {
  return new Set([g.outputs.loss, g.outputs.logits, ...Object.values(g.observations).flat(), ...(g.grads ?? [])]);
}

export function fuseGraph(g: Graph, opts: FuseOptions = {}): Group[] {
  const o = { ...FUSE_DEFAULTS, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) };
  const nodes = g.nodes;
  const live = liveNodes(g);
  const kept = keptNodes(g);
  const grads = new Set((g.grads ?? []).flatMap((id) => [id, reshapeRoot(g, id)]));
  const tokensId = g.inputs.tokens;
  const tokens = tokensId === undefined ? 0 : numel(nodes[tokensId].shape);
  const consumers: number[][] = nodes.map(() => []);
  for (const n of nodes) if (live[n.id]) for (const i of new Set(n.inputs)) consumers[i].push(n.id);

  // Uniform values: parameters, constants, and what is computed from them alone.
  const uniform = new Array<boolean>(nodes.length).fill(false);
  for (const n of nodes) {
    uniform[n.id] = n.op.kind === 'param' || isConstNode(n) || (n.op.kind !== 'input' && n.inputs.length > 0 && n.inputs.every((i) => uniform[i]));
  }

  const contractions = findContractions(g, consumers, kept, live, tokens);
  const absorbed = new Set([...contractions.values()].flatMap((c) => c.absorbed));
  const attentionViews = findAttentionViews(g, consumers, kept, live);
  const sumAdds = findSumEpilogues(g, consumers, kept, live, tokens, new Set([...contractions.keys(), ...absorbed]));
  for (const e of sumAdds.values()) for (const x of e.absorbed) absorbed.add(x);
  // the permutes they read in place are never computed
  // (a permute other nodes read too is computed for them, and written only if they need it)
  for (const n of nodes) if (live[n.id] && !kept.has(n.id) && attentionReads(g, consumers, n.id) && consumers[n.id].every((c) => nodes[c].op.kind === 'attention')) absorbed.add(n.id);
  // the memory attention views read: written out by the region that computes it
  const viewSources = new Set([...attentionViews.values()].flatMap((m) => [...m.values()].map((v) => v.node)));
  const readInPlace = (c: number, m: number): boolean => [...(attentionViews.get(c)?.entries() ?? [])].some(([k]) => nodes[c].inputs[k] === m);

  const groups: Group[] = [];
  let open: Region | null = null;
  let openIds = new Set<number>();
  // Contractions and sum epilogues that read the open region wait for it to close instead of
  // closing it (a weight gradient in the middle of a backward stretch would split it in two);
  // a node that reads one of them closes the region first.
  const pending: Group[] = [];
  const pendingIds = new Set<number>();
  const backwardStart = g.backwardStart ?? nodes.length;

  const close = (): void => {
    if (!open) return;
    const r = open;
    const members = new Set(r.members);
    r.outputs = r.members.filter((m) => kept.has(m) || viewSources.has(m) || consumers[m].some((c) => !members.has(c) && !readInPlace(c, m)));
    const leaves = new Set<number>();
    for (const m of r.members) for (const i of nodes[m].inputs) if (!members.has(i)) leaves.add(i);
    r.leaves = [...leaves].sort((a, b) => a - b);
    // a region of one node that is not worth a region keeps its own kernel
    if (r.members.length === 1 && nodes[r.members[0]].op.kind === 'reshape') {
      groups.push({ kind: 'node', node: r.members[0] });
      views.add(r.members[0]);
    }
    else if (r.members.length > 0) groups.push(r);
    groups.push(...pending);
    pending.length = 0;
    pendingIds.clear();
    open = null;
    openIds = new Set();
  };
  /** Schedules a group that reads `reads`: after the open region if it reads the region, else now. */
  const after = (gr: Group, node: number, reads: number[]): void => {
    if (open && reads.some((i) => openIds.has(i))) {
      pending.push(gr);
      pendingIds.add(node);
    } else groups.push(gr);
  };

  /** Storage bindings and private floats of the open region if `n` joined it. */
  const cost = (r: Region, n: Node): { bindings: number; floats: number } => {
    const members = new Set([...r.members, n.id]);
    const leafRoots = new Set<string>();
    let floats = 0;
    for (const m of members) {
      const mn = nodes[m];
      floats += r.modes.get(m) === 'uni' || (m === n.id && uniform[m]) ? numel(mn.shape) : numel(mn.shape) / Math.max(1, tokens);
      for (const i of mn.inputs) {
        if (members.has(i)) continue;
        const x = nodes[i];
        if (isConstNode(x)) continue;
        leafRoots.add(x.op.kind === 'param' ? 'params' : `v${rootOf(i)}`);
      }
    }
    let outs = 0;
    let gradsOut = false;
    for (const m of members) {
      const read = kept.has(m) || consumers[m].some((c) => !members.has(c) || c > n.id);
      if (!read) continue;
      if (grads.has(m)) gradsOut = true;
      else outs++;
    }
    return { bindings: leafRoots.size + outs + (gradsOut ? 1 : 0), floats };
  };
  // reshapes scheduled on their own are views of their input's memory (those fused in a region
  // and written out have memory of their own)
  const views = new Set<number>();
  const viewed = new Set<number>(); // permutes read in place by attention nodes, listed once
  const rootOf = (id: number): number => {
    while (views.has(id)) id = nodes[id].inputs[0];
    return id;
  };

  for (const n of nodes) {
    if (!live[n.id] || absorbed.has(n.id)) continue;
    if (n.id === backwardStart) close();
    const epilogue = sumAdds.get(n.id);
    const contraction = contractions.get(n.id);
    const viewSources = [...(attentionViews.get(n.id)?.values() ?? [])].map((v) => v.node); // memory read in place
    const reads = epilogue ? [g.nodes[epilogue.sum].inputs[0], epilogue.addend] : contraction ? [contraction.a.node, contraction.b.node, ...(contraction.addend === undefined ? [] : [contraction.addend])] : [...n.inputs, ...viewSources];
    if (pending.length && reads.some((i) => pendingIds.has(i))) close();
    if (epilogue) {
      after({ kind: 'node', node: n.id, sum: { sum: epilogue.sum, addend: epilogue.addend }, absorbed: epilogue.absorbed }, n.id, reads);
      continue;
    }
    if (contraction) {
      after(contraction, n.id, reads);
      continue;
    }
    const kind = n.op.kind;
    if (kind === 'input' || kind === 'param' || isConstNode(n)) {
      groups.push({ kind: 'node', node: n.id });
      continue;
    }
    const fitsUniform = !uniform[n.id] || numel(n.shape) <= o.maxUniformFloats;
    // values of the gradient arena are written, never read, by regions
    const readsGrads = n.inputs.some((i) => grads.has(i));
    const held = (id: number): Holding => (open?.modes.get(id) as Holding | undefined) ?? 'leaf';
    const smallBlocks = tokens > 0 && numel(n.shape) <= o.maxBlockFloats * tokens;
    const modeIn = (h: (id: number) => Holding) => (tokens > 0 && fitsUniform && !readsGrads && (uniform[n.id] || smallBlocks) ? memberMode(n, g, tokens, (id) => uniform[id], h) : null);
    let mode = modeIn(held);
    // a node that reads the open region's blocks across blocks can still start the next region
    if (!mode && open && n.inputs.some((i) => openIds.has(i)) && modeIn(() => 'leaf')) {
      close();
      mode = modeIn(() => 'leaf');
    }
    if (mode && !grads.has(n.id) && !(kind === 'reshape' && !open)) {
      const fits = (r: Region): boolean => {
        const c = cost(r, n);
        return c.bindings <= o.maxStorageBuffers && c.floats <= o.maxPrivateFloats;
      };
      if (open && !fits(open)) close();
      const r: Region = open ?? { kind: 'region', members: [], outputs: [], leaves: [], tokens, modes: new Map() };
      if (fits(r)) {
        open = r;
        r.members.push(n.id);
        r.modes.set(n.id, mode);
        openIds.add(n.id);
        continue;
      }
      // too many buffers even alone: its own kernel
    }
    const seen = attentionViews.get(n.id);
    if (open && n.inputs.some((i, k) => openIds.has(seen?.get(k)?.node ?? i))) close();
    if (seen) {
      const first = [...new Set(n.inputs.filter((i, k) => seen.has(k) && absorbed.has(i) && !viewed.has(i)))];
      for (const i of first) viewed.add(i);
      groups.push({ kind: 'node', node: n.id, views: seen, absorbed: first });
    } else groups.push({ kind: 'node', node: n.id });
    if (kind === 'reshape') views.add(n.id);
  }
  close();
  return groups;
}

/**
 * Sums over batch axes of a product read by nothing else (weight gradients), keyed by the sum;
 * an operand that is a transpose read only by the product becomes a view of its input. So do
 * products that sum over at least `tokens` terms with a transposed operand (a weight gradient
 * written as one matrix product, dW = G Xᵀ over all tokens), keyed by the product: the
 * transpose is never written (2-D products whose inner dimension is at least `tokens` and 16
 * times the longer side: the contraction kernel splits the inner dimension over its threads).
 */
export function findContractions(g: Graph, consumers: number[][], kept: Set<number>, live: readonly boolean[], tokens = 0): Map<number, Contraction> {
  const out = new Map<number, Contraction>();
  const view = (id: number, absorbed: number[]): OperandView => {
    const x = g.nodes[id];
    if (x.op.kind === 'permute' && consumers[id].length === 1 && !kept.has(id)) {
      const src = g.nodes[x.inputs[0]];
      const st = strides(src.shape);
      absorbed.push(id);
      return { node: src.id, shape: [...x.shape], strides: x.op.perm.map((p) => st[p]) };
    }
    return { node: id, shape: [...x.shape], strides: strides(x.shape) };
  };
  for (const n of g.nodes) {
    if (n.op.kind !== 'sum' || !live[n.id]) continue;
    const p = g.nodes[n.inputs[0]];
    const axes = n.op.axes.filter((a) => p.shape[a] !== 1);
    if (p.op.kind !== 'matmul' || kept.has(p.id) || consumers[p.id].length !== 1 || axes.length === 0) continue;
    if (axes.some((a) => a >= p.shape.length - 2) || axes.length !== n.op.axes.length) continue;
    if (p.inputs.some((i) => g.nodes[i].dtype === 'i32')) continue;
    const absorbed = [p.id];
    const a = view(p.inputs[0], absorbed);
    const b = view(p.inputs[1], absorbed);
    out.set(n.id, { kind: 'contract', node: n.id, product: p.id, summed: axes, a, b, absorbed });
  }
  const taken = new Set([...out.values()].flatMap((c) => c.absorbed));
  const transposed = (id: number) => g.nodes[id].op.kind === 'permute' && consumers[id].length === 1 && !kept.has(id) && !taken.has(id);
  for (const p of g.nodes) {
    if (p.op.kind !== 'matmul' || !live[p.id] || taken.has(p.id) || tokens === 0) continue;
    const [ai, bi] = p.inputs;
    const [as, bs] = [g.nodes[ai].shape, g.nodes[bi].shape];
    // a weight gradient's shape: no batch axes, a long inner dimension over all the tokens
    const k = as[as.length - 1];
    if (as.length !== 2 || bs.length !== 2 || k < tokens || k < 16 * Math.max(as[0], bs[1]) || !(transposed(ai) || transposed(bi))) continue;
    if (p.inputs.some((i) => g.nodes[i].dtype === 'i32')) continue;
    const absorbed: number[] = [];
    const a = view(ai, absorbed);
    const b = view(bi, absorbed);
    for (const x of absorbed) taken.add(x);
    out.set(p.id, { kind: 'contract', node: p.id, product: p.id, summed: [], a, b, absorbed });
  }
  // add(c, y) of c's elements: the contraction stores c + y; `shape` keeps the node whose
  // shape the kernel computes. Only when y comes first: the kernel runs where the add is, and
  // a contraction moved past a later addend keeps its operands alive until then (the first
  // two uses of a weight shared by T iterations: a whole iteration of backward, 2.7x the
  // activation memory of the full preset with checkpointing)
  for (const [id, c] of [...out]) {
    const acc = accumulatingAdd(g, consumers, kept, id);
    if (!acc || out.has(acc.add) || acc.addend > id) continue;
    out.delete(id);
    out.set(acc.add, { ...c, node: acc.add, shape: c.shape ?? id, addend: acc.addend, absorbed: [...c.absorbed, ...acc.absorbed] });
  }
  return out;
}

/**
 * The add that accumulates `id` into a gradient: `id`'s one reader, directly or through a
 * reshape read by nothing else, is add(id, y) over the same elements. Returns the add, y, and
 * what a kernel computing id + y in one go leaves uncomputed (id and the reshape).
 */
function accumulatingAdd(g: Graph, consumers: number[][], kept: Set<number>, id: number): { add: number; addend: number; absorbed: number[] } | null {
  if (kept.has(id) || consumers[id].length !== 1) return null;
  let via = id;
  let user = g.nodes[consumers[id][0]];
  if (user.op.kind === 'reshape' && consumers[user.id].length === 1 && !kept.has(user.id)) {
    via = user.id;
    user = g.nodes[consumers[user.id][0]];
  }
  if (user.op.kind !== 'binary' || user.op.fn !== 'add') return null;
  const y = user.inputs[0] === via ? user.inputs[1] : user.inputs[0];
  const n = numel(g.nodes[id].shape);
  if (y === via || numel(g.nodes[y].shape) !== n || numel(user.shape) !== n || g.nodes[y].dtype === 'i32') return null;
  return { add: user.id, addend: y, absorbed: via === id ? [id] : [id, via] };
}

/**
 * Sums across tokens (never region members) whose one reader, directly or through a reshape,
 * is an add of the same elements: the sum's kernel stores sum + addend. Keyed by the add.
 */
function findSumEpilogues(g: Graph, consumers: number[][], kept: Set<number>, live: readonly boolean[], tokens: number, taken: Set<number>): Map<number, SumEpilogue & { absorbed: number[] }> {
  const out = new Map<number, SumEpilogue & { absorbed: number[] }>();
  for (const n of g.nodes) {
    if (n.op.kind !== 'sum' || !live[n.id] || taken.has(n.id) || numel(n.shape) >= tokens) continue;
    const acc = accumulatingAdd(g, consumers, kept, n.id);
    if (!acc || out.has(acc.add) || taken.has(acc.add) || acc.addend > n.id) continue; // as for contractions: never past a later addend
    out.set(acc.add, { sum: n.id, addend: acc.addend, absorbed: acc.absorbed });
  }
  return out;
}

/** Inputs of the attention parts read row by row, which may be strided views (Q, K, V, dO; not lse, D). */
const ATTENTION_VIEWED: Record<string, number[]> = { lse: [0, 1], out: [0, 1, 2], dq: [0, 1, 2, 4], dk: [0, 1, 2, 4], dv: [0, 1, 3] };

/**
 * Rows up to this long are read in place. Wider ones are copied by the permute first: on
 * lavapipe, the full preset's attention (rows of 128 floats, 1024 apart) ran 2.5x slower
 * through views (out: 5 -> 13 ms a call) than from the permuted copy.
 */
const MAX_VIEW_ROW = 32;

/** A permute keeping the last axis last that attention nodes read, each at positions that may be views. */
function attentionReads(g: Graph, consumers: number[][], id: number): boolean {
  const p = g.nodes[id];
  if (p.op.kind !== 'permute' || p.op.perm[p.op.perm.length - 1] !== p.op.perm.length - 1) return false;
  if ((p.shape.at(-1) as number) > MAX_VIEW_ROW) return false;
  const readers = consumers[id].filter((c) => g.nodes[c].op.kind === 'attention');
  return readers.length > 0 && readers.every((c) => g.nodes[c].inputs.every((x, k) => x !== id || ATTENTION_VIEWED[(g.nodes[c].op as OpOf<'attention'>).part].includes(k)));
}

/**
 * Attention nodes' operands that are permutes of [..., L, w] rows (the heads split off the
 * token matrices): read in place, through strides, so that the permute is never written for
 * them (it is not computed at all when only attention nodes read it). Keyed by attention
 * node, then input position.
 */
export function findAttentionViews(g: Graph, consumers: number[][], kept: Set<number>, live: readonly boolean[]): Map<number, Map<number, OperandView>> {
  const out = new Map<number, Map<number, OperandView>>();
  for (const n of g.nodes) {
    if (n.op.kind !== 'attention' || !live[n.id]) continue;
    n.inputs.forEach((id, k) => {
      if (kept.has(id) || !attentionReads(g, consumers, id)) return;
      const p = g.nodes[id] as Node & { op: { kind: 'permute'; perm: number[] } };
      const st = strides(g.nodes[p.inputs[0]].shape);
      const m = out.get(n.id) ?? new Map<number, OperandView>();
      m.set(k, { node: p.inputs[0], shape: [...p.shape], strides: p.op.perm.map((a) => st[a]) });
      out.set(n.id, m);
    });
  }
  return out;
}

/** One line per group, for `--dump-after fuse`. */
export function describeGroups(g: Graph, groups: Group[]): string {
  const lines: string[] = [];
  let regions = 0;
  let kernels = 0;
  for (const gr of groups) {
    if (gr.kind === 'contract') {
      kernels++;
      const n = g.nodes[gr.node];
      lines.push(`%${n.id} contraction ${n.name}: sum over axes [${gr.summed.join(', ')}] of %${gr.product} = %${gr.a.node} @ %${gr.b.node} (not computed: ${gr.absorbed.map((x) => `%${x}`).join(' ')})`);
    } else if (gr.kind === 'node') {
      const n = g.nodes[gr.node];
      if (n.op.kind === 'input' || n.op.kind === 'param' || n.op.kind === 'reshape') continue;
      kernels++;
      lines.push(`%${n.id} ${n.op.kind} ${n.name}`);
    } else {
      regions++;
      kernels++;
      const first = g.nodes[gr.members[0]];
      const last = g.nodes[gr.members[gr.members.length - 1]];
      lines.push(`region of ${gr.members.length} nodes (%${first.id} ${first.name} .. %${last.id} ${last.name}): reads ${gr.leaves.map((l) => `%${l}`).join(' ')}; writes ${gr.outputs.map((x) => `%${x}`).join(' ')}`);
    }
  }
  return [`${kernels} kernels, ${regions} of them fused regions`, ...lines].join('\n');
}
