// Pass `attention`: causal attention as one op. The pattern
//
//   S = matmul(Q, permute(K) swapping the last two axes)
//   A = dropout(softmax(causal_mask(affine(S, scale, 0), -inf)), p)     (affine and dropout optional)
//   O = matmul(A, V)
//
// becomes O = attention.out(Q, K, V, attention.lse(Q, K)) (compiler/ir.ts), whose kernels
// (compiler/wgsl/attention.ts) never write the [..., L, L] scores; autodiff then gives it the
// backward parts dq, dk, dv. It runs before autodiff, on the forward graph, with fusion on
// (`--no-fuse` keeps one kernel per primitive). Matched only where every intermediate has
// the next step as its one reader, so nothing else sees the scores.
//
// The two new nodes take the places (ids) of the causal mask and of the second matmul, which
// keeps the graph in topological order; the nodes they replace are then removed and the rest
// renumbered (the graph has no gradients yet).
import type { Graph, Node, OpOf } from './ir.ts';

/** Rewrites every match in place; returns how many there were. */
export function fuseAttention(g: Graph): number {
  const readers = new Array<number>(g.nodes.length).fill(0);
  for (const n of g.nodes) for (const i of n.inputs) readers[i]++;
  const held = new Set<number>([...Object.values(g.outputs), ...Object.values(g.observations).flat()]);
  const only = (id: number): boolean => readers[id] === 1 && !held.has(id);
  const perScope = new Map<string, number>();
  const removed = new Set<number>();
  let count = 0;
  for (const n of [...g.nodes]) {
    const m = match(g, n, only);
    if (!m) continue;
    const scope = n.name.includes('.') ? n.name.slice(0, n.name.lastIndexOf('.')) : '';
    const k = perScope.get(scope) ?? 0;
    perScope.set(scope, k + 1);
    const prefix = scope ? `${scope}.` : '';
    const lse = g.nodes[m.mask];
    const rows = g.nodes[m.q].shape.slice(0, -1);
    const attrs = { scale: m.scale, p: m.p, key: m.key };
    for (const dead of m.replaced) for (const i of g.nodes[dead].inputs) readers[i]--;
    g.nodes[m.mask] = { id: m.mask, op: { kind: 'attention', part: 'lse', ...attrs }, inputs: [m.q, m.k], shape: [...rows, 1], dtype: 'f32', name: `${prefix}attention_lse${k}`, loc: lse.loc };
    g.nodes[n.id] = { id: n.id, op: { kind: 'attention', part: 'out', ...attrs }, inputs: [m.q, m.k, m.v, m.mask], shape: [...n.shape], dtype: 'f32', name: `${prefix}attention${k}`, loc: n.loc };
    for (const id of [m.mask, n.id]) for (const i of g.nodes[id].inputs) readers[i]++;
    for (const id of m.replaced) if (id !== m.mask && id !== n.id) removed.add(id);
    count++;
  }
  if (removed.size) compact(g, removed);
  return count;
}

/** Drops the nodes of `removed` (read by none) and renumbers the rest in order. */
function compact(g: Graph, removed: Set<number>): void {
  const newId = new Array<number>(g.nodes.length).fill(-1);
  const kept = g.nodes.filter((n) => !removed.has(n.id));
  kept.forEach((n, i) => (newId[n.id] = i));
  const map = (id: number): number => {
    if (newId[id] < 0) throw new Error(`internal: attention pass removed node ${id}, which is still read`);
    return newId[id];
  };
  g.nodes = kept.map((n) => ({ ...n, id: newId[n.id], inputs: n.inputs.map(map) }));
  const remap = (r: Record<string, number>) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, map(v)]));
  g.inputs = remap(g.inputs);
  g.outputs = remap(g.outputs);
  g.observations = Object.fromEntries(Object.entries(g.observations).map(([k, v]) => [k, v.map(map)]));
}

interface Match {
  q: number;
  k: number;
  v: number;
  /** the causal mask's id: the lse node takes it */
  mask: number;
  scale: number;
  p: number;
  key: number;
  /** nodes left without readers */
  replaced: number[];
}

function match(g: Graph, out: Node, only: (id: number) => boolean): Match | null {
  if (out.op.kind !== 'matmul') return null;
  const at = (id: number): Node => g.nodes[id];
  let a = at(out.inputs[0]);
  const v = out.inputs[1];
  const replaced: number[] = [];
  const step = (n: Node): boolean => {
    if (!only(n.id)) return false;
    replaced.push(n.id);
    return true;
  };
  let p = 0;
  let key = -1;
  if (a.op.kind === 'dropout') {
    if (!step(a)) return null;
    ({ p, key } = a.op);
    a = at(a.inputs[0]);
  }
  if (a.op.kind !== 'softmax' || !step(a)) return null;
  const mask = at(a.inputs[0]);
  if (mask.op.kind !== 'causal_mask' || mask.op.fill !== -Infinity || !only(mask.id)) return null;
  let s = at(mask.inputs[0]);
  let scale = 1;
  if (s.op.kind === 'affine') {
    if (s.op.shift !== 0 || !step(s)) return null;
    scale = s.op.scale;
    s = at(s.inputs[0]);
  }
  if (s.op.kind !== 'matmul' || !step(s)) return null;
  const [q, kt] = s.inputs.map(at);
  if (kt.op.kind !== 'permute' || !swapsLastTwo(kt.op) || !step(kt)) return null;
  const k = at(kt.inputs[0]);
  const same = (x: readonly number[], y: readonly number[]) => x.length === y.length && x.every((d, i) => d === y[i]);
  const vs = at(v).shape;
  // one slice per leading index: no broadcasting between Q, K and V
  if (q.dtype !== 'f32' || !same(q.shape, k.shape) || !same(vs.slice(0, -1), q.shape.slice(0, -1)) || q.shape.length < 2) return null;
  return { q: q.id, k: k.id, v, mask: mask.id, scale, p, key, replaced: [...replaced, out.id, mask.id] };
}

function swapsLastTwo(op: OpOf<'permute'>): boolean {
  const r = op.perm.length;
  return r >= 2 && op.perm.every((x, i) => (i < r - 2 ? x === i : i === r - 2 ? x === r - 1 : x === r - 2));
}
