// Batched matrix products in one dispatch. The product is first put in a canonical strided
// form C[i, j] = sum_k A[i, k] B[k, j] per batch element, folding batch axes into the rows when
// B is shared across them ([B, L, d, d] @ [d, d] is one tall [B*L*d, d] @ [d, d]) or into the
// columns when A is shared and n = 1 (W [V, K] @ p [B, L, K, 1] is one [V, K] @ [K, B*L]).
// Then one of three variants runs:
//   regs   each thread computes a TM x TN block of one product, reading operands straight from
//          storage: the many tiny products (d x d matrices, d = 8..32);
//   tiled  a workgroup computes a BM x BN tile, staging BK-deep slices of A and B in workgroup
//          memory, each thread a TM x TN block in registers: large m and n;
//   splitk a workgroup per TM x TN block whose threads split k and sum in a tree: few outputs
//          with a long k (weight gradients summed over the batch).
// Register tiles are unrolled into scalar variables: lavapipe (and GPUs) keep those in
// registers, while arrays indexed at run time go to memory.
import { strides, type Graph, type Node } from '../ir.ts';
import type { Kernel } from '../kernel.ts';
import { assemble, broadcastStrides, grid, inShapes, kernelName, loadF32, nodeBindings, offsetLines, simplifyView, tileTreeLines, u32Lit, type View } from './common.ts';

/** C[i, j] = sum_k A[i, k] B[k, j] for each batch element (view operands: A, B, C). */
export interface MatmulCanon {
  batch: View;
  m: number;
  n: number;
  k: number;
  sAm: number;
  sAk: number;
  sBk: number;
  sBn: number;
  sCm: number;
  sCn: number;
}

export function canonicalMatmul(aShape: readonly number[], bShape: readonly number[], outShape: readonly number[]): MatmulCanon {
  const [m, k] = aShape.slice(-2);
  const n = bShape[bShape.length - 1];
  const batchShape = outShape.slice(0, -2);
  const batch = simplifyView(batchShape, [
    broadcastStrides(aShape.slice(0, -2), batchShape).map((s) => s * m * k),
    broadcastStrides(bShape.slice(0, -2), batchShape).map((s) => s * k * n),
    strides(batchShape).map((s) => s * m * n),
  ]);
  const c: MatmulCanon = { batch, m, n, k, sAm: k, sAk: 1, sBk: n, sBn: 1, sCm: n, sCn: 1 };
  // Fold batch axes, innermost first, while they continue the rows (B shared) or the columns
  // (A shared). While m (n) is 1 its row (column) stride is free: take the batch stride.
  while (c.batch.dims.length) {
    const ax = c.batch.dims.length - 1;
    const [sa, sb, sc] = c.batch.strides.map((s) => s[ax]);
    const d = c.batch.dims[ax];
    const [sAm, sCm] = c.m === 1 ? [sa, sc] : [c.sAm, c.sCm];
    const [sBn, sCn] = c.n === 1 ? [sb, sc] : [c.sBn, c.sCn];
    if (sb === 0 && sa === c.m * sAm && sc === c.m * sCm) Object.assign(c, { m: c.m * d, sAm, sCm });
    else if (sa === 0 && sb === c.n * sBn && sc === c.n * sCn) Object.assign(c, { n: c.n * d, sBn, sCn });
    else break;
    c.batch = { dims: c.batch.dims.slice(0, ax), strides: c.batch.strides.map((s) => s.slice(0, ax)) };
  }
  return c;
}

export type MatmulPlan =
  | { variant: 'regs'; tm: number; tn: number }
  | { variant: 'tiled'; tm: number; tn: number; wm: number; wn: number; bk: number }
  | { variant: 'splitk'; tm: number; tn: number; threads: number };

const batchCount = (c: MatmulCanon): number => c.batch.dims.reduce((a, b) => a * b, 1);

