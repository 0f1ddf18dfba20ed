// Elementwise kernels: each thread computes a few consecutive output elements, reading its
// inputs through broadcast views (strides baked in, 0 on stretched axes).
// unary, affine, clamp, inrange, binary, expand, fill, eye, dropout, causal_mask.
import type { Graph, Node, OpOf, UnaryFn } from '../ir.ts';
import { dropoutKey, type Kernel } from '../kernel.ts';
import {
  assemble,
  broadcastStrides,
  count,
  f32Down,
  f32Lit,
  f32Up,
  grid,
  inShapes,
  kernelName,
  loadF32,
  nodeBindings,
  numName,
  offsetLines,
  shapeName,
  simplifyView,
  u32Lit,
  type Binding,
} from './common.ts';

/** Threads per workgroup of the elementwise and layout kernels, and elements per thread. */
export const ELEMENTWISE_WG = 64;
/** lavapipe pays a lot per invocation: 4 elements per thread ran ~2.5x faster than 1 (a copy: 5.4 against 14.7 ns per element). */
export const ELEMENTS_PER_THREAD = 4;

export interface MapSpec {
  name: string;
  summary: string;
  ins: Binding[];
  out: Binding;
  /** WGSL lines computing `out[i]`; `i` is the flat output index, `<input>_at` each input's offset. No `return`. */
  body: string[];
  /** Offsets are computed as a broadcast view of each input (default true). */
  broadcast?: boolean;
  usesStep?: boolean;
  keys?: number[];
  decls?: string[];
}

/** Each thread computes ELEMENTS_PER_THREAD consecutive outputs; the grid folded to stay within the dispatch limits. */
export function mapKernel(s: MapSpec): Kernel {
  const n = count(s.out.shape);
  const per = ELEMENTS_PER_THREAD;
  const g = grid(Math.ceil(n / (ELEMENTWISE_WG * per)));
  const view = simplifyView(
    s.out.shape,
    s.ins.map((b) => broadcastStrides(b.shape, s.out.shape)),
  );
  const offsets = s.broadcast === false ? [] : offsetLines(view, 'i', s.ins.map((b) => `${b.name}_at`));
  return assemble({
    name: s.name,
    summary: s.summary,
    ins: s.ins,
    out: s.out,
    usesStep: s.usesStep,
    keys: s.keys,
    decls: s.decls,
    workgroupSize: ELEMENTWISE_WG,
    grid: g,
    body: [
      g.groupLine,
      `let first = (group * ${u32Lit(ELEMENTWISE_WG)} + lid) * ${u32Lit(per)};`,
      `let end = min(first + ${u32Lit(per)}, ${u32Lit(n)});`,
      'for (var i = first; i < end; i++) {',
      ...[...offsets, ...s.body].map((l) => `  ${l}`),
      '}',
    ],
  });
}

/** f32(x) -> f32 bodies of the unary functions, on `x`. */
export const UNARY_WGSL: { [F in UnaryFn]: string } = {
  neg: '-x',
  exp: 'exp(x)',
  log: 'log(x)',
  sqrt: 'sqrt(x)',
  rsqrt: 'inverseSqrt(x)',
  recip: '1.0 / x',
  square: 'x * x',
  sigmoid: '1.0 / (1.0 + exp(-x))',
  silu: 'x / (1.0 + exp(-x))',
  silu_grad: 's * (1.0 + x * (1.0 - s))', // with s = sigmoid(x), below
  relu: 'max(x, 0.0)',
  step: 'select(0.0, 1.0, x > 0.0)',
  // tanh(±9.1) is ±1 in f32; clamping keeps exp-based implementations from inf / inf.
  tanh: 'tanh(clamp(x, -10.0, 10.0))',
};

/** A kernel `out[i] = f(x)` with x the (only) input's element. */
function unaryLike(node: Node, graph: Graph, name: string, summary: string, expr: string, pre: string[] = []): Kernel {
  const { ins, out } = nodeBindings(node, graph, ['a']);
  return mapKernel({ name, summary, ins, out, body: [`let x = ${loadF32(ins[0], 'a_at')};`, ...pre, `out[i] = ${expr};`] });
}

