// The tensor IR: a graph of primitive ops with static shapes, in creation (topological) order.
// The compiler knows only these generic primitives; every model-specific layer is written
// in .mt. Each transform (shapes, VJP, interpreter, WGSL) is a table keyed by OpKind, so a new
// primitive does not compile until every table handles it.
import type { SrcLoc } from './diagnostics.ts';

/** f16 only as the storage of forward activations, set by compiler/precision.ts: kernels compute in f32. */
export type DType = 'f32' | 'i32' | 'f16';
export type Shape = readonly number[];

export type UnaryFn =
  | 'neg'
  | 'exp'
  | 'log'
  | 'sqrt'
  | 'rsqrt'
  | 'recip'
  | 'square'
  | 'sigmoid'
  | 'silu'
  | 'silu_grad' // d/dx silu(x) = s(x)(1 + x(1 - s(x)))
  | 'relu'
  | 'step' // x > 0 ? 1 : 0 (relu's derivative)
  | 'tanh';

export type BinaryFn = 'add' | 'sub' | 'mul' | 'div';

/** Initialiser of a parameter: the sum of its terms (`eye + normal(0.02)`). */
export type InitTerm =
  | { kind: 'const'; value: number }
  | { kind: 'eye' } // identity on the last two axes
  | { kind: 'normal'; std: number }
  | { kind: 'uniform'; bound: number }; // U(-bound, bound)

export interface ParamInfo {
  path: string; // dotted source path, e.g. "blocks.0.attn.q.A"
  shape: number[];
  init: InitTerm[];
  loc?: SrcLoc;
}

/** The ops. Shapes of outputs are on the node; attributes needed to compute are here. */
export type Op =
  /** Host-provided input (tokens, targets), i32. */
  | { kind: 'input'; name: string }
  /** A trainable parameter; index into Graph.params. */
  | { kind: 'param'; index: number }
  /** A tensor of one value. */
  | { kind: 'fill'; value: number }
  /** Identity on the last two axes (node.shape = [..., n, n]). */
  | { kind: 'eye' }
  | { kind: 'unary'; fn: UnaryFn }
  /** scale * x + shift */
  | { kind: 'affine'; scale: number; shift: number }
  /** min(max(x, lo), hi) */
  | { kind: 'clamp'; lo: number; hi: number }
  /** 1 where lo <= x <= hi else 0 (the clamp's derivative) */
  | { kind: 'inrange'; lo: number; hi: number }
  /** Elementwise with numpy broadcasting of both inputs to node.shape. */
  | { kind: 'binary'; fn: BinaryFn }
  /** [...a, m, k] @ [...b, k, n] -> [...broadcast(a, b), m, n]. Rank ≥ 2 both. */
  | { kind: 'matmul' }
  /** Sum over axes (non-negative, sorted), keeping them as size 1. */
  | { kind: 'sum'; axes: number[] }
  /** Broadcast the input to node.shape (numpy rules: align right, size-1 axes stretch). */
  | { kind: 'expand' }
  /** Same elements, row-major, new shape. */
  | { kind: 'reshape' }
  /** out.shape[i] = in.shape[perm[i]] */
  | { kind: 'permute'; perm: number[] }
  /** out = in[..., start : start + node.shape[axis], ...] along axis. */
  | { kind: 'slice'; axis: number; start: number }
  /** Inverse of slice: zeros of node.shape with the input placed at `start` along axis. */
  | { kind: 'pad'; axis: number; start: number }
  /** table [V, ...rest], idx i32 [...I] -> [...I, ...rest]. Out-of-range indices give zeros. */
  | { kind: 'gather' }
  /** g [...I, ...rest], idx i32 [...I] -> [V, ...rest] with V = node.shape[0]: row v sums g where idx == v. */
  | { kind: 'scatter_add' }
  /** idx i32 [...I] -> f32 [...I, V], V = last of node.shape. */
  | { kind: 'onehot' }
  /** x [..., L, L]: entries with column > row become `fill` (-Infinity forward, 0 in gradients). */
  | { kind: 'causal_mask'; fill: number }
  /** Softmax over the last axis. */
  | { kind: 'softmax' }
  /**
   * Inverted dropout: keep with probability 1-p and scale by 1/(1-p). The mask is
   * dropoutKeep(seed, step, key, flatIndex, p) (compiler/rng.ts), identical on every backend;
   * the identity when the program runs with training off.
   */
  | { kind: 'dropout'; p: number; key: number }
  /** logits [..., V], targets i32 [...] -> [] mean over rows of -log softmax(logits)[target]. */
  | { kind: 'cross_entropy' }
  /**
   * Causal attention without its [..., L, L] scores (compiler/attention.ts builds it from
   * dropout(softmax(causal_mask(scale · Q Kᵀ)), p) @ V). Q, K [..., L, e], V [..., L, f];
   * P_ij = exp(scale · Q_i·K_j − lse_i) for j ≤ i (0 above the diagonal), A = dropout(P) with
   * the mask of the scores' flat index (i, j), as the dropout op draws it. The parts:
   *   lse (Q, K) -> [..., L, 1]                 log Σ_j exp(scale · Q_i·K_j), an online softmax
   *   out (Q, K, V, lse) -> [..., L, f]         A V
   *   dq  (Q, K, V, lse, dO, D) -> [..., L, e]  scale Σ_j dS_ij K_j
   *   dk  (Q, K, V, lse, dO, D) -> [..., L, e]  scale Σ_i dS_ij Q_i
   *   dv  (Q, K, lse, dO) -> [..., L, f]        Σ_i A_ij dO_i
   * with D_i = dO_i·O_i and dS_ij = P_ij (dropout'(dO_i·V_j) − D_i).
   */
  | { kind: 'attention'; part: AttentionPart; scale: number; p: number; key: number };

