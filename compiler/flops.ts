// FLOP count of a program, read off the IR: one rule per op kind (a table keyed by OpKind like
// the other passes, so a new primitive does not compile until it has a rule). The convention
// is the usual one for benchmarks: a multiply-add is 2 FLOPs, every other arithmetic operation
// (a transcendental function included) is 1, and moving data (reshape, permute, slice, gather,
// expand, masks) is free. Only the nodes the program computes count: those the loss, the
// logits, the observations and the gradients need (the liveness of compiler/plan.ts).
// Region fusion changes how many dispatches a step takes, never its FLOPs. The attention pass
// (compiler/attention.ts) does change them: its kernels skip the masked half of the scores and
// recompute them in the backward pass; `npm run bench` therefore counts the model's FLOPs on
// the graph of primitives (fusion off) for every row.
import { numel, type Graph, type Node, type OpKind, type OpOf } from './ir.ts';

type FlopRule<K extends OpKind> = (op: OpOf<K>, node: Node, inputs: Node[]) => number;

const free = (): number => 0;
/** 1 per output element */
const perOut = (_op: unknown, n: Node): number => numel(n.shape);
/** 1 per element of the first input */
const perIn = (_op: unknown, _n: Node, ins: Node[]): number => numel(ins[0].shape);

/**
 * FLOPs per element of the softmax over a row: max, subtract, exp, sum, divide.
 * Cross-entropy of a row of logits: max, subtract, exp, sum (the log and the pick are per row).
 */
export const SOFTMAX_FLOPS_PER_ELEMENT = 5;
export const CROSS_ENTROPY_FLOPS_PER_LOGIT = 4;

export const flopRules: { [K in OpKind]: FlopRule<K> } = {
  input: free,
  param: free,
  fill: free, // constants: computed once, at setup
  eye: free,
  unary: perOut,
  affine: (op, n) => numel(n.shape) * ((op.scale !== 1 ? 1 : 0) + (op.shift !== 0 ? 1 : 0)), // x·1 + 0 is a copy
  clamp: perOut,
  inrange: perOut,
  binary: perOut,
  // [..., m, k] @ [..., k, n]: a multiply-add per (output element, k)
  matmul: (_op, n, [a]) => 2 * numel(n.shape) * a.shape[a.shape.length - 1],
  // reducing N elements to M takes N - M additions
  sum: (_op, n, [x]) => numel(x.shape) - numel(n.shape),
  expand: free,
  reshape: free,
  permute: free,
  slice: free,
  pad: free,
  gather: free,
  scatter_add: perIn, // an addition per gathered element
  onehot: free,
  causal_mask: free, // a select
  softmax: (_op, n) => SOFTMAX_FLOPS_PER_ELEMENT * numel(n.shape),
  dropout: perOut, // the scale; the mask's hash is integer work
  attention: (op, n, [q, , v]) => {
    const L = q.shape[q.shape.length - 2];
    const e = q.shape[q.shape.length - 1];
    const f = op.part === 'lse' ? 0 : op.part === 'out' || op.part === 'dv' ? n.shape[n.shape.length - 1] : v.shape[v.shape.length - 1];
    const pairs = (numel(q.shape) / (L * e)) * ((L * (L + 1)) / 2); // the causal triangle
    const perPair = { lse: 2 * e + 3, out: 2 * e + 2 + 2 * f, dq: 4 * e + 2 * f + 4, dk: 4 * e + 2 * f + 4, dv: 2 * e + 2 + 2 * f }[op.part];
    return pairs * perPair;
  },
  cross_entropy: (_op, _n, [logits]) => {
    const v = logits.shape[logits.shape.length - 1];
    const rows = numel(logits.shape) / v;
    return CROSS_ENTROPY_FLOPS_PER_LOGIT * numel(logits.shape) + 3 * rows; // + log, pick, mean
  },
};

/** FLOPs of one node. */
export function nodeFlops(g: Graph, n: Node): number {
  const rule = flopRules[n.op.kind] as FlopRule<OpKind>;
  return rule(n.op, n, n.inputs.map((i) => g.nodes[i]));
}

/**
 * FLOPs per parameter of the optimizer step: the squared-gradient sum of the global norm (2)
 * and AdamW with the clip folded in (compiler/wgsl/optimizer.ts): clip scale 1, first moment 3,
 * second moment 4, bias corrections 2, sqrt + eps + divide 3, weight decay 2, update 2.
 */
export const OPTIMIZER_FLOPS_PER_PARAM = 2 + 17;

export interface FlopCount {
  /** forward nodes (before graph.backwardStart) */
  forward: number;
  /** backward nodes (0 for an undifferentiated graph) */
  backward: number;
  /** the optimizer over every parameter (0 for an undifferentiated graph) */
  optimizer: number;
  /** forward + backward + optimizer: the FLOPs of one training step */
  total: number;
  /** total FLOPs of the live nodes, by op kind (forward and backward) */
  byKind: Partial<Record<OpKind, number>>;
  parameters: number;
}

/** The FLOPs of one training step (for an undifferentiated graph: of one forward pass). */
export function countFlops(g: Graph): FlopCount {
  const keep = [g.outputs.loss, g.outputs.logits, ...Object.values(g.observations).flat(), ...(g.grads ?? [])].filter(
    (id) => id !== undefined,
  );
  const live = new Array<boolean>(g.nodes.length).fill(false);
  for (const id of keep) live[id] = true;
  for (let i = g.nodes.length - 1; i >= 0; i--) if (live[i]) for (const j of g.nodes[i].inputs) live[j] = true;
  const nFwd = g.backwardStart ?? g.nodes.length;
  let forward = 0;
  let backward = 0;
  const byKind: Partial<Record<OpKind, number>> = {};
  for (const n of g.nodes) {
    if (!live[n.id]) continue;
    const f = nodeFlops(g, n);
    if (n.id < nFwd) forward += f;
    else backward += f;
    if (f) byKind[n.op.kind] = (byKind[n.op.kind] ?? 0) + f;
  }
  const parameters = g.params.reduce((a, p) => a + numel(p.shape), 0);
  const optimizer = g.grads ? OPTIMIZER_FLOPS_PER_PARAM * parameters : 0;
  return { forward, backward, optimizer, total: forward + backward + optimizer, byKind, parameters };
}
