// Reductions: sum (over any axes, kept as size 1), softmax over the last axis, and the mean
// cross-entropy. Mostly one output (row) per thread; a handful of outputs with many terms each
// get a workgroup apiece that reduces a tree in workgroup memory. Softmax and cross-entropy use
// the max-shifted ("online") sum of exponentials, so they never overflow.
import { numel, strides, type DType, type Graph, type Node, type OpOf } from '../ir.ts';
import type { Kernel } from '../kernel.ts';
import { assemble, count, digits, f32Lit, grid, inShapes, kernelName, loadF32, nodeBindings, offsetLines, simplifyView, u32Lit, type Binding, type View } from './common.ts';

/** Threads per workgroup: one output (row) per thread; a tree per output (sum, cross-entropy); a tree per softmax row. */
const ROW_WG = 64;
const TREE_WG = 256;
const SOFTMAX_TREE_WG = 64;
/** The lowest finite f32: the start of a running max (a running max of -inf would give NaN). */
const LOWEST = f32Lit(-3.4028234663852886e38);

/** Lines for a tree reduction of `arr[0 .. size)` into arr[0]; `combine(dst, src)` gives statements. */
function treeLines(size: number, combine: (dst: string, src: string) => string[]): string[] {
  return [
    'workgroupBarrier();',
    `for (var width = ${u32Lit(size / 2)}; width > 0u; width >>= 1u) {`,
    '  if (lid < width) {',
    ...combine('lid', 'lid + width').map((l) => `    ${l}`),
    '  }',
    '  workgroupBarrier();',
    '}',
  ];
}

/** Nested loops adding a[base + reduced offsets] into `acc`. */
function nestedSumLines(red: View, base: string, a: Binding): string[] {
  const lines: string[] = [];
  let ptr = base;
  red.dims.forEach((d, ax) => {
    const pad = '  '.repeat(ax);
    lines.push(`${pad}for (var r${ax} = 0u; r${ax} < ${u32Lit(d)}; r${ax}++) {`);
    const s = red.strides[0][ax];
    const next = `${ptr} + r${ax}${s === 1 ? '' : ` * ${u32Lit(s)}`}`;
    if (ax === red.dims.length - 1) lines.push(`${pad}  acc += ${loadF32(a, next)};`);
    else {
      lines.push(`${pad}  let p${ax} = ${next};`);
      ptr = `p${ax}`;
    }
  });
  for (let ax = red.dims.length - 1; ax >= 0; ax--) lines.push(`${'  '.repeat(ax)}}`);
  return red.dims.length ? lines : [`acc = ${loadF32(a, base)};`];
}

export type ReduceVariant = 'rows' | 'tree';

/**
 * One output per thread unless there are fewer outputs than SIMD lanes, each with many terms.
 * On lavapipe a workgroup with barriers costs ~15 us, so one output per thread won even for
 * [16, 64, 8, 8] -> [1, 64, 1, 1] (0.12 ms against 0.33-1.1 ms); the tree wins for a handful of
 * outputs (to a scalar: 0.17 ms against 0.37-0.56 ms).
 */
export const chooseSumVariant = (outputs: number, terms: number): ReduceVariant => (outputs < 8 && terms >= 2048 ? 'tree' : 'rows');