export type AttentionPart = 'lse' | 'out' | 'dq' | 'dk' | 'dv';

export type OpKind = Op['kind'];
export type OpOf<K extends OpKind> = Extract<Op, { kind: K }>;

export interface Node {
  id: number;
  op: Op;
  inputs: number[];
  shape: number[];
  dtype: DType;
  /** Stable name derived from the source path, e.g. "blocks.0.attn.q.matmul1". */
  name: string;
  loc?: SrcLoc;
}

export interface Graph {
  nodes: Node[];
  params: ParamInfo[];
  /** Host inputs by name (node ids): "tokens", "targets". */
  inputs: Record<string, number>;
  /** Named outputs (node ids): "loss", "logits". */
  outputs: Record<string, number>;
  /** Observation points: name -> node ids, one per iteration of the enclosing repeat. */
  observations: Record<string, number[]>;
  /** Paths of the items of layer arrays (`blocks.0`, `blocks.1`, ...): the calls gradient checkpointing recomputes. */
  arrayItems?: string[];
  /** After autodiff: param index -> node id of its gradient. */
  grads?: number[];
  /** After autodiff: id of the first backward node (forward nodes come before it). */
  backwardStart?: number;
}

export const numel = (shape: Shape): number => shape.reduce((a, b) => a * b, 1);

/**
 * The value a chain of reshapes starts from (`id` itself when it is no reshape): a reshape is
 * a view of its input's memory. A gradient that is such a chain (autodiff allows that only
 * over a backward value read by nothing else) has its root write the gradient arena.
 */
export function reshapeRoot(g: Graph, id: number): number {
  while (g.nodes[id].op.kind === 'reshape') id = g.nodes[id].inputs[0];
  return id;
}

/** Row-major strides. */
export function strides(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** Numpy broadcast of two shapes, or null when they do not broadcast. */
export function broadcastShapes(a: Shape, b: Shape): number[] | null {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return null;
    out[i] = da === 1 ? db : da;
  }
  return out;
}

export const fmtShape = (s: Shape): string => `[${s.join(', ')}]`;