/**
 * The variant and tile sizes for a product, from its shapes only. Measured on lavapipe (2 CPU
 * cores), where workgroup barriers are expensive and storage loads dominate: `regs` beat
 * `tiled` on every shape of the model (attention scores [32, 64, 32] @ [32, 32, 64]: 3.4 ms
 * against 9-14 ms; [4, 512, 128] @ [4, 128, 512]: 56 ms against 159 ms), and 16 x 16 blocks
 * help large products. `splitk` is chosen for a handful of blocks with a long k: it is as fast
 * there on lavapipe, far faster on a GPU, and its tree keeps the rounding error of a long sum
 * ~10x smaller. `tiled` is kept for GPUs and reached through emitMatmul's `choose`.
 */
export function chooseMatmulPlan(c: MatmulCanon): MatmulPlan {
  const tm = Math.min(c.m, 8);
  const tn = Math.min(c.n, 8);
  const batch = batchCount(c);
  if (batch * Math.ceil(c.m / tm) * Math.ceil(c.n / tn) <= 8 && c.k >= 2048) return { variant: 'splitk', tm, tn, threads: 64 };
  if (c.m >= 64 && c.n >= 64 && batch * Math.ceil(c.m / 16) * Math.ceil(c.n / 16) >= 128) return { variant: 'regs', tm: 16, tn: 16 };
  return { variant: 'regs', tm, tn };
}

const planTag = (p: MatmulPlan): string =>
  p.variant === 'tiled' ? `tiled${p.tm}x${p.tn}w${p.wm}x${p.wn}k${p.bk}` : p.variant === 'splitk' ? `splitk${p.tm}x${p.tn}t${p.threads}` : `regs${p.tm}x${p.tn}`;

const range = (n: number): number[] => [...Array(n).keys()];
/** `base + x` without a `+ 0u`. */
const plus = (base: string, x: number): string => (x ? `${base} + ${u32Lit(x)}` : base);
/** `x * s` without a `* 1u`. */
const times = (x: string, s: number): string => (s === 1 ? x : `${x} * ${u32Lit(s)}`);

/** Declarations and FMA lines of a TM x TN register tile: acc_r_c += a_r * b_c. */
const accDecls = (tm: number, tn: number): string[] => range(tm).map((r) => range(tn).map((q) => `var acc_${r}_${q} = 0.0;`).join(' '));
const fmaLines = (tm: number, tn: number): string[] => range(tm).flatMap((r) => range(tn).map((q) => `acc_${r}_${q} += a_${r} * b_${q};`));

/** Guarded stores of the tile at rows i0 + r, columns j0 + q. */
function storeLines(c: MatmulCanon, tm: number, tn: number, value: (r: number, q: number) => string, i0 = 'i0', j0 = 'j0', tileM = tm, tileN = tn): string[] {
  const lines: string[] = [];
  for (const r of range(tm))
    for (const q of range(tn)) {
      const conds = [...(c.m % tileM ? [`${plus(i0, r)} < ${u32Lit(c.m)}`] : []), ...(c.n % tileN ? [`${plus(j0, q)} < ${u32Lit(c.n)}`] : [])];
      const store = `out[c_base + ${times(`(${plus(i0, r)})`, c.sCm)} + ${times(`(${plus(j0, q)})`, c.sCn)}] = ${value(r, q)};`;
      lines.push(...(conds.length ? [`if (${conds.join(' && ')}) {`, `  ${store}`, '}'] : [store]));
    }
  return lines;
}

/** Row offsets into A (`ar_r`) and column offsets into B (`bc_q`), clamped inside the matrix. */
function edgeOffsets(c: MatmulCanon, tm: number, tn: number): string[] {
  const row = (r: number) => (c.m % tm ? `min(${plus('i0', r)}, ${u32Lit(c.m - 1)})` : `(${plus('i0', r)})`);
  const col = (q: number) => (c.n % tn ? `min(${plus('j0', q)}, ${u32Lit(c.n - 1)})` : `(${plus('j0', q)})`);
  return [
    ...range(tm).map((r) => `let ar_${r} = a_base + ${times(row(r), c.sAm)};`),
    ...range(tn).map((q) => `let bc_${q} = b_base + ${times(col(q), c.sBn)};`),
  ];
}

