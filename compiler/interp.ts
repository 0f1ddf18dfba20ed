// The reference interpreter: every op evaluated in float64, one rule per op kind. It is the
// oracle the WGSL kernels (compiler/wgsl/) and the generated host code are tested against,
// so it favours obviousness over speed. i32 tensors (token ids, targets) are held as float64
// values too; an index is used as Math.trunc of its value.
import { dropoutKeep } from './rng.ts';
import { numel, strides, type Graph, type Node, type OpKind, type OpOf, type Shape, type UnaryFn } from './ir.ts';

export interface InterpEnv {
  /** Parameter values, indexed like Graph.params, row-major. */
  params: ArrayLike<number>[];
  /** Host inputs by name (Graph.inputs), row-major; integers for i32 inputs. */
  inputs: Record<string, ArrayLike<number>>;
  /** Dropout is the identity when false. */
  training: boolean;
  seed: number;
  step: number;
}

type Rule<K extends OpKind> = (op: OpOf<K>, args: Float64Array[], node: Node, graph: Graph, env: InterpEnv) => Float64Array;

/**
 * Values of every node (index = node id), in order; only up to node `upto` (inclusive) if given.
 * With `keepOnly`, every other value is dropped once its last reader has run, so that large
 * models (the full preset) fit in memory; the result then holds only those nodes.
 */
export function interpret(graph: Graph, env: InterpEnv, upto?: number, keepOnly?: number[]): Float64Array[] {
  const last = upto ?? graph.nodes.length - 1;
  const values: Float64Array[] = [];
  const lastUse = new Int32Array(graph.nodes.length).fill(-1);
  if (keepOnly) for (const n of graph.nodes) if (n.id <= last) for (const i of n.inputs) lastUse[i] = n.id;
  const keep = new Set(keepOnly);
  for (const node of graph.nodes) {
    if (node.id > last) break;
    values[node.id] = evalNode(
      node,
      node.inputs.map((i) => values[i]),
      graph,
      env,
    );
    if (keepOnly) for (const i of node.inputs) if (lastUse[i] === node.id && !keep.has(i)) delete values[i];
  }
  return values;
}

/**
 * The values of the nodes `want`, computing only what they need when the nodes of `given`
 * take the values given instead of their own: the rest of a graph from a cut through it
 * (e.g. the output head from token matrices changed on the host). Returns want's values.
 */
export function interpretFrom(graph: Graph, env: InterpEnv, given: Map<number, ArrayLike<number>>, want: number[]): Float64Array[] {
  const needed = new Array<boolean>(graph.nodes.length).fill(false);
  for (const id of want) needed[id] = true;
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    if (needed[i] && !given.has(i)) for (const j of graph.nodes[i].inputs) needed[j] = true;
  }
  const values: Float64Array[] = [];
  for (const node of graph.nodes) {
    if (!needed[node.id]) continue;
    const g = given.get(node.id);
    if (g !== undefined) {
      if (g.length !== numel(node.shape)) throw new Error(`interp: value given for node ${node.id} has ${g.length} entries, its shape [${node.shape}] holds ${numel(node.shape)}`);
      values[node.id] = Float64Array.from(g);
    } else {
      values[node.id] = evalNode(node, node.inputs.map((i) => values[i]), graph, env);
    }
  }
  return want.map((id) => values[id]);
}

/** The value of one node from the values of its inputs. */
export function evalNode(node: Node, args: Float64Array[], graph: Graph, env: InterpEnv): Float64Array {
  const out = (rules[node.op.kind] as Rule<OpKind>)(node.op as never, args, node, graph, env);
  if (out.length !== numel(node.shape))
    throw new Error(`interp: node ${node.id} (${node.name}, ${node.op.kind}) produced ${out.length} values for shape [${node.shape}]`);
  return out;
}

const unaryFns: { [F in UnaryFn]: (x: number) => number } = {
  neg: (x) => -x,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  recip: (x) => 1 / x,
  square: (x) => x * x,
  sigmoid: sigmoid,
  silu: (x) => x * sigmoid(x),
  silu_grad: (x) => {
    const s = sigmoid(x);
    return s * (1 + x * (1 - s));
  },
  relu: (x) => (x > 0 ? x : 0),
  step: (x) => (x > 0 ? 1 : 0),
  tanh: Math.tanh,
};

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