export const elementwiseEmitters = {
  unary: (node: Node, graph: Graph): Kernel => {
    const op = node.op as OpOf<'unary'>;
    const pre = op.fn === 'silu_grad' ? ['let s = 1.0 / (1.0 + exp(-x));'] : [];
    return unaryLike(node, graph, kernelName('unary', op.fn, ...inShapes(node, graph)), `out = ${op.fn}(a)`, UNARY_WGSL[op.fn], pre);
  },

  affine: (node: Node, graph: Graph): Kernel => {
    const op = node.op as OpOf<'affine'>;
    const name = kernelName('affine', `s${numName(op.scale)}`, `b${numName(op.shift)}`, ...inShapes(node, graph));
    return unaryLike(node, graph, name, `out = ${op.scale} * a + ${op.shift}`, `${f32Lit(op.scale)} * x + ${f32Lit(op.shift)}`);
  },

  clamp: (node: Node, graph: Graph): Kernel => {
    const op = node.op as OpOf<'clamp'>;
    const name = kernelName('clamp', `lo${numName(op.lo)}`, `hi${numName(op.hi)}`, ...inShapes(node, graph));
    return unaryLike(node, graph, name, `out = min(max(a, ${op.lo}), ${op.hi})`, `min(max(x, ${f32Lit(op.lo)}), ${f32Lit(op.hi)})`);
  },

  // The bounds are rounded inwards to f32 numbers, so that f32 comparisons decide like exact ones.
  inrange: (node: Node, graph: Graph): Kernel => {
    const op = node.op as OpOf<'inrange'>;
    const name = kernelName('inrange', `lo${numName(op.lo)}`, `hi${numName(op.hi)}`, ...inShapes(node, graph));
    const cond = `x >= ${f32Lit(f32Up(op.lo))} && x <= ${f32Lit(f32Down(op.hi))}`;
    return unaryLike(node, graph, name, `out = ${op.lo} <= a <= ${op.hi} ? 1 : 0`, `select(0.0, 1.0, ${cond})`);
  },

  binary: (node: Node, graph: Graph): Kernel => {
    const op = node.op as OpOf<'binary'>;
    const { ins, out } = nodeBindings(node, graph, ['a', 'b']);
    const sym = { add: '+', sub: '-', mul: '*', div: '/' }[op.fn];
    return mapKernel({
      name: kernelName('binary', op.fn, ...inShapes(node, graph)),
      summary: `out = a ${sym} b, numpy broadcasting to [${node.shape.join(', ')}]`,
      ins,
      out,
      body: [`out[i] = ${loadF32(ins[0], 'a_at')} ${sym} ${loadF32(ins[1], 'b_at')};`],
    });
  },

  expand: (node: Node, graph: Graph): Kernel => {
    const { ins, out } = nodeBindings(node, graph, ['a']);
    return mapKernel({
      name: kernelName('expand', ...inShapes(node, graph), 'to', shapeName(node.shape)),
      summary: `out = a broadcast to [${node.shape.join(', ')}]`,
      ins,
      out,
      body: [`out[i] = ${loadF32(ins[0], 'a_at')};`],
    });
  },

  fill: (node: Node): Kernel => {
    const op = node.op as OpOf<'fill'>;
    return mapKernel({
      name: kernelName('fill', `v${numName(op.value)}`, shapeName(node.shape)),
      summary: `out = ${op.value} everywhere`,
      ins: [],
      out: { name: 'out', dtype: 'f32', shape: node.shape },
      body: [`out[i] = ${f32Lit(op.value)};`],
    });
  },

  eye: (node: Node): Kernel => {
    const n = node.shape[node.shape.length - 1];
    return mapKernel({
      name: kernelName('eye', shapeName(node.shape)),
      summary: 'out = identity on the last two axes',
      ins: [],
      out: { name: 'out', dtype: 'f32', shape: node.shape },
      body: [`out[i] = select(0.0, 1.0, i % ${u32Lit(n)} == (i / ${u32Lit(n)}) % ${u32Lit(n)});`],
    });
  },

  // keep  <=>  counterUniform(...) >= p  <=>  bits24 >= ceil(p * 2^24), exact in integers.
  dropout: (node: Node, graph: Graph): Kernel => {
    const op = node.op as OpOf<'dropout'>;
    const { ins, out } = nodeBindings(node, graph, ['a']);
    const threshold = Math.min(Math.max(Math.ceil(op.p * 16777216), 0), 16777216);
    return mapKernel({
      name: kernelName('dropout', `p${numName(op.p)}`, ...inShapes(node, graph)),
      summary: `out = a * keep / (1 - ${op.p}) with keep = counterUniform(seed, step, key, i) >= ${op.p} when training, else a (the site's key bound at run time)`,
      ins,
      out,
      usesStep: true,
      keys: [op.key],
      body: [
        `let x = ${loadF32(ins[0], 'a_at')};`,
        'if (step_params.training == 0u) {',
        '  out[i] = x;',
        '} else {',
        `  let keep = counter_bits24(step_params.seed, step_params.step, ${dropoutKey(0)}, i) >= ${u32Lit(threshold)};`,
        `  out[i] = select(0.0, x * ${f32Lit(1 / (1 - op.p))}, keep);`,
        '}',
      ],
    });
  },

  causal_mask: (node: Node, graph: Graph): Kernel => {
    const op = node.op as OpOf<'causal_mask'>;
    const n = node.shape[node.shape.length - 1];
    const { ins, out } = nodeBindings(node, graph, ['a']);
    return mapKernel({
      name: kernelName('causal_mask', `f${numName(op.fill)}`, ...inShapes(node, graph)),
      summary: `out = a with entries of column > row set to ${op.fill}`,
      ins,
      out,
      body: [
        `let col = i % ${u32Lit(n)};`,
        `let row = (i / ${u32Lit(n)}) % ${u32Lit(n)};`,
        `let fill = ${f32Lit(op.fill)};`,
        `out[i] = select(${loadF32(ins[0], 'a_at')}, fill, col > row);`,
      ],
    });
  },
};
