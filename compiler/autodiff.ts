// Reverse-mode differentiation: one VJP rule per op kind, each written with the same
// primitives as the forward graph (so every backend that runs the forward runs the backward).
// Gradients accumulate by addition where a value is used more than once — e.g. the weights of
// a block shared by all T iterations.
import type { GraphBuilder } from './builder.ts';
import { MtcError } from './diagnostics.ts';
import { reshapeRoot, type Node, type OpKind, type OpOf } from './ir.ts';

/** Gradient contributions to a node's inputs: [input position, gradient node id]. */
type Contribs = Array<[number, number]>;
type VjpRule<K extends OpKind> = (b: GraphBuilder, node: Node & { op: OpOf<K> }, g: number) => Contribs;

const none = (): Contribs => [];

/** Sum a gradient over the axes that broadcasting stretched, back to `shape`. */
export function reduceTo(b: GraphBuilder, g: number, shape: readonly number[]): number {
  const gs = b.shape(g);
  if (gs.length === shape.length && gs.every((d, i) => d === shape[i])) return g;
  const lead = gs.length - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < gs.length; i++) {
    const t = i < lead ? undefined : shape[i - lead];
    if (t === undefined || (t === 1 && gs[i] !== 1)) axes.push(i);
  }
  const s = axes.length ? b.sum(g, axes) : g;
  const ss = b.shape(s);
  return ss.length === shape.length && ss.every((d, i) => d === shape[i]) ? s : b.reshape(s, [...shape]);
}

const unaryVjp: VjpRule<'unary'> = (b, n, g) => {
  const x = n.inputs[0];
  const y = n.id;
  switch (n.op.fn) {
    case 'neg':
      return [[0, b.unary('neg', g)]];
    case 'exp':
      return [[0, b.binary('mul', g, y)]];
    case 'log':
      return [[0, b.binary('div', g, x)]];
    case 'sqrt':
      return [[0, b.affine(b.binary('div', g, y), 0.5)]];
    case 'rsqrt': // d/dx x^-1/2 = -1/2 y^3
      return [[0, b.affine(b.binary('mul', g, b.binary('mul', y, b.unary('square', y))), -0.5)]];
    case 'recip':
      return [[0, b.affine(b.binary('mul', g, b.unary('square', y)), -1)]];
    case 'square':
      return [[0, b.affine(b.binary('mul', g, x), 2)]];
    case 'sigmoid': // y (1 - y)
      return [[0, b.binary('mul', g, b.binary('sub', y, b.unary('square', y)))]];
    case 'silu':
      return [[0, b.binary('mul', g, b.unary('silu_grad', x))]];
    case 'relu':
      return [[0, b.binary('mul', g, b.unary('step', x))]];
    case 'tanh':
      return [[0, b.binary('mul', g, b.affine(b.unary('square', y), -1, 1))]];
    case 'step':
      return [];
    case 'silu_grad':
      throw new MtcError('second derivatives are not supported (silu_grad has no gradient rule)');
  }
};