const map = (a: Float64Array, f: (x: number, i: number) => number): Float64Array => {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = f(a[i], i);
  return out;
};

/** Strides of `shape` seen from the broadcast shape `to`: aligned right, 0 on stretched axes. */
export function broadcastStrides(shape: Shape, to: Shape): number[] {
  const s = strides(shape);
  return to.map((_, i) => {
    const j = i - (to.length - shape.length);
    return j < 0 || shape[j] === 1 ? 0 : s[j];
  });
}

/** For each flat index of `shape`, the offset given by `st` (one stride per axis). */
function offsets(shape: Shape, st: readonly number[]): Float64Array {
  const n = numel(shape);
  const out = new Float64Array(n);
  const coord = new Array<number>(shape.length).fill(0);
  let off = 0;
  for (let i = 0; i < n; i++) {
    out[i] = off;
    for (let ax = shape.length - 1; ax >= 0; ax--) {
      coord[ax]++;
      off += st[ax];
      if (coord[ax] < shape[ax]) break;
      off -= st[ax] * shape[ax];
      coord[ax] = 0;
    }
  }
  return out;
}

function broadcastTo(a: Float64Array, from: Shape, to: Shape): Float64Array {
  const off = offsets(to, broadcastStrides(from, to));
  return map(new Float64Array(off.length), (_, i) => a[off[i]]);
}

/** An index value as an integer row number, or -1 when outside [0, size). */
function rowOf(v: number, size: number): number {
  const r = Math.trunc(v);
  return r >= 0 && r < size ? r : -1;
}

