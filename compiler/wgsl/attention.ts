// The attention parts (compiler/ir.ts, built by compiler/attention.ts): causal attention that
// never writes its [..., L, L] scores. A workgroup owns WG consecutive rows of one slice (the
// queries for lse, out and dq; the keys for dk and dv) and walks the other side's rows in
// tiles staged in workgroup memory, only those the causal mask keeps. Each thread keeps its
// own row's vectors and accumulators in registers and recomputes every score it needs: the
// forward pass reads each K, V tile once per query block (flash attention), the backward pass
// recomputes P from the saved row log-sum-exp instead of reading it.
import type { Graph, Node, OpOf } from '../ir.ts';
import { dropoutKey, type Kernel } from '../kernel.ts';
import { assemble, f32Lit, grid, inShapes, kernelName, nodeBindings, numName, offsetLines, simplifyView, u32Lit } from './common.ts';
import type { OperandView } from './contract.ts';

/** Own rows per workgroup, one per thread. */
const WG = 64;
/** Workgroup memory for the tiles, in floats (16 KiB: WebGPU's default limit). */
const TILE_FLOATS = 4096;
/**
 * A thread's own row vectors and accumulators up to this long are separate variables (f32 or
 * vec4) and their loops written out (registers); longer ones are arrays walked by loops the
 * shader compiler keeps rolled (on lavapipe an array indexed in a loop lives in memory).
 */
const UNROLL = 32;
const LOWEST = f32Lit(-3.4028234663852886e38);

const INPUTS: Record<OpOf<'attention'>['part'], string[]> = {
  lse: ['q', 'k'],
  out: ['q', 'k', 'v', 'lse'],
  dq: ['q', 'k', 'v', 'lse', 'g', 'd'],
  dk: ['q', 'k', 'v', 'lse', 'g', 'd'],
  dv: ['q', 'k', 'lse', 'g'],
};

const SUMMARY: Record<OpOf<'attention'>['part'], string> = {
  lse: 'out[i] = log Σ_{j ≤ i} exp(scale q_i·k_j), the row log-sum-exp of the causal scores (online softmax)',
  out: 'out[i] = Σ_{j ≤ i} dropout(exp(scale q_i·k_j − lse_i)) v_j: attention without its scores',
  dq: 'out[i] = scale Σ_{j ≤ i} P_ij (dropout′(g_i·v_j) − d_i) k_j: the gradient of the queries',
  dk: 'out[j] = scale Σ_{i ≥ j} P_ij (dropout′(g_i·v_j) − d_i) q_i: the gradient of the keys',
  dv: 'out[j] = Σ_{i ≥ j} dropout(P_ij) g_i: the gradient of the values',
};

/**
 * @param views operands read in place through strides (compiler/fuse.ts, findAttentionViews):
 *   input position -> the memory read and its stride per axis of the operand's shape
 */