export const vjpRules: { [K in OpKind]: VjpRule<K> } = {
  input: none,
  param: none,
  fill: none,
  eye: none,
  onehot: none,
  inrange: none,
  unary: unaryVjp,
  affine: (b, n, g) => [[0, b.affine(g, n.op.scale, 0)]],
  clamp: (b, n, g) => [[0, b.binary('mul', g, b.node({ kind: 'inrange', lo: n.op.lo, hi: n.op.hi }, [n.inputs[0]]))]],
  binary: (b, n, g) => {
    const [x, y] = n.inputs;
    const sx = b.shape(x);
    const sy = b.shape(y);
    switch (n.op.fn) {
      case 'add':
        return [
          [0, reduceTo(b, g, sx)],
          [1, reduceTo(b, g, sy)],
        ];
      case 'sub':
        return [
          [0, reduceTo(b, g, sx)],
          [1, reduceTo(b, b.unary('neg', g), sy)],
        ];
      case 'mul':
        return [
          [0, reduceTo(b, b.binary('mul', g, y), sx)],
          [1, reduceTo(b, b.binary('mul', g, x), sy)],
        ];
      case 'div': {
        const gx = b.binary('div', g, y);
        return [
          [0, reduceTo(b, gx, sx)],
          [1, reduceTo(b, b.unary('neg', b.binary('mul', gx, n.id)), sy)],
        ];
      }
    }
  },
  matmul: (b, n, g) => {
    const [x, y] = n.inputs;
    return [
      [0, reduceTo(b, b.matmul(g, b.transpose(y)), b.shape(x))],
      [1, reduceTo(b, b.matmul(b.transpose(x), g), b.shape(y))],
    ];
  },
  sum: (b, n, g) => [[0, b.expand(g, b.shape(n.inputs[0]))]],
  expand: (b, n, g) => [[0, reduceTo(b, g, b.shape(n.inputs[0]))]],
  reshape: (b, n, g) => [[0, b.reshape(g, b.shape(n.inputs[0]))]],
  permute: (b, n, g) => {
    const inv = new Array<number>(n.op.perm.length);
    n.op.perm.forEach((p, i) => (inv[p] = i));
    return [[0, b.permute(g, inv)]];
  },
  slice: (b, n, g) => [[0, b.node({ kind: 'pad', axis: n.op.axis, start: n.op.start }, [g], b.shape(n.inputs[0]))]],
  pad: (b, n, g) => [[0, b.node({ kind: 'slice', axis: n.op.axis, start: n.op.start }, [g], b.shape(n.inputs[0]))]],
  gather: (b, n, g) => [[0, b.node({ kind: 'scatter_add' }, [g, n.inputs[1]], b.shape(n.inputs[0]))]],
  scatter_add: (b, n, g) => [[0, b.node({ kind: 'gather' }, [g, n.inputs[1]])]],
  causal_mask: (b, _n, g) => [[0, b.node({ kind: 'causal_mask', fill: 0 }, [g])]],
  softmax: (b, n, g) => {
    const y = n.id;
    const last = b.shape(y).length - 1;
    const dot = b.sum(b.binary('mul', g, y), [last]);
    return [[0, b.binary('mul', y, b.binary('sub', g, dot))]];
  },
  dropout: (b, n, g) => [[0, b.node({ kind: 'dropout', p: n.op.p, key: n.op.key }, [g])]],
  // The whole softmax derivative goes to Q and K (compiler/ir.ts): lse, a function of them
  // that 'out' reads, takes none, and the parts other than 'out' are backward-only.
  attention: (b, n, g) => {
    if (n.op.part !== 'out') return [];
    const [q, k, v, lse] = n.inputs;
    const last = b.shape(n.id).length - 1;
    const d = b.sum(b.binary('mul', g, n.id), [last]);
    const part = (p: 'dq' | 'dk' | 'dv', ins: number[]) => b.node({ ...n.op, part: p }, ins);
    return [
      [0, part('dq', [q, k, v, lse, g, d])],
      [1, part('dk', [q, k, v, lse, g, d])],
      [2, part('dv', [q, k, lse, g])],
    ];
  },
  cross_entropy: (b, n, g) => {
    const [logits, targets] = n.inputs;
    const ls = b.shape(logits);
    const rows = ls.slice(0, -1).reduce((a, c) => a * c, 1);
    const p = b.node({ kind: 'softmax' }, [logits]);
    const oh = b.node({ kind: 'onehot' }, [targets], ls);
    const d = b.binary('mul', b.binary('sub', p, oh), g);
    return [[0, b.affine(d, 1 / rows)]];
  },
};

/**
 * Appends the backward graph of `loss` to the builder's graph and sets graph.grads:
 * for every parameter, a node that holds its gradient and is used by nothing else
 * (so the scheduler can place it straight into the gradient buffer).
 */
export function differentiate(b: GraphBuilder, loss: number): void {
  const g = b.graph;
  const nFwd = g.nodes.length;
  const needs = new Array<boolean>(nFwd).fill(false);
  for (const n of g.nodes) needs[n.id] = n.op.kind === 'param' || n.inputs.some((i) => needs[i]);
  const grads = new Map<number, number>();
  g.backwardStart = nFwd;
  b.loc = g.nodes[loss].loc;
  b.scope = 'loss.grad';
  grads.set(loss, b.fill(1, []));
  for (let id = nFwd - 1; id >= 0; id--) {
    const gid = grads.get(id);
    const node = g.nodes[id];
    if (gid === undefined || !needs[id] || node.op.kind === 'param') continue;
    b.scope = `${node.name}.grad`;
    b.loc = node.loc;
    const rule = vjpRules[node.op.kind] as VjpRule<OpKind>;
    for (const [pos, contrib] of rule(b, node as never, gid)) {
      const target = node.inputs[pos];
      if (!needs[target]) continue;
      const prev = grads.get(target);
      if (prev === undefined) grads.set(target, contrib);
      else {
        b.scope = `${g.nodes[target].name}.grad`;
        grads.set(target, b.binary('add', prev, contrib));
      }
    }
  }
  // Each parameter's gradient must be a node of its own: copy where it is shared or an alias.
  const uses = new Map<number, number>();
  for (const n of g.nodes) for (const i of n.inputs) uses.set(i, (uses.get(i) ?? 0) + 1);
  const taken = new Set<number>();
  g.grads = g.params.map((p, index) => {
    const pnode = g.nodes.find((n) => n.op.kind === 'param' && n.op.index === index) as Node;
    b.scope = `${p.path}.grad`;
    b.loc = p.loc;
    let gid = grads.get(pnode.id);
    if (gid === undefined) return b.fill(0, [...p.shape]);
    const n = g.nodes[gid];
    // a reshape of a backward value read by nothing else is a view of memory the gradient can
    // own: the producer writes the gradient arena directly (reshapeRoot, compiler/ir.ts)
    const root = reshapeRoot(g, gid);
    const ownsRoot = root !== gid && root >= nFwd && (uses.get(root) ?? 0) === 1 && !taken.has(root) && g.nodes[root].op.kind !== 'param';
    if (taken.has(gid) || (uses.get(gid) ?? 0) > 0 || (n.op.kind === 'reshape' && !ownsRoot) || gid < nFwd) gid = b.affine(gid, 1, 0);
    taken.add(gid);
    taken.add(reshapeRoot(g, gid));
    return gid;
  });
}