const rules: { [K in OpKind]: Rule<K> } = {
  input: (op, _args, node, _graph, env) => {
    const v = env.inputs[op.name];
    if (!v) throw new Error(`interp: missing input "${op.name}"`);
    if (v.length !== numel(node.shape)) throw new Error(`interp: input "${op.name}" has ${v.length} values, shape [${node.shape}] needs ${numel(node.shape)}`);
    return Float64Array.from(v);
  },
  param: (op, _args, node, graph, env) => {
    const v = env.params[op.index];
    if (!v) throw new Error(`interp: missing parameter ${op.index} (${graph.params[op.index]?.path})`);
    if (v.length !== numel(node.shape)) throw new Error(`interp: parameter ${graph.params[op.index]?.path} has ${v.length} values, shape [${node.shape}] needs ${numel(node.shape)}`);
    return Float64Array.from(v);
  },
  fill: (op, _args, node) => new Float64Array(numel(node.shape)).fill(op.value),
  eye: (_op, _args, node) => {
    const n = node.shape[node.shape.length - 1];
    return map(new Float64Array(numel(node.shape)), (_, i) => (i % n === Math.floor(i / n) % n ? 1 : 0));
  },
  unary: (op, [a]) => map(a, unaryFns[op.fn]),
  affine: (op, [a]) => map(a, (x) => op.scale * x + op.shift),
  clamp: (op, [a]) => map(a, (x) => Math.min(Math.max(x, op.lo), op.hi)),
  inrange: (op, [a]) => map(a, (x) => (op.lo <= x && x <= op.hi ? 1 : 0)),
  binary: (op, [a, b], node, graph) => {
    const [na, nb] = node.inputs.map((i) => graph.nodes[i].shape);
    const oa = offsets(node.shape, broadcastStrides(na, node.shape));
    const ob = offsets(node.shape, broadcastStrides(nb, node.shape));
    const f = { add: (x: number, y: number) => x + y, sub: (x: number, y: number) => x - y, mul: (x: number, y: number) => x * y, div: (x: number, y: number) => x / y }[op.fn];
    return map(new Float64Array(oa.length), (_, i) => f(a[oa[i]], b[ob[i]]));
  },
  matmul: (_op, [a, b], node, graph) => {
    const [sa, sb] = node.inputs.map((i) => graph.nodes[i].shape);
    const [m, k] = sa.slice(-2);
    const n = sb[sb.length - 1];
    const batch = node.shape.slice(0, -2);
    const oa = offsets(batch, broadcastStrides(sa.slice(0, -2), batch).map((s) => s * m * k));
    const ob = offsets(batch, broadcastStrides(sb.slice(0, -2), batch).map((s) => s * k * n));
    const out = new Float64Array(numel(node.shape));
    for (let t = 0; t < oa.length; t++)
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let q = 0; q < k; q++) acc += a[oa[t] + i * k + q] * b[ob[t] + q * n + j];
          out[(t * m + i) * n + j] = acc;
        }
    return out;
  },
  sum: (_op, [a], node, graph) => {
    const inShape = graph.nodes[node.inputs[0]].shape;
    // Each input element lands on the output element with its reduced coordinates zeroed.
    const target = offsets(inShape, broadcastStrides(node.shape, inShape));
    const out = new Float64Array(numel(node.shape));
    for (let i = 0; i < a.length; i++) out[target[i]] += a[i];
    return out;
  },
  expand: (_op, [a], node, graph) => broadcastTo(a, graph.nodes[node.inputs[0]].shape, node.shape),
  reshape: (_op, [a]) => Float64Array.from(a),
  permute: (op, [a], node, graph) => {
    const inStrides = strides(graph.nodes[node.inputs[0]].shape);
    const off = offsets(node.shape, op.perm.map((p) => inStrides[p]));
    return map(new Float64Array(off.length), (_, i) => a[off[i]]);
  },
  slice: (op, [a], node, graph) => {
    const inShape = graph.nodes[node.inputs[0]].shape;
    const st = strides(inShape);
    const off = offsets(node.shape, st);
    return map(new Float64Array(off.length), (_, i) => a[off[i] + op.start * st[op.axis]]);
  },
  pad: (op, [a], node, graph) => {
    const inShape = graph.nodes[node.inputs[0]].shape;
    const st = strides(node.shape);
    const off = offsets(inShape, st);
    const out = new Float64Array(numel(node.shape));
    for (let i = 0; i < a.length; i++) out[off[i] + op.start * st[op.axis]] = a[i];
    return out;
  },
  gather: (_op, [table, idx], node, graph) => {
    const tShape = graph.nodes[node.inputs[0]].shape;
    const rest = numel(tShape.slice(1));
    const out = new Float64Array(numel(node.shape));
    for (let i = 0; i < idx.length; i++) {
      const r = rowOf(idx[i], tShape[0]);
      if (r >= 0) out.set(table.subarray(r * rest, (r + 1) * rest), i * rest);
    }
    return out;
  },
  scatter_add: (_op, [g, idx], node) => {
    const rest = numel(node.shape.slice(1));
    const out = new Float64Array(numel(node.shape));
    for (let i = 0; i < idx.length; i++) {
      const r = rowOf(idx[i], node.shape[0]);
      if (r >= 0) for (let j = 0; j < rest; j++) out[r * rest + j] += g[i * rest + j];
    }
    return out;
  },
  onehot: (_op, [idx], node) => {
    const v = node.shape[node.shape.length - 1];
    const out = new Float64Array(numel(node.shape));
    for (let i = 0; i < idx.length; i++) {
      const r = rowOf(idx[i], v);
      if (r >= 0) out[i * v + r] = 1;
    }
    return out;
  },
  causal_mask: (op, [a], node) => {
    const n = node.shape[node.shape.length - 1];
    return map(a, (x, i) => (i % n > Math.floor(i / n) % n ? op.fill : x));
  },
  softmax: (_op, [a], node) => {
    const n = node.shape[node.shape.length - 1];
    const out = new Float64Array(a.length);
    for (let r = 0; r < a.length; r += n) {
      let mx = -Infinity;
      for (let j = 0; j < n; j++) mx = Math.max(mx, a[r + j]);
      let s = 0;
      for (let j = 0; j < n; j++) s += out[r + j] = Math.exp(a[r + j] - mx);
      for (let j = 0; j < n; j++) out[r + j] /= s;
    }
    return out;
  },
  dropout: (op, [a], _node, _graph, env) => {
    if (!env.training) return Float64Array.from(a);
    const scale = 1 / (1 - op.p);
    return map(a, (x, i) => (dropoutKeep(env.seed, env.step, op.key, i, op.p) ? x * scale : 0));
  },
  attention: (op, args, node, graph, env) => attentionRef(op, args, node, graph, env),
  // An out-of-range target picks nothing (a logit of 0), like onehot and gather do.
  cross_entropy: (_op, [logits, targets], node, graph) => {
    const v = graph.nodes[node.inputs[0]].shape.at(-1)!;
    const rows = targets.length;
    let total = 0;
    for (let r = 0; r < rows; r++) {
      const row = logits.subarray(r * v, (r + 1) * v);
      let mx = -Infinity;
      for (const x of row) mx = Math.max(mx, x);
      let s = 0;
      for (const x of row) s += Math.exp(x - mx);
      const t = rowOf(targets[r], v);
      total += mx + Math.log(s) - (t >= 0 ? row[t] : 0);
    }
    return Float64Array.of(total / rows);
  },
};