function describe(c: MatmulCanon): string {
  const b = batchCount(c);
  return `canonical form: ${b > 1 ? `${b} x ` : ''}[${c.m} x ${c.k}] @ [${c.k} x ${c.n}]; strides A (${c.sAm}, ${c.sAk}), B (${c.sBk}, ${c.sBn}), C (${c.sCm}, ${c.sCn})`;
}

/** The matmul kernel; `choose` picks the plan (tests force each variant through it). */
export function emitMatmul(node: Node, graph: Graph, choose: (c: MatmulCanon) => MatmulPlan = chooseMatmulPlan): Kernel {
  const { ins, out } = nodeBindings(node, graph, ['a', 'b']);
  const c = canonicalMatmul(ins[0].shape, ins[1].shape, node.shape);
  const plan = choose(c);
  // A plan other than the default choice (forced in tests) gets its own name.
  const forced = JSON.stringify(plan) === JSON.stringify(chooseMatmulPlan(c)) ? [] : [planTag(plan)];
  const base = {
    name: kernelName('matmul', ...inShapes(node, graph), ...forced),
    summary: `out = a @ b, batch axes broadcast to [${node.shape.slice(0, -2).join(', ')}]`,
    ins,
    out,
  };
  const batchOffsets = (v: string) => offsetLines(c.batch, v, ['a_base', 'b_base', 'c_base']);
  const ld: Loads = { a: (i) => loadF32(ins[0], i), b: (i) => loadF32(ins[1], i) };
  if (plan.variant === 'regs') return assemble({ ...base, ...regsKernel(c, plan, batchOffsets, ld) });
  if (plan.variant === 'tiled') return assemble({ ...base, ...tiledKernel(c, plan, batchOffsets, ld) });
  return assemble({ ...base, ...splitkKernel(c, plan, batchOffsets, ld) });
}

/** f32 loads of A and B at an index expression. */
type Loads = { a: (index: string) => string; b: (index: string) => string };

type Parts = Pick<Parameters<typeof assemble>[0], 'notes' | 'decls' | 'workgroupSize' | 'grid' | 'body'>;

const REGS_WG = 64;

function regsKernel(c: MatmulCanon, p: Extract<MatmulPlan, { variant: 'regs' }>, batchOffsets: (v: string) => string[], ld: Loads): Parts {
  const { tm, tn } = p;
  const tilesM = Math.ceil(c.m / tm);
  const tilesN = Math.ceil(c.n / tn);
  const threads = batchCount(c) * tilesM * tilesN;
  const g = grid(Math.ceil(threads / REGS_WG));
  return {
    notes: [describe(c), `variant regs: each thread computes a ${tm} x ${tn} block, operands read from storage`],
    workgroupSize: REGS_WG,
    grid: g,
    body: [
      g.groupLine,
      `let t = group * ${u32Lit(REGS_WG)} + lid;`,
      `if (t >= ${u32Lit(threads)}) {`,
      '  return;',
      '}',
      `let bt = t / ${u32Lit(tilesM * tilesN)};`,
      ...batchOffsets('bt'),
      `let i0 = ((t / ${u32Lit(tilesN)}) % ${u32Lit(tilesM)}) * ${u32Lit(tm)};`,
      `let j0 = (t % ${u32Lit(tilesN)}) * ${u32Lit(tn)};`,
      ...edgeOffsets(c, tm, tn),
      ...accDecls(tm, tn),
      `for (var kk = 0u; kk < ${u32Lit(c.k)}; kk++) {`,
      `  let ak = ${times('kk', c.sAk)};`,
      `  let bk = ${times('kk', c.sBk)};`,
      ...range(tm).map((r) => `  let a_${r} = ${ld.a(`ar_${r} + ak`)};`),
      ...range(tn).map((q) => `  let b_${q} = ${ld.b(`bc_${q} + bk`)};`),
      ...fmaLines(tm, tn).map((l) => `  ${l}`),
      '}',
      ...storeLines(c, tm, tn, (r, q) => `acc_${r}_${q}`),
    ],
  };
}

