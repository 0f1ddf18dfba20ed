// Contractions: a batched matrix product summed over some of its batch axes, in one kernel,
//   out[kept, i, j] = Σ_summed Σ_q A[kept, summed, i, q] · B[kept, summed, q, j],
// with the operands read through strided views (a transposed operand is a view, not a copy).
// This is the weight gradient of a product with a shared weight (dW = Σ_tokens g xᵀ): without
// it the per-token products are written out whole ([16, 64, 256, 32] for the head) and summed
// by another kernel. A workgroup owns a TM x TN block of one kept batch element; its threads
// split the summed terms (every WG-th one) and add their blocks in a tree in workgroup memory.
import { numel, strides, type DType, type Graph, type Node } from '../ir.ts';
import type { Kernel } from '../kernel.ts';
import { assemble, grid, kernelName, offsetLines, shapeName, simplifyView, tileTreeLines, u32Lit, type Binding } from './common.ts';

/** An operand of a product: the node whose memory is read, and its stride for each axis of the operand's shape. */
export interface OperandView {
  node: number;
  shape: number[];
  strides: number[];
}

const WG = 64;

/** Strides of an operand's batch axes broadcast to `batch` (0 on stretched or missing axes). */
function batchStrides(v: OperandView, batch: readonly number[]): number[] {
  const lead = v.shape.slice(0, -2);
  const st = v.strides.slice(0, -2);
  return batch.map((_, i) => {
    const j = i - (batch.length - lead.length);
    return j < 0 || lead[j] === 1 ? 0 : st[j];
  });
}

/**
 * The kernel of `sum(matmul(a, b), summed)` (summed: batch axes of the product, possibly none),
 * `out` the node computed (the sum, or the product itself).
 */