/** The sum kernel; `variant` overrides the choice (tests force each one). */
export function emitSum(node: Node, graph: Graph, variant?: ReduceVariant, addend?: number, outDtype?: DType): Kernel {
  const op = node.op as OpOf<'sum'>;
  const { ins, out } = nodeBindings(node, graph, ['a']);
  if (outDtype) out.dtype = outDtype; // an epilogue writes the add's memory
  // an epilogue: out = the sum + c, c of the sum's elements (a gradient accumulated over uses)
  if (addend !== undefined) ins.push({ name: 'c', dtype: graph.nodes[addend].dtype, shape: graph.nodes[addend].shape });
  const plus = (at: string) => (addend === undefined ? '' : ` + c[${at}]`);
  const inShape = ins[0].shape;
  const st = strides(inShape);
  const view = (axes: number[]) =>
    simplifyView(
      axes.map((ax) => inShape[ax]),
      [axes.map((ax) => st[ax])],
    );
  const kept = view(inShape.map((_, ax) => ax).filter((ax) => !op.axes.includes(ax)));
  const red = view(op.axes);
  const nOut = count(node.shape);
  const r = numel(red.dims);
  const chosen = chooseSumVariant(nOut, r);
  const v = variant ?? chosen;
  const name = kernelName('sum', `a${digits(op.axes)}`, ...inShapes(node, graph), ...(v === chosen ? [] : [v]), ...(addend === undefined ? [] : ['plus']));
  const summary = `out = a summed over axes [${op.axes.join(', ')}], kept as size 1${addend === undefined ? '' : ', plus c (an accumulated gradient)'}`;
  if (v === 'rows') {
    const g = grid(Math.ceil(nOut / ROW_WG));
    return assemble({
      name,
      summary,
      notes: [`one output per thread, ${r} terms each`],
      ins,
      out,
      workgroupSize: ROW_WG,
      grid: g,
      body: [
        g.groupLine,
        `let o = group * ${u32Lit(ROW_WG)} + lid;`,
        `if (o >= ${u32Lit(nOut)}) {`,
        '  return;',
        '}',
        ...offsetLines(kept, 'o', ['base']),
        'var acc = 0.0;',
        ...nestedSumLines(red, 'base', ins[0]),
        `out[o] = acc${plus('o')};`,
      ],
    });
  }
  const g = grid(nOut);
  return assemble({
    name,
    summary,
    notes: [`one workgroup per output: ${TREE_WG} threads stride over the ${r} terms, then a tree in workgroup memory`],
    ins,
    out,
    decls: [`var<workgroup> partial: array<f32, ${TREE_WG}>;`],
    workgroupSize: TREE_WG,
    grid: g,
    body: [
      g.groupLine,
      `if (group >= ${u32Lit(nOut)}) {`,
      '  return; // uniform: the whole workgroup leaves',
      '}',
      ...offsetLines(kept, 'group', ['base']),
      'var acc = 0.0;',
      `for (var r = lid; r < ${u32Lit(r)}; r += ${u32Lit(TREE_WG)}) {`,
      ...offsetLines(red, 'r', ['r_at'], [], 'rc').map((l) => `  ${l}`),
      `  acc += ${loadF32(ins[0], 'base + r_at')};`,
      '}',
      'partial[lid] = acc;',
      ...treeLines(TREE_WG, (d, src) => [`partial[${d}] += partial[${src}];`]),
      'if (lid == 0u) {',
      `  out[group] = partial[0]${plus('group')};`,
      '}',
    ],
  });
}

/** One row per thread unless there are a few very long rows (the same trade-off as sum). */
export const chooseSoftmaxVariant = (rows: number, n: number): ReduceVariant => (rows < 8 && n >= 4096 ? 'tree' : 'rows');

export const reduceEmitters = {
  sum: (node: Node, graph: Graph): Kernel => emitSum(node, graph),
  softmax: (node: Node, graph: Graph): Kernel => emitSoftmax(node, graph),
  cross_entropy: (node: Node, graph: Graph): Kernel => emitCrossEntropy(node, graph),
};