function tiledKernel(c: MatmulCanon, p: Extract<MatmulPlan, { variant: 'tiled' }>, batchOffsets: (v: string) => string[], ld: Loads): Parts {
  const { tm, tn, wm, wn, bk } = p;
  const bm = tm * wm;
  const bn = tn * wn;
  const wg = wm * wn;
  const tilesM = Math.ceil(c.m / bm);
  const tilesN = Math.ceil(c.n / bn);
  const groups = batchCount(c) * tilesM * tilesN;
  const g = grid(groups);
  const kRagged = c.k % bk !== 0;
  // Cooperative loads of a BM x BK slice of A and a BK x BN slice of B; each thread loads
  // ceil(size / wg) elements. Rows and columns past the edge are clamped (their results are
  // never stored); k past the end loads 0 so that it adds nothing.
  const loadLines = (which: 'a' | 'b'): string[] => {
    const size = which === 'a' ? bm * bk : bk * bn;
    const lines: string[] = [];
    for (const q of range(Math.ceil(size / wg))) {
      const e = plus('lid', q * wg);
      const body: string[] = [];
      if (which === 'a') {
        // consecutive threads walk along k when A is row-major, along rows otherwise
        const alongK = c.sAk <= c.sAm;
        body.push(alongK ? `let r = (${e}) / ${u32Lit(bk)};` : `let r = (${e}) % ${u32Lit(bm)};`);
        body.push(alongK ? `let kq = (${e}) % ${u32Lit(bk)};` : `let kq = (${e}) / ${u32Lit(bm)};`);
        const row = c.m % bm ? `min(i0 + r, ${u32Lit(c.m - 1)})` : '(i0 + r)';
        const kIdx = kRagged ? `min(k0 + kq, ${u32Lit(c.k - 1)})` : '(k0 + kq)';
        const load = ld.a(`a_base + ${times(row, c.sAm)} + ${times(kIdx, c.sAk)}`);
        body.push(`tile_a[kq * ${u32Lit(bm)} + r] = ${kRagged ? `select(0.0, ${load}, k0 + kq < ${u32Lit(c.k)})` : load};`);
      } else {
        const alongN = c.sBn <= c.sBk;
        body.push(alongN ? `let kq = (${e}) / ${u32Lit(bn)};` : `let kq = (${e}) % ${u32Lit(bk)};`);
        body.push(alongN ? `let col = (${e}) % ${u32Lit(bn)};` : `let col = (${e}) / ${u32Lit(bk)};`);
        const col = c.n % bn ? `min(j0 + col, ${u32Lit(c.n - 1)})` : '(j0 + col)';
        const kIdx = kRagged ? `min(k0 + kq, ${u32Lit(c.k - 1)})` : '(k0 + kq)';
        const load = ld.b(`b_base + ${times(kIdx, c.sBk)} + ${times(col, c.sBn)}`);
        body.push(`tile_b[kq * ${u32Lit(bn)} + col] = ${kRagged ? `select(0.0, ${load}, k0 + kq < ${u32Lit(c.k)})` : load};`);
      }
      const guarded = (q + 1) * wg > size;
      lines.push(guarded ? `if (${e} < ${u32Lit(size)}) {` : '{', ...body.map((l) => `  ${l}`), '}');
    }
    return lines;
  };
  return {
    notes: [
      describe(c),
      `variant tiled: a workgroup computes a ${bm} x ${bn} tile, staging ${bk}-deep slices in workgroup memory; each thread a ${tm} x ${tn} block`,
    ],
    decls: [`var<workgroup> tile_a: array<f32, ${bk * bm}>; // [k][row]`, `var<workgroup> tile_b: array<f32, ${bk * bn}>; // [k][col]`],
    workgroupSize: wg,
    grid: g,
    body: [
      g.groupLine,
      `if (group >= ${u32Lit(groups)}) {`,
      '  return; // uniform: the whole workgroup leaves',
      '}',
      `let bt = group / ${u32Lit(tilesM * tilesN)};`,
      ...batchOffsets('bt'),
      `let i0 = ((group / ${u32Lit(tilesN)}) % ${u32Lit(tilesM)}) * ${u32Lit(bm)};`,
      `let j0 = (group % ${u32Lit(tilesN)}) * ${u32Lit(bn)};`,
      `let ti = (lid / ${u32Lit(wn)}) * ${u32Lit(tm)};`,
      `let tj = (lid % ${u32Lit(wn)}) * ${u32Lit(tn)};`,
      ...accDecls(tm, tn),
      `for (var k0 = 0u; k0 < ${u32Lit(c.k)}; k0 += ${u32Lit(bk)}) {`,
      ...loadLines('a').map((l) => `  ${l}`),
      ...loadLines('b').map((l) => `  ${l}`),
      '  workgroupBarrier();',
      `  for (var kq = 0u; kq < ${u32Lit(bk)}; kq++) {`,
      `    let ta = kq * ${u32Lit(bm)} + ti;`,
      `    let tb = kq * ${u32Lit(bn)} + tj;`,
      ...range(tm).map((r) => `    let a_${r} = tile_a[${plus('ta', r)}];`),
      ...range(tn).map((q) => `    let b_${q} = tile_b[${plus('tb', q)}];`),
      ...fmaLines(tm, tn).map((l) => `    ${l}`),
      '  }',
      '  workgroupBarrier();',
      '}',
      'let i0t = i0 + ti;',
      'let j0t = j0 + tj;',
      ...storeLines(c, tm, tn, (r, q) => `acc_${r}_${q}`, 'i0t', 'j0t', bm, bn),
    ],
  };
}