export function emitContraction(g: Graph, out: Node, product: Node, summed: readonly number[], a: OperandView, b: OperandView, addend?: number, outDtype: DType = out.dtype): Kernel {
  const batch = product.shape.slice(0, -2);
  const [m, n] = product.shape.slice(-2);
  const k = a.shape[a.shape.length - 1];
  const sa = batchStrides(a, batch);
  const sb = batchStrides(b, batch);
  const sc = strides(out.shape).slice(0, -2).map((s, ax) => (summed.includes(ax) ? 0 : s));
  const keptAxes = batch.map((_, ax) => ax).filter((ax) => !summed.includes(ax));
  const kept = simplifyView(
    keptAxes.map((ax) => batch[ax]),
    [keptAxes.map((ax) => sa[ax]), keptAxes.map((ax) => sb[ax]), keptAxes.map((ax) => sc[ax])],
  );
  const red = simplifyView(
    summed.map((ax) => batch[ax]),
    [summed.map((ax) => sa[ax]), summed.map((ax) => sb[ax])],
  );
  const nKept = numel(kept.dims);
  const nRed = numel(red.dims) * k;
  const [sAm, sAk] = a.strides.slice(-2);
  const [sBk, sBn] = b.strides.slice(-2);
  const sCm = n;
  const tm = Math.min(m, 8);
  const tn = Math.min(n, 8);
  const tilesM = Math.ceil(m / tm);
  const tilesN = Math.ceil(n / tn);
  const groups = nKept * tilesM * tilesN;
  const gr = grid(groups);
  const range = (x: number) => [...Array(x).keys()];
  const plus = (base: string, x: number) => (x ? `${base} + ${u32Lit(x)}` : base);
  const times = (x: string, s: number) => (s === 0 ? '0u' : s === 1 ? x : `${x} * ${u32Lit(s)}`);
  const row = (i: number) => (m % tm ? `min(${plus('i0', i)}, ${u32Lit(m - 1)})` : plus('i0', i));
  const col = (j: number) => (n % tn ? `min(${plus('j0', j)}, ${u32Lit(n - 1)})` : plus('j0', j));
  const ins: Binding[] = [
    { name: 'a', dtype: g.nodes[a.node].dtype, shape: g.nodes[a.node].shape },
    { name: 'b', dtype: g.nodes[b.node].dtype, shape: g.nodes[b.node].shape },
    ...(addend === undefined ? [] : [{ name: 'c', dtype: g.nodes[addend].dtype, shape: g.nodes[addend].shape }]),
  ];
  const cells = tm * tn;
  // the summed terms: rr indexes the summed batch elements, q the inner dimension
  const redOffsets = red.dims.length ? offsetLines(red, 'rr', ['ra', 'rb'], [], 'e') : ['let ra = 0u;', 'let rb = 0u;'];
  const name = kernelName('contract', shapeName(a.shape), `s${a.strides.join('_')}`, shapeName(b.shape), `s${b.strides.join('_')}`, 'sum', summed.join('') || 'none', ...(addend === undefined ? [] : ['plus']));
  const body = [
    gr.groupLine,
    `if (group >= ${u32Lit(groups)}) {`,
    '  return; // uniform: the whole workgroup leaves',
    '}',
    `let bt = group / ${u32Lit(tilesM * tilesN)};`,
    ...(kept.dims.length ? offsetLines(kept, 'bt', ['a_base', 'b_base', 'c_base']) : ['let a_base = 0u;', 'let b_base = 0u;', 'let c_base = 0u;']),
    `let i0 = ((group / ${u32Lit(tilesN)}) % ${u32Lit(tilesM)}) * ${u32Lit(tm)};`,
    `let j0 = (group % ${u32Lit(tilesN)}) * ${u32Lit(tn)};`,
    ...range(tm).map((i) => `let ar_${i} = a_base + ${times(`(${row(i)})`, sAm)};`),
    ...range(tn).map((j) => `let bc_${j} = b_base + ${times(`(${col(j)})`, sBn)};`),
    ...range(tm).map((i) => range(tn).map((j) => `var acc_${i}_${j} = 0.0;`).join(' ')),
    `for (var kk = lid; kk < ${u32Lit(nRed)}; kk += ${u32Lit(WG)}) {`,
    `  let rr = kk / ${u32Lit(k)};`,
    `  let q = kk % ${u32Lit(k)};`,
    ...redOffsets.map((l) => `  ${l}`),
    `  let ak = ra + ${times('q', sAk)};`,
    `  let bk = rb + ${times('q', sBk)};`,
    ...range(tm).map((i) => `  let a_${i} = a[ar_${i} + ak];`),
    ...range(tn).map((j) => `  let b_${j} = b[bc_${j} + bk];`),
    ...range(tm).flatMap((i) => range(tn).map((j) => `  acc_${i}_${j} += a_${i} * b_${j};`)),
    '}',
    ...tileTreeLines(tm, tn, WG),
    'if (lid == 0u) {',
    ...range(tm).flatMap((i) =>
      range(tn).flatMap((j) => {
        const conds = [...(m % tm ? [`${plus('i0', i)} < ${u32Lit(m)}`] : []), ...(n % tn ? [`${plus('j0', j)} < ${u32Lit(n)}`] : [])];
        const at = `c_base + (${plus('i0', i)}) * ${u32Lit(sCm)} + ${plus('j0', j)}`;
        const st = `out[${at}] = partial[${u32Lit((i * tn + j) * WG)}]${addend === undefined ? '' : ` + c[${at}]`};`;
        return conds.length ? [`  if (${conds.join(' && ')}) {`, `    ${st}`, '  }'] : [`  ${st}`];
      }),
    ),
    '}',
  ];
  return assemble({
    name,
    summary: `${summed.length ? `out = a @ b summed over batch axes [${summed.join(', ')}] (a contraction: the product is never written)` : 'out = a @ b, operands read through strided views'}${addend === undefined ? '' : ', plus c (an accumulated gradient)'}`,
    notes: [
      `${nKept > 1 ? `${nKept} x ` : ''}[${m} x ${k}] @ [${k} x ${n}] summed over ${numel(red.dims)} batch elements; A strides (${sAm}, ${sAk}), B strides (${sBk}, ${sBn})`,
      `a workgroup per ${tm} x ${tn} block; its ${WG} threads take every ${WG}th term, then a tree in workgroup memory adds them`,
    ],
    ins,
    out: { name: 'out', dtype: outDtype, shape: out.shape },
    decls: [`var<workgroup> partial: array<f32, ${cells * WG}>; // [cell][thread]`],
    workgroupSize: WG,
    grid: gr,
    body,
  });
}