/**
 * The attention parts (compiler/ir.ts), straight from the definitions: for every pair j ≤ i
 * the score, P_ij = exp(s_ij − lse_i) and the dropout mask of flat index (i, j) of the scores.
 */
function attentionRef(op: OpOf<'attention'>, args: Float64Array[], node: Node, graph: Graph, env: InterpEnv): Float64Array {
  const qShape = graph.nodes[node.inputs[0]].shape;
  const L = qShape[qShape.length - 2];
  const e = qShape[qShape.length - 1];
  const slices = numel(qShape) / (L * e);
  const [Q, K] = args;
  const V = op.part === 'dv' ? undefined : args[2];
  const f = op.part === 'lse' ? 0 : op.part === 'dv' ? node.shape[node.shape.length - 1] : (V as Float64Array).length / (slices * L);
  const lse = op.part === 'lse' ? new Float64Array(slices * L) : args[3];
  const dO = op.part === 'dq' || op.part === 'dk' ? args[4] : op.part === 'dv' ? args[3] : undefined;
  const D = op.part === 'dq' || op.part === 'dk' ? args[5] : undefined;
  const lseIn = op.part === 'dv' ? args[2] : lse;
  const out = new Float64Array(numel(node.shape));
  const drop = env.training && op.p > 0;
  const keepScale = 1 / (1 - op.p);
  const score = (b: number, i: number, j: number): number => {
    let s = 0;
    for (let x = 0; x < e; x++) s += Q[(b * L + i) * e + x] * K[(b * L + j) * e + x];
    return op.scale * s;
  };
  // the factor dropout puts on entry (i, j): 1/(1-p) kept, 0 dropped, 1 when not training
  const mask = (b: number, i: number, j: number): number => (!drop ? 1 : dropoutKeep(env.seed, env.step, op.key, (b * L + i) * L + j, op.p) ? keepScale : 0);
  for (let b = 0; b < slices; b++) {
    for (let i = 0; i < L; i++) {
      if (op.part === 'lse') {
        let mx = -Infinity;
        for (let j = 0; j <= i; j++) mx = Math.max(mx, score(b, i, j));
        let t = 0;
        for (let j = 0; j <= i; j++) t += Math.exp(score(b, i, j) - mx);
        out[b * L + i] = mx + Math.log(t);
        continue;
      }
      for (let j = 0; j <= i; j++) {
        const p = Math.exp(score(b, i, j) - lseIn[b * L + i]);
        const m = mask(b, i, j);
        if (op.part === 'out') {
          for (let y = 0; y < f; y++) out[(b * L + i) * f + y] += p * m * (V as Float64Array)[(b * L + j) * f + y];
        } else if (op.part === 'dv') {
          for (let y = 0; y < f; y++) out[(b * L + j) * f + y] += p * m * (dO as Float64Array)[(b * L + i) * f + y];
        } else {
          let dA = 0;
          for (let y = 0; y < f; y++) dA += (dO as Float64Array)[(b * L + i) * f + y] * (V as Float64Array)[(b * L + j) * f + y];
          const dS = op.scale * p * (dA * m - (D as Float64Array)[b * L + i]);
          const [to, from] = op.part === 'dq' ? [i, j] : [j, i];
          for (let x = 0; x < e; x++) out[(b * L + to) * e + x] += dS * (op.part === 'dq' ? K : Q)[(b * L + from) * e + x];
        }
      }
    }
  }
  return out;
}