function splitkKernel(c: MatmulCanon, p: Extract<MatmulPlan, { variant: 'splitk' }>, batchOffsets: (v: string) => string[], ld: Loads): Parts {
  const { tm, tn, threads: wg } = p;
  if (wg & (wg - 1)) throw new Error(`internal: splitk needs a power-of-two thread count, got ${wg}`);
  const tilesM = Math.ceil(c.m / tm);
  const tilesN = Math.ceil(c.n / tn);
  const groups = batchCount(c) * tilesM * tilesN;
  const g = grid(groups);
  const cells = tm * tn;
  return {
    notes: [
      describe(c),
      `variant splitk: a workgroup per ${tm} x ${tn} block; its ${wg} threads take every ${wg}th k, then a tree in workgroup memory sums them`,
    ],
    decls: [`var<workgroup> partial: array<f32, ${cells * wg}>; // [cell][thread]`],
    workgroupSize: wg,
    grid: g,
    body: [
      g.groupLine,
      `if (group >= ${u32Lit(groups)}) {`,
      '  return; // uniform: the whole workgroup leaves',
      '}',
      `let bt = group / ${u32Lit(tilesM * tilesN)};`,
      ...batchOffsets('bt'),
      `let i0 = ((group / ${u32Lit(tilesN)}) % ${u32Lit(tilesM)}) * ${u32Lit(tm)};`,
      `let j0 = (group % ${u32Lit(tilesN)}) * ${u32Lit(tn)};`,
      ...edgeOffsets(c, tm, tn),
      ...accDecls(tm, tn),
      `for (var kk = lid; kk < ${u32Lit(c.k)}; kk += ${u32Lit(wg)}) {`,
      `  let ak = ${times('kk', c.sAk)};`,
      `  let bk = ${times('kk', c.sBk)};`,
      ...range(tm).map((r) => `  let a_${r} = ${ld.a(`ar_${r} + ak`)};`),
      ...range(tn).map((q) => `  let b_${q} = ${ld.b(`bc_${q} + bk`)};`),
      ...fmaLines(tm, tn).map((l) => `  ${l}`),
      '}',
      ...tileTreeLines(tm, tn, wg),
      'if (lid == 0u) {',
      ...storeLines(c, tm, tn, (r, q) => `partial[${u32Lit((r * tn + q) * wg)}]`).map((l) => `  ${l}`),
      '}',
    ],
  };
}