/** The softmax kernel; `variant` overrides the choice. */
export function emitSoftmax(node: Node, graph: Graph, variant?: ReduceVariant): Kernel {
  const { ins, out } = nodeBindings(node, graph, ['a']);
  const n = node.shape[node.shape.length - 1];
  const rows = count(node.shape) / n;
  const chosen = chooseSoftmaxVariant(rows, n);
  const v = variant ?? chosen;
  const name = kernelName('softmax', ...inShapes(node, graph), ...(v === chosen ? [] : [v]));
  const summary = `out = softmax of a over the last axis (${n} entries, ${rows} rows)`;
  if (v === 'rows') {
    const g = grid(Math.ceil(rows / ROW_WG));
    return assemble({
      name,
      summary,
      notes: ['one row per thread: a running (max, sum of exp) pass, then the normalised write'],
      ins,
      out,
      workgroupSize: ROW_WG,
      grid: g,
      body: [
        g.groupLine,
        `let row = group * ${u32Lit(ROW_WG)} + lid;`,
        `if (row >= ${u32Lit(rows)}) {`,
        '  return;',
        '}',
        `let base = row * ${u32Lit(n)};`,
        `var m = ${LOWEST};`,
        'var s = 0.0;',
        `for (var j = 0u; j < ${u32Lit(n)}; j++) {`,
        `  let x = ${loadF32(ins[0], 'base + j')};`,
        '  let m_new = max(m, x);',
        '  s = s * exp(m - m_new) + exp(x - m_new);',
        '  m = m_new;',
        '}',
        'let inv = 1.0 / s;',
        `for (var j = 0u; j < ${u32Lit(n)}; j++) {`,
        `  out[base + j] = exp(${loadF32(ins[0], 'base + j')} - m) * inv;`,
        '}',
      ],
    });
  }
  const wg = SOFTMAX_TREE_WG;
  const g = grid(rows);
  return assemble({
    name,
    summary,
    notes: [`one workgroup per row: ${wg} threads keep running (max, sum of exp) over a stride, merged in a tree`],
    ins,
    out,
    decls: [`var<workgroup> part_max: array<f32, ${wg}>;`, `var<workgroup> part_sum: array<f32, ${wg}>;`],
    workgroupSize: wg,
    grid: g,
    body: [
      g.groupLine,
      `if (group >= ${u32Lit(rows)}) {`,
      '  return; // uniform: the whole workgroup leaves',
      '}',
      `let base = group * ${u32Lit(n)};`,
      `var m = ${LOWEST};`,
      'var s = 0.0;',
      `for (var j = lid; j < ${u32Lit(n)}; j += ${u32Lit(wg)}) {`,
      `  let x = ${loadF32(ins[0], 'base + j')};`,
      '  let m_new = max(m, x);',
      '  s = s * exp(m - m_new) + exp(x - m_new);',
      '  m = m_new;',
      '}',
      'part_max[lid] = m;',
      'part_sum[lid] = s;',
      ...treeLines(wg, (d, src) => [
        `let m1 = part_max[${d}];`,
        `let m2 = part_max[${src}];`,
        'let mm = max(m1, m2);',
        `part_sum[${d}] = part_sum[${d}] * exp(m1 - mm) + part_sum[${src}] * exp(m2 - mm);`,
        `part_max[${d}] = mm;`,
      ]),
      'let row_max = part_max[0];',
      'let inv = 1.0 / part_sum[0];',
      `for (var j = lid; j < ${u32Lit(n)}; j += ${u32Lit(wg)}) {`,
      `  out[base + j] = exp(${loadF32(ins[0], 'base + j')} - row_max) * inv;`,
      '}',
    ],
  });
}

// One workgroup: each thread takes rows lid, lid + WG, ..., computes logsumexp - picked logit
// for each, and the per-thread totals are summed in a tree; thread 0 writes the mean.
export function emitCrossEntropy(node: Node, graph: Graph): Kernel {
  const { ins, out } = nodeBindings(node, graph, ['logits', 'targets']);
  const v = ins[0].shape[ins[0].shape.length - 1];
  const rows = count(ins[1].shape);
  const wg = TREE_WG;
  return assemble({
    name: kernelName('cross_entropy', ...inShapes(node, graph)),
    summary: `out = mean over ${rows} rows of logsumexp(logits[r, :]) - logits[r, targets[r]] (a target outside [0, ${v}) picks 0)`,
    notes: [`one workgroup; each of ${wg} threads takes every ${wg}th row, then a tree sums the threads`],
    ins,
    out,
    decls: [`var<workgroup> partial: array<f32, ${wg}>;`],
    workgroupSize: wg,
    grid: grid(1),
    body: [
      'var total = 0.0;',
      `for (var row = lid; row < ${u32Lit(rows)}; row += ${u32Lit(wg)}) {`,
      `  let base = row * ${u32Lit(v)};`,
      `  var m = ${LOWEST};`,
      '  var s = 0.0;',
      `  for (var j = 0u; j < ${u32Lit(v)}; j++) {`,
      `    let x = ${loadF32(ins[0], 'base + j')};`,
      '    let m_new = max(m, x);',
      '    s = s * exp(m - m_new) + exp(x - m_new);',
      '    m = m_new;',
      '  }',
      '  let t = targets[row];',
      `  let inside = t >= 0i && t < ${v}i;`,
      `  let picked = select(0.0, ${loadF32(ins[0], 'base + u32(select(0i, t, inside))')}, inside);`,
      '  total += m + log(s) - picked;',
      '}',
      'partial[lid] = total;',
      ...treeLines(wg, (d, s) => [`partial[${d}] += partial[${s}];`]),
      'if (lid == 0u) {',
      `  out[0] = partial[0] / ${f32Lit(rows)};`,
      '}',
    ],
  });
}