export function emitAttention(node: Node, graph: Graph, views?: ReadonlyMap<number, OperandView>): Kernel {
  const op = node.op as OpOf<'attention'>;
  const part = op.part;
  const { ins, out } = nodeBindings(node, graph, INPUTS[part]);
  // a view binds the memory it reads
  for (const [k, v] of views ?? []) ins[k] = { ...ins[k], dtype: graph.nodes[v.node].dtype, shape: graph.nodes[v.node].shape };
  const shapeOf = (k: number) => graph.nodes[node.inputs[k]].shape; // the operand's, not a view's memory
  const qs = shapeOf(0);
  const L = qs[qs.length - 2];
  const E = qs[qs.length - 1];
  const F = part === 'lse' ? 0 : part === 'out' || part === 'dv' ? node.shape[node.shape.length - 1] : shapeOf(2)[shapeOf(2).length - 1];
  const slices = qs.slice(0, -2).reduce((a, b) => a * b, 1);
  const keyOwned = part === 'dk' || part === 'dv';
  // the other side's rows, per tile: k (and v) for the query-owned parts; q, g, lse (and d) for the key-owned
  const tileRow = keyOwned ? E + F + (part === 'dk' ? 2 : 1) : E + (part === 'lse' ? 0 : F);
  // a power of two, so that tiles fall on the causal diagonal's block edges
  const TJ = 2 ** Math.floor(Math.log2(Math.max(1, Math.min(WG, Math.floor(TILE_FLOATS / tileRow)))));
  const blocks = Math.ceil(L / WG);
  const g = grid(slices * blocks);
  const drops = op.p > 0 && part !== 'lse'; // the log-sum-exp is of the scores before dropout
  const loop = (v: string, n: number, body: string[]): string[] => [`for (var ${v} = 0u; ${v} < ${u32Lit(n)} + z; ${v}++) {`, ...body.map((l) => `  ${l}`), '}'];
  /**
   * A row of n floats as the thread holds it: in units of vec4 when n is a multiple of 4 (a
   * tile row in workgroup memory is then n/4 vec4s, and a dot product or an update takes a
   * quarter of the loads and instructions: attention `out` ran 1.9x faster on lavapipe), else
   * of f32; separate registers up to UNROLL floats, else an array walked by a loop.
   */
  const lanes = (n: number): number => (n % 4 === 0 ? 4 : 1);
  const units = (n: number): number => n / lanes(n);
  const ftype = (n: number): string => (lanes(n) === 4 ? 'vec4<f32>' : 'f32');
  /** Statements for the units 0 .. units(n)-1 of a row: `fn(index, reg)` with reg(name) the unit of a thread's own vector. */
  const each = (n: number, fn: (i: string, reg: (name: string) => string) => string[]): string[] =>
    n <= UNROLL
      ? Array.from({ length: units(n) }, (_, k) => fn(u32Lit(k), (name) => `${name}_${k}`)).flat()
      : loop('x', units(n), fn('x', (name) => `${name}[x]`));
  /** `a · b` of two units of an n-float row. */
  const dotOf = (n: number, a: string, b: string): string => (lanes(n) === 4 ? `dot(${a}, ${b})` : `${a} * ${b}`);
  /** The element j (0 .. n-1) of a thread's own row `name` of n floats. */
  const elem = (name: string, n: number, j: number): string => (lanes(n) === 4 ? `${name}_${j >> 2}[${j & 3}]` : `${name}_${j}`);
  const vecDecl = (name: string, n: number, init: (i: string) => string): string[] => {
    if (n > UNROLL && lanes(n) === 4) return [`var ${name}: array<vec4<f32>, ${n / 4}>;`, ...loop('x', n / 4, [`${name}[x] = vec4<f32>(${[0, 1, 2, 3].map((c) => init(c ? `x * 4u + ${c}u` : 'x * 4u')).join(', ')});`])];
    if (n > UNROLL) return [`var ${name}: array<f32, ${n}>;`, ...loop('x', n, [`${name}[x] = ${init('x')};`])];
    if (lanes(n) === 4) return Array.from({ length: n / 4 }, (_, k) => `var ${name}_${k} = vec4<f32>(${[0, 1, 2, 3].map((c) => init(u32Lit(4 * k + c))).join(', ')});`);
    return Array.from({ length: n }, (_, k) => `var ${name}_${k} = ${init(u32Lit(k))};`);
  };
  // where row b of this slice starts: contiguous rows, or a view's strides (base_x + b * rs_x)
  const viewOf = (name: string) => views?.get(INPUTS[part].indexOf(name));
  const rowOf = (name: string, width: number) => (b: string) => (viewOf(name) ? `base_${name} + ${b} * ${u32Lit(viewOf(name)!.strides.at(-2)!)}` : `(slice * ${u32Lit(L)} + ${b}) * ${u32Lit(width)}`);
  const [rowQ, rowK, rowV, rowG] = [rowOf('q', E), rowOf('k', E), rowOf('v', F), rowOf('g', F)];
  // the first row of this slice in each viewed operand (offsetLines: coordinates of the slice
  // index over the leading axes, times the view's strides)
  const viewed = [...(views ?? new Map<number, OperandView>())].sort((a, b) => a[0] - b[0]);
  const lead = qs.slice(0, -2);
  const viewBases = viewed.length
    ? [
        `// read in place: ${viewed.map(([k, v]) => `${INPUTS[part][k]} with strides (${v.strides.join(', ')})`).join('; ')}`,
        ...offsetLines(simplifyView(lead, viewed.map(([, v]) => v.strides.slice(0, -2))), 'slice', viewed.map(([k]) => `base_${INPUTS[part][k]}`), [], 'sc'),
      ]
    : [];
  const at = (b: string) => `slice * ${u32Lit(L)} + ${b}`;

  const decls: string[] = [];
  const tile = (name: string, width: number) => decls.push(`var<workgroup> ${name}: array<${ftype(width)}, ${TJ * units(width)}>;`);
  // own row: its vectors in registers
  const own: string[] = [];
  const load: string[] = [];
  const stage = (name: string, width: number, src: string, row: (r: string) => string) => {
    const u = units(width);
    const first = `${row(`min(c, ${u32Lit(L - 1)})`)} + ${lanes(width) === 4 ? `(x % ${u32Lit(u)}) * 4u` : `x % ${u32Lit(u)}`}`;
    load.push(
      `for (var x = lid; x < ${u32Lit(TJ * u)}; x += ${u32Lit(WG)}) {`,
      `  let c = t0 + x / ${u32Lit(u)};`,
      ...(lanes(width) === 4
        ? [`  let o = ${first};`, `  ${name}[x] = select(vec4<f32>(), vec4<f32>(${src}[o], ${src}[o + 1u], ${src}[o + 2u], ${src}[o + 3u]), c < ${u32Lit(L)});`]
        : [`  ${name}[x] = select(0.0, ${src}[${first}], c < ${u32Lit(L)});`]),
      '}',
    );
  };
  const ownVec = (name: string, width: number, src: string, row: (r: string) => string) => own.push(...vecDecl(name, width, (i) => `${src}[${row('rr')} + ${i}]`));
  if (keyOwned) {
    ownVec('kr', E, 'k', rowK);
    if (part === 'dk') ownVec('vr', F, 'v', rowV);
    tile('qt', E);
    tile('gt', F);
    tile('lt', 1);
    if (part === 'dk') tile('dt', 1);
    stage('qt', E, 'q', rowQ);
    stage('gt', F, 'g', rowG);
    stage('lt', 1, 'lse', at);
    if (part === 'dk') stage('dt', 1, 'd', at);
  } else {
    ownVec('qr', E, 'q', rowQ);
    if (part === 'dq') ownVec('gr', F, 'g', rowG);
    if (part !== 'lse') own.push(`let lse_r = lse[${at('rr')}];`);
    if (part === 'dq') own.push(`let d_r = d[${at('rr')}];`);
    tile('kt', E);
    stage('kt', E, 'k', rowK);
    if (part !== 'lse') {
      tile('vt', F);
      stage('vt', F, 'v', rowV);
    }
  }
  const accWidth = part === 'lse' ? 0 : part === 'dq' || part === 'dk' ? E : F;
  if (accWidth) own.push(...vecDecl('acc', accWidth, () => '0.0').map((l) => l.replace(/vec4<f32>\(0\.0, 0\.0, 0\.0, 0\.0\)/, 'vec4<f32>()')));
  if (part === 'lse') own.push(`var m = ${LOWEST};`, 'var l = 0.0;');

  // one pair (own row r, tile row jj): i is the query, j the key
  const [iq, jk] = keyOwned ? ['c', 'r'] : ['r', 'c'];
  const pair: string[] = [`let c = t0 + jj;`, `if (${keyOwned ? `c >= r && c < ${u32Lit(L)}` : 'c <= r'}) {`];
  const body: string[] = ['var s = 0.0;'];
  const tileUnit = (t: string, n: number, i: string) => `${t}[jj * ${u32Lit(units(n))} + ${i}]`;
  body.push(...each(E, (i, reg) => [keyOwned ? `s += ${dotOf(E, tileUnit('qt', E, i), reg('kr'))};` : `s += ${dotOf(E, reg('qr'), tileUnit('kt', E, i))};`]));
  body.push(`s *= ${f32Lit(op.scale)};`);
  const maskLine = drops ? `let mk = mask_factor(stream, (slice * ${u32Lit(L)} + ${iq}) * ${u32Lit(L)} + ${jk});` : 'let mk = 1.0;';
  switch (part) {
    case 'lse':
      body.push('let m_new = max(m, s);', 'l = l * exp(m - m_new) + exp(s - m_new);', 'm = m_new;');
      break;
    case 'out':
      body.push('let p = exp(s - lse_r);', maskLine, 'let a = p * mk;', ...each(F, (i, reg) => [`${reg('acc')} += a * ${tileUnit('vt', F, i)};`]));
      break;
    case 'dv':
      body.push('let p = exp(s - lt[jj]);', maskLine, 'let a = p * mk;', ...each(F, (i, reg) => [`${reg('acc')} += a * ${tileUnit('gt', F, i)};`]));
      break;
    case 'dq':
      body.push(
        'let p = exp(s - lse_r);',
        maskLine,
        'var da = 0.0;',
        ...each(F, (i, reg) => [`da += ${dotOf(F, reg('gr'), tileUnit('vt', F, i))};`]),
        'let ds = p * (da * mk - d_r);',
        ...each(E, (i, reg) => [`${reg('acc')} += ds * ${tileUnit('kt', E, i)};`]),
      );
      break;
    case 'dk':
      body.push(
        'let p = exp(s - lt[jj]);',
        maskLine,
        'var da = 0.0;',
        ...each(F, (i, reg) => [`da += ${dotOf(F, tileUnit('gt', F, i), reg('vr'))};`]),
        'let ds = p * (da * mk - dt[jj]);',
        ...each(E, (i, reg) => [`${reg('acc')} += ds * ${tileUnit('qt', E, i)};`]),
      );
      break;
  }
  pair.push(...body.map((l) => `  ${l}`), '}');

  const write: string[] =
    part === 'lse'
      ? [`out[${at('r')}] = m + log(l);`]
      : accWidth > UNROLL
        ? each(accWidth, (i, reg) =>
            lanes(accWidth) === 4
              ? [0, 1, 2, 3].map((c) => `out[(slice * ${u32Lit(L)} + r) * ${u32Lit(accWidth)} + ${i} * 4u + ${c}u] = ${part === 'dq' || part === 'dk' ? `${f32Lit(op.scale)} * ${reg('acc')}[${c}]` : `${reg('acc')}[${c}]`};`)
              : [`out[(slice * ${u32Lit(L)} + r) * ${u32Lit(accWidth)} + ${i}] = ${part === 'dq' || part === 'dk' ? `${f32Lit(op.scale)} * ${reg('acc')}` : reg('acc')};`],
          )
        : Array.from({ length: accWidth }, (_, j) => {
            const v = elem('acc', accWidth, j);
            return `out[(slice * ${u32Lit(L)} + r) * ${u32Lit(accWidth)} + ${u32Lit(j)}] = ${part === 'dq' || part === 'dk' ? `${f32Lit(op.scale)} * ${v}` : v};`;
          });

  // the tiles this block needs: keys 0 .. its last query (query-owned), queries from its first key on (key-owned)
  const tiles = keyOwned
    ? [`let t_start = r0;`, `let t_end = ${u32Lit(L)};`]
    : [`let t_start = 0u;`, `let t_end = min(r0 + ${u32Lit(WG)}, ${u32Lit(L)});`];
  const threshold = Math.min(Math.max(Math.ceil(op.p * 16777216), 0), 16777216);
  if (drops)
    decls.push(
      [
        '// dropout of score (i, j) at flat index f, as the dropout op draws it: 1/(1-p) kept, 0 dropped, 1 off training',
        '// (counter_bits24 of compiler/wgsl/common.ts with its index-free part, `stream`, computed once)',
        'fn mask_factor(stream: u32, f: u32) -> f32 {',
        '  if (step_params.training == 0u) {',
        '    return 1.0;',
        '  }',
        `  return select(0.0, ${f32Lit(1 / (1 - op.p))}, (pcg_hash(f + stream) >> 8u) >= ${u32Lit(threshold)});`,
        '}',
      ].join('\n'),
    );
  const name = kernelName('attention', part, `s${numName(op.scale)}`, ...(drops ? [`p${numName(op.p)}`] : []), ...inShapes(node, graph), ...viewed.map(([k, v]) => `${INPUTS[part][k]}v${v.strides.join('_')}`));
  return assemble({
    name,
    summary: SUMMARY[part],
    notes: [
      `scale ${op.scale}${drops ? `, dropout p = ${op.p} (the site's key bound at run time)` : ''}; ${slices} slices of L = ${L}, e = ${E}${F ? `, f = ${F}` : ''}`,
      `a workgroup per ${WG} ${keyOwned ? 'keys' : 'queries'} of a slice; the ${keyOwned ? 'queries' : 'keys'} in tiles of ${TJ} rows in workgroup memory`,
    ],
    ins,
    out,
    usesStep: true,
    ...(drops ? { keys: [op.key] } : {}),
    decls,
    workgroupSize: WG,
    grid: g,
    body: [
      g.groupLine,
      `if (group >= ${u32Lit(slices * blocks)}) {`,
      '  return; // uniform: the whole workgroup leaves',
      '}',
      'let z = step_params.zero; // 0: keeps long loops rolled',
      ...(drops ? [`let stream = pcg_hash(${dropoutKey(0)} + pcg_hash(step_params.step + pcg_hash(step_params.seed)));`] : []),
      `let slice = group / ${u32Lit(blocks)};`,
      ...viewBases,
      `let r0 = (group % ${u32Lit(blocks)}) * ${u32Lit(WG)};`,
      'let r = r0 + lid; // this thread\'s row',
      `let live = r < ${u32Lit(L)};`,
      `let rr = min(r, ${u32Lit(L - 1)}); // a row to read for threads past the end`,
      ...own,
      ...tiles,
      `for (var t0 = t_start; t0 < t_end; t0 += ${u32Lit(TJ)}) {`,
      ...load.map((l) => `  ${l}`),
      '  workgroupBarrier();',
      '  if (live) {',
      ...loop('jj', TJ, pair).map((l) => `    ${l}`),
      '  }',
      '  workgroupBarrier();',
      '}',
      'if (live) {',
      ...write.map((l) => `  ${l}`),
      '}',
    ],
  });
}
