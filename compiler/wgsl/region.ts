// The kernel of a fused region (compiler/fuse.ts): one thread per token block computes every
// member of the region for its block, member after member, each as a loop nest over the
// member's block with its operands read through strided views. Values read only inside the
// region live in private arrays (reused once their last reader has run); members read outside
// are written to device memory. Uniform members (computed from parameters alone) are computed
// whole by every thread and written by thread 0.
//
// Bindings, in order: the leaves (the parameter arena once, then each other value read from
// device memory), then the outputs (the gradient arena once, then each other written value);
// the step uniform last when a member draws dropout. `RegionKernel.bindings` names them so
// that the scheduler can bind the right buffers.
import { createHash } from 'node:crypto';
import { numel, strides, type DType, type Graph, type Node, type OpOf } from '../ir.ts';
import { dropoutKey, dropoutKeysDecl, type Kernel } from '../kernel.ts';
import { blockDims, isConstNode, memberReads, readStrides, tokenSplit, type OperandRead, type Region } from '../fuse.ts';
import { f16Storage, f32Down, f32Lit, f32Up, grid, INF_HELPERS, PCG_WGSL, STEP_STRUCT, u32Lit } from './common.ts';
import { UNARY_WGSL } from './elementwise.ts';

/** What a binding of a region kernel holds. */
/** The arenas are bound from `base` (floats, 256-byte aligned) on, so that regions of blocks alike share one kernel. */
export type RegionBinding = { kind: 'params'; base: number } | { kind: 'grads'; base: number } | { kind: 'value'; node: number; write: boolean };

export interface RegionKernel extends Kernel {
  bindings: RegionBinding[];
}

const WG = 64;
/** Members that compute each element from the same element of their operands' loops. */
const ELEMENTWISE = new Set(['unary', 'affine', 'clamp', 'inrange', 'expand', 'binary', 'dropout', 'causal_mask']);
const LOWEST = f32Lit(-3.4028234663852886e38);

/** How the region reads one value: a private array, or a binding (with a parameter's arena offset). */
type Home = { kind: 'array'; name: string; whole: boolean } | { kind: 'binding'; name: string; dtype: DType; offset: number; tok: boolean; size: number } | { kind: 'const'; node: Node };

/**
 * @param paramOffset a parameter's offset in the arena, in floats
 * @param gradParam the arena offset of the gradient a node is, if it is one
 * @param rootOf the node whose device memory a value is (a reshape scheduled alone is a view)
 */
export function emitRegion(
  g: Graph,
  r: Region,
  paramOffset: (index: number) => number,
  gradParam: (node: number) => number | undefined,
  rootOf: (node: number) => number,
): RegionKernel {
  const nodes = g.nodes;
  const members = new Set(r.members);
  const T = r.tokens;
  // ---- bindings
  const bindings: RegionBinding[] = [];
  const decl: string[] = [];
  const halves: string[] = []; // the bindings holding f16 (compiler/precision.ts)
  const bind = (b: RegionBinding, name: string, dtype: string, access: string, what: string): void => {
    if (dtype === 'f16') halves.push(name);
    decl.push(`@group(0) @binding(${bindings.length}) var<storage, ${access}> ${name}: array<${dtype}>; // ${what}`);
    bindings.push(b);
  };
  const leafNodes = r.leaves.filter((l) => !isConstNode(nodes[l]));
  const home = new Map<number, Home>();
  const paramLeaves = leafNodes.filter((l) => nodes[l].op.kind === 'param');
  const paramBase = Math.min(...paramLeaves.map((l) => paramOffset((nodes[l].op as OpOf<'param'>).index)));
  if (paramLeaves.length) bind({ kind: 'params', base: paramBase }, 'params', 'f32', 'read', 'the parameter arena, from the first parameter read here');
  const leafName = new Map<number, string>();
  for (const l of leafNodes) {
    const n = nodes[l];
    if (n.op.kind === 'param') {
      home.set(l, { kind: 'binding', name: 'params', dtype: 'f32', offset: paramOffset(n.op.index) - paramBase, tok: false, size: numel(n.shape) });
      continue;
    }
    const root = rootOf(l);
    if (!leafName.has(root)) {
      const name = `in${leafName.size}`;
      leafName.set(root, name);
      bind({ kind: 'value', node: root, write: false }, name, nodes[root].dtype, 'read', `[${nodes[root].shape.join(', ')}]`);
    }
    home.set(l, { kind: 'binding', name: leafName.get(root) as string, dtype: n.dtype, offset: 0, tok: false, size: numel(n.shape) });
  }
  for (const l of r.leaves) if (isConstNode(nodes[l])) home.set(l, { kind: 'const', node: nodes[l] });
  const gradOuts = r.outputs.filter((o) => gradParam(o) !== undefined);
  const gradBase = Math.min(...gradOuts.map((o) => gradParam(o) as number));
  if (gradOuts.length) bind({ kind: 'grads', base: gradBase }, 'grads', 'f32', 'read_write', 'the gradient arena, from the first gradient written here');
  const outName = new Map<number, string>();
  for (const o of r.outputs) {
    if (gradParam(o) !== undefined) continue;
    const name = `out${outName.size}`;
    outName.set(o, name);
    bind({ kind: 'value', node: o, write: true }, name, nodes[o].dtype, 'read_write', `[${nodes[o].shape.join(', ')}]`);
  }

  // ---- private arrays: members read inside the region, reused after their last reader
  const lastUse = new Map<number, number>();
  const aliasOf = (id: number): number => {
    while (members.has(id) && nodes[id].op.kind === 'reshape') id = nodes[id].inputs[0];
    return id;
  };
  const outputsSet = new Set(r.outputs);
  const sizeOf = (m: number): number => (r.modes.get(m) === 'uni' ? numel(nodes[m].shape) : numel(nodes[m].shape) / T);
  // reshapes written out by the member they reshape, element by element (no copy loop)
  const storedWith = new Set(
    r.members.filter((x) => {
      const a = aliasOf(x);
      return x !== a && outputsSet.has(x) && members.has(a) && r.modes.get(x) === r.modes.get(a) && sizeOf(x) === sizeOf(a);
    }),
  );
  r.members.forEach((m, pos) => {
    // a reshape reads its input only when it is written out (a copy)
    if (nodes[m].op.kind === 'reshape' && (!r.outputs.includes(m) || storedWith.has(m))) return;
    for (const i of nodes[m].inputs) if (members.has(aliasOf(i))) lastUse.set(aliasOf(i), pos);
  });
  const free = new Map<number, string[]>();
  const arrays: Array<{ name: string; size: number }> = [];

  // ---- loops: consecutive elementwise members over the same block share one loop nest, each
  // reading the ones before it as scalars (no private array when nothing outside reads it)
  const posOf = new Map(r.members.map((m, pos) => [m, pos]));
  const group: number[] = [];
  const scalar = new Map<number, number>(); // member -> its position, for members of a shared loop
  r.members.forEach((m, pos) => {
    const loop = plainLoop(nodes[m], r.modes.get(m) === 'uni');
    const prev = pos > 0 ? plainLoop(nodes[r.members[pos - 1]], r.modes.get(r.members[pos - 1]) === 'uni') : null;
    const joins =
      loop !== null &&
      prev !== null &&
      prev.key === loop.key &&
      nodes[m].inputs.every((i, k) => {
        const a = aliasOf(i);
        if (!members.has(a) || group[posOf.get(a) as number] !== group[pos - 1]) return true;
        return a === i && loop.offs[k] === loop.own; // a value of this loop, at this element
      });
    group.push(joins ? group[pos - 1] : pos);
    if (loop) scalar.set(m, pos);
  });
  /** Members some reader outside their shared loop reads (or reads through a reshape): these need private arrays. */
  const needsArray = new Set<number>();
  r.members.forEach((m, pos) => {
    if (nodes[m].op.kind === 'reshape' && (!r.outputs.includes(m) || storedWith.has(m))) return;
    for (const i of nodes[m].inputs) {
      const a = aliasOf(i);
      if (members.has(a) && (a !== i || nodes[m].op.kind === 'reshape' || group[posOf.get(a) as number] !== group[pos] || !scalar.has(a))) needsArray.add(a);
    }
  });
  const groupEnd = (pos: number): boolean => pos === r.members.length - 1 || group[pos + 1] !== group[pos];

  // ---- code
  const body: string[] = [];
  let open: { loops: Array<{ v: string; d: number }>; pre: string[]; inner: string[] } | null = null;
  const keys: number[] = []; // the dropout sites' keys, bound at run time
  const notes: string[] = [];
  const toFree: Array<{ pos: number; name: string; size: number }> = [];

  r.members.forEach((m, pos) => {
    const n = nodes[m];
    const uni = r.modes.get(m) === 'uni';
    notes.push(`${n.op.kind}${opAttrs(n)} [${n.shape.join(', ')}]${n.loc ? ` line ${n.loc.line}` : ''}`);
    // release arrays whose last reader ran before this member's loop
    for (let k = toFree.length - 1; k >= 0 && group[pos] === pos; k--) {
      if (toFree[k].pos < pos) {
        const f = toFree[k];
        (free.get(f.size) ?? free.set(f.size, []).get(f.size) as string[]).push(f.name);
        toFree.splice(k, 1);
      }
    }
    if (n.op.kind === 'reshape') {
      const src = n.inputs[0];
      const h = home.get(src); // none: a scalar of a loop, stored with it (storedWith)
      if (h) home.set(m, h.kind === 'binding' ? { ...h, size: numel(n.shape) } : h);
      if (outputsSet.has(m) && !storedWith.has(m)) body.push(...storeCopy(m));
      return;
    }
    const size = sizeOf(m);
    let arr: string | undefined;
    if (lastUse.has(m) && needsArray.has(m)) {
      arr = free.get(size)?.pop();
      if (!arr) {
        arr = `v${arrays.length}`;
        arrays.push({ name: arr, size });
      }
      home.set(m, { kind: 'array', name: arr, whole: uni });
      toFree.push({ pos: lastUse.get(m) as number, name: arr, size });
    }
    // reshapes of this member written out are stored with it, element by element
    const alsoOut = r.members.filter((x) => storedWith.has(x) && aliasOf(x) === m);
    const outs = (v: string, off: string): string[] => [...(outputsSet.has(m) ? [store(m, off, v)] : []), ...alsoOut.map((x) => store(x, off, v))];
    const what = `// ${n.op.kind}${opAttrs(n)} [${n.shape.join(', ')}]${n.loc ? ` (line ${n.loc.line})` : ''}`;
    const shared = group[pos] !== pos || !groupEnd(pos);
    const parts = memberLines(n, pos, uni, (v, off) => {
      if (shared) return [`s${pos} = ${v};`, ...(arr ? [`${arr}[${off}] = s${pos};`] : []), ...outs(`s${pos}`, off)];
      const stores = outs('y', off);
      if (arr && stores.length) return [`{ let y = ${v}; ${arr}[${off}] = y; ${stores.join(' ')} }`];
      if (arr) return [`${arr}[${off}] = ${v};`];
      return stores.length === 1 ? outs(v, off) : stores.length ? [`{ let y = ${v}; ${stores.join(' ')} }`] : [];
    });
    if (!shared) {
      body.push(what, ...parts.pre, ...loopNest(parts.loops, parts.inner));
      return;
    }
    if (group[pos] === pos) open = { loops: parts.loops, pre: [], inner: [] };
    const o = open as NonNullable<typeof open>;
    o.pre.push(...parts.pre);
    o.inner.push(what, `var s${pos}: f32;`, '{', ...parts.inner.map((l) => `  ${l}`), '}');
    if (groupEnd(pos)) body.push(`// one loop for the ${pos - group[pos] + 1} ops below`, ...o.pre, ...loopNest(o.loops, o.inner));
  });

  /** A member's loop: the block it iterates over, and the offsets it reads its operands at. */
  function memberSpace(n: Node, uni: boolean): { reads: OperandRead[]; dims: number[] } {
    const reads: OperandRead[] = uni ? uniformReads(n, g) : (memberReads(n, g, T) as OperandRead[]);
    const dims = uni ? [...n.shape] : blockDims(n.shape, tokenSplit(n.shape, T) as { axis: number; lo: number });
    return { reads, dims };
  }

  /** An elementwise member's loop (it may share one), or null. */
  function plainLoop(n: Node, uni: boolean): { key: string; own: string; offs: string[] } | null {
    if (!ELEMENTWISE.has(n.op.kind)) return null;
    const { reads, dims } = memberSpace(n, uni);
    const ivars = dims.map((_, a) => `i${a}`);
    return { key: `${uni}:${dims.join('x')}`, own: linear(ivars, dims, strides(dims)), offs: reads.map((rd) => linear(ivars, dims, rd.local)) };
  }

  /** The statement writing member m's element at local offset `off`. */
  function store(m: number, off: string, v: string): string {
    const uni = r.modes.get(m) === 'uni';
    const gp = gradParam(m);
    const target = gp !== undefined ? `grads[${plus(gp - gradBase ? u32Lit(gp - gradBase) : '', off)}]` : `${outName.get(m)}[${uni ? off : `t * ${u32Lit(sizeOf(m))} + ${off}`}]`;
    return uni ? `if (t == 0u) { ${target} = ${v}; }` : `${target} = ${v};`;
  }

  /** A reshape output: copy its block from where its input is held. */
  function storeCopy(m: number): string[] {
    const size = sizeOf(m);
    const h = home.get(m) as Home;
    const src = (off: string) => readHome(h, off, r.modes.get(m) === 'uni' ? '0u' : `t * ${u32Lit(size)}`, 'f32');
    return [`for (var e = 0u; e < ${u32Lit(size)} + z; e++) {`, `  ${store(m, 'e', src('e'))}`, '}'];
  }

  /** An element of a held value: `base` is the block's start in the whole value (bindings and whole arrays only). */
  function readHome(h: Home, off: string, base: string, as: 'f32' | 'i32'): string {
    if (h.kind === 'const') {
      const n = h.node;
      const e = plus(base, off);
      if (n.op.kind === 'fill') return f32Lit(n.op.value);
      const d = n.shape[n.shape.length - 1];
      return `select(0.0, 1.0, (${e}) % ${u32Lit(d)} == ((${e}) / ${u32Lit(d)}) % ${u32Lit(d)})`;
    }
    if (h.kind === 'array') return `${h.name}[${h.whole ? plus(base, off) : off}]`;
    const idx = plus(plus(h.offset ? u32Lit(h.offset) : '', base), off);
    const v = `${h.name}[${idx}]`;
    return (h.dtype === 'f16' ? 'f32' : h.dtype) === as ? v : as === 'f32' ? `f32(${v})` : `i32(${v})`; // f16: f16Storage converts
  }

  /** The base of operand k's block for the current thread (t), as a WGSL expression. */
  function readBase(read: OperandRead, operand: number): string {
    const h = home.get(operand);
    if (read.same || !h) return '0u'; // !h: a scalar of this member's loop
    if (h.kind === 'array' && !h.whole) return '0u'; // aligned: the thread's own block
    if (read.aligned) return `t * ${u32Lit(numel(nodes[operand].shape) / T)}`;
    const w = strides(read.blockDims);
    const terms = read.blockDims.flatMap((d, k) => {
      if (d === 1 || read.blockStrides[k] === 0) return [];
      const c = w[k] === 1 ? 't' : `(t / ${u32Lit(w[k])})`;
      const coord = k === 0 && w[k] * d === T ? c : `(${c} % ${u32Lit(d)})`;
      return [read.blockStrides[k] === 1 ? coord : `${coord} * ${u32Lit(read.blockStrides[k])}`];
    });
    return terms.length ? terms.join(' + ') : '0u';
  }

  /** Lines computing member n; `put(value, localOffset)` gives the statements storing one element. */
  function memberLines(n: Node, pos: number, uni: boolean, put: (v: string, off: string) => string[]): { pre: string[]; loops: Array<{ v: string; d: number }>; inner: string[] } {
    const { reads, dims } = memberSpace(n, uni);
    const bases = n.inputs.map((i, k) => readBase(reads[k], i));
    const pre: string[] = [];
    const baseNames = bases.map((b, k) => {
      if (b === '0u') return '0u';
      const name = `b${pos}_${k}`;
      pre.push(`let ${name} = ${b};`);
      return name;
    });
    const src = (k: number, off: string, as: 'f32' | 'i32' = 'f32') => {
      const held = scalar.get(n.inputs[k]); // computed earlier in the same loop, at this element
      return held !== undefined && group[held] === group[pos] ? `s${held}` : readHome(home.get(n.inputs[k]) as Home, off, baseNames[k], as);
    };
    const outStrides = strides(dims);
    const ivars = dims.map((_, a) => `i${a}`);
    const lin = (st: readonly number[], skip: Set<number> = new Set()) => linear(ivars, dims, st, skip);
    const outOff = lin(outStrides);
    const op = n.op;
    let inner: string[];
    const skip = new Set<number>();
    switch (op.kind) {
      case 'unary':
      case 'affine':
      case 'clamp':
      case 'inrange':
      case 'expand': {
        const x = src(0, lin(reads[0].local));
        inner = [`let x = ${x};`, ...unaryPre(n), ...put(unaryExpr(n), outOff)];
        break;
      }
      case 'binary': {
        const sym = { add: '+', sub: '-', mul: '*', div: '/' }[op.fn];
        inner = put(`${src(0, lin(reads[0].local))} ${sym} ${src(1, lin(reads[1].local))}`, outOff);
        break;
      }
      case 'dropout': {
        keys.push(op.key);
        const threshold = Math.min(Math.max(Math.ceil(op.p * 16777216), 0), 16777216);
        const flat = uni ? outOff : `t * ${u32Lit(numel(dims))} + ${outOff}`;
        inner = [
          `let x = ${src(0, lin(reads[0].local))};`,
          `let keep = step_params.training == 0u || counter_bits24(step_params.seed, step_params.step, ${dropoutKey(keys.length - 1)}, ${flat}) >= ${u32Lit(threshold)};`,
          ...put(`select(0.0, select(x, x * ${f32Lit(1 / (1 - op.p))}, step_params.training != 0u), keep)`, outOff),
        ];
        break;
      }
      case 'causal_mask': {
        const r = dims.length;
        inner = put(`select(${src(0, lin(reads[0].local))}, ${f32Lit(op.fill)}, i${r - 1} > i${r - 2})`, outOff);
        break;
      }
      case 'permute':
        inner = put(src(0, lin(reads[0].local)), outOff);
        break;
      case 'slice': {
        const a = uni ? op.axis : localAxis(n, op.axis);
        const extra = op.start * reads[0].local[a];
        inner = put(src(0, plus(lin(reads[0].local), extra ? u32Lit(extra) : '')), outOff);
        break;
      }
      case 'pad': {
        const a = uni ? op.axis : localAxis(n, op.axis);
        const len = nodes[n.inputs[0]].shape[op.axis];
        const sh = op.start * reads[0].local[a];
        const off = lin(reads[0].local);
        const read = src(0, sh ? `${off} - ${u32Lit(sh)}` : off);
        inner = [
          `var v = 0.0;`,
          `if (i${a} >= ${u32Lit(op.start)} && i${a} < ${u32Lit(op.start + len)}) {`,
          `  v = ${read};`,
          '}',
          ...put('v', outOff),
        ];
        break;
      }
      case 'sum': {
        const x = nodes[n.inputs[0]].shape;
        const split = uni ? { axis: 0, lo: x[0] } : (tokenSplit(n.shape, T) as { axis: number; lo: number });
        const red = op.axes.filter((a) => x[a] !== 1).map((a) => (uni ? a : a - split.axis));
        const xs = readStrides(n, g)?.[0] as number[];
        const redLoops = red.map((la) => ({ v: `r${la}`, d: uni ? x[la] : x[la + split.axis], s: uni ? xs[la] : xs[la + split.axis] }));
        const offIn = plus(lin(reads[0].local), redLoops.map((l) => (l.s === 1 ? l.v : `${l.v} * ${u32Lit(l.s)}`)).join(' + '));
        inner = ['var acc = 0.0;', ...loopNest(redLoops.map((l) => ({ v: l.v, d: l.d })), [`acc += ${src(0, offIn)};`]), ...put('acc', outOff)];
        break;
      }
      case 'softmax': {
        const last = dims.length - 1;
        const d = dims[last];
        skip.add(last);
        const sIn = reads[0].local[last];
        const rowIn = lin(reads[0].local, skip);
        const rowOut = lin(outStrides, skip);
        const x = (j: string) => src(0, plus(rowIn, sIn === 1 ? j : `${j} * ${u32Lit(sIn)}`));
        inner = [
          `var mx = ${LOWEST};`,
          `for (var j = 0u; j < ${u32Lit(d)} + z; j++) { mx = max(mx, ${x('j')}); }`,
          'var total = 0.0;',
          `for (var j = 0u; j < ${u32Lit(d)} + z; j++) { total += exp(${x('j')} - mx); }`,
          `for (var j = 0u; j < ${u32Lit(d)} + z; j++) {`,
          ...put(`exp(${x('j')} - mx) / total`, plus(rowOut, 'j')).map((l) => `  ${l}`),
          '}',
        ];
        break;
      }
      case 'matmul': {
        const a = nodes[n.inputs[0]].shape;
        const b = nodes[n.inputs[1]].shape;
        const k = a[a.length - 1];
        const nn = b[b.length - 1];
        const last = dims.length - 1;
        if (dims[last] * k <= ROW_TERMS) {
          // row by row: the row of the left operand in registers, the row's outputs unrolled,
          // so that a private right operand is read at constant indices
          skip.add(last);
          const noLast = new Set([last]);
          const bOff = lin(reads[1].local, noLast);
          const hb = home.get(n.inputs[1]) as Home;
          let right = (j: number, q: number) => src(1, plus(bOff, u32Lit(j * reads[1].local[last] + q * nn)));
          if (hb.kind === 'binding' && reads[1].local.every((st, ax) => ax === last || st === 0 || dims[ax] === 1)) {
            // a right operand in device memory is staged once into a private array
            const staged = `w${pos}`;
            pre.push(`var ${staged}: array<f32, ${k * nn}>;`, ...loopNest([{ v: 'e', d: k * nn }], [`${staged}[e] = ${src(1, plus(bOff, 'e'))};`], true));
            right = (j: number, q: number) => `${staged}[${u32Lit(j * reads[1].local[last] + q * nn)}]`;
          }
          inner = [
            ...Array.from({ length: k }, (_, q) => `let a${q} = ${src(0, plus(lin(reads[0].local, noLast), u32Lit(q)))};`),
            ...Array.from({ length: dims[last] }, (_, j) => {
              const terms = Array.from({ length: k }, (_, q) => `a${q} * ${right(j, q)}`);
              return put(terms.join(' + '), plus(lin(outStrides, noLast), u32Lit(j * outStrides[last])));
            }).flat(),
          ];
          break;
        }
        inner = [
          'var acc = 0.0;',
          `for (var q = 0u; q < ${u32Lit(k)}; q++) {`,
          `  acc += ${src(0, plus(lin(reads[0].local), 'q'))} * ${src(1, plus(lin(reads[1].local), nn === 1 ? 'q' : `q * ${u32Lit(nn)}`))};`,
          '}',
          ...put('acc', outOff),
        ];
        break;
      }
      case 'gather':
      case 'onehot': {
        const kIdx = op.kind === 'gather' ? 1 : 0;
        const idxShape = nodes[n.inputs[kIdx]].shape;
        const restAxes = n.shape.length - idxShape.length; // the trailing axes of the output past the index's
        const local0 = dims.length - restAxes;
        const row = `row${pos}`;
        if (op.kind === 'gather') {
          const table = nodes[n.inputs[0]].shape;
          const ts = strides(table);
          const restOff = linear(ivars.slice(local0), dims.slice(local0), ts.slice(1));
          inner = [
            `let ${row} = ${src(1, lin(reads[1].local), 'i32')};`,
            `var v = 0.0;`,
            `if (${row} >= 0 && ${row} < ${table[0]}) {`,
            `  v = ${readHome(home.get(n.inputs[0]) as Home, plus(`u32(${row}) * ${u32Lit(ts[0])}`, restOff), '0u', 'f32')};`,
            '}',
            ...put('v', outOff),
          ];
        } else {
          inner = [`let ${row} = ${src(0, lin(reads[0].local), 'i32')};`, ...put(`select(0.0, 1.0, ${row} == i32(i${dims.length - 1}))`, outOff)];
        }
        break;
      }
      default:
        throw new Error(`internal: ${op.kind} cannot be a region member`);
    }
    const loops = dims.map((d, a) => ({ v: ivars[a], d })).filter((_, a) => !skip.has(a));
    return { pre, loops, inner };
  }

  /** The axis of a block of n (blockDims) that output axis `axis` is. */
  function localAxis(n: Node, axis: number): number {
    const s = tokenSplit(n.shape, T) as { axis: number; lo: number };
    return axis - s.axis;
  }

  function unaryPre(n: Node): string[] {
    return n.op.kind === 'unary' && n.op.fn === 'silu_grad' ? ['let s = 1.0 / (1.0 + exp(-x));'] : [];
  }
  function unaryExpr(n: Node): string {
    const op = n.op;
    switch (op.kind) {
      case 'unary':
        return UNARY_WGSL[op.fn];
      case 'affine':
        return `${f32Lit(op.scale)} * x + ${f32Lit(op.shift)}`;
      case 'clamp':
        return `min(max(x, ${f32Lit(op.lo)}), ${f32Lit(op.hi)})`;
      case 'inrange':
        return `select(0.0, 1.0, x >= ${f32Lit(f32Up(op.lo))} && x <= ${f32Lit(f32Down(op.hi))})`;
      default:
        return 'x'; // expand
    }
  }

  // ---- assembly
  const gr = grid(Math.ceil(T / WG));
  const main = [
    `@compute @workgroup_size(${WG})`,
    'fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {',
    `  ${gr.groupLine}`,
    `  let t = group * ${u32Lit(WG)} + lid; // this thread's token block`,
    `  if (t >= ${u32Lit(T)}) {`,
    '    return;',
    '  }',
    '  let z = step_params.zero; // 0: keeps loop bounds opaque to the shader compiler',
    ...arrays.map((a) => `  var ${a.name}: array<f32, ${a.size}>;`),
    ...indent(body, 1),
    '}',
  ].join('\n');
  const sections = [decl.join('\n')];
  // every region reads step_params.zero; dropout also the seed, step and training flag
  sections.push(STEP_STRUCT, `@group(0) @binding(${bindings.length}) var<uniform> step_params: StepParams;`);
  if (keys.length) sections.push(dropoutKeysDecl(bindings.length + 1, keys.length), PCG_WGSL);
  for (const [call, def] of Object.entries(INF_HELPERS)) if (main.includes(call)) sections.push(def);
  sections.push(main);
  const code = f16Storage(sections.join('\n\n') + '\n', halves);
  // named by the code without its comments, so that moving a source line renames nothing
  const hash = createHash('sha256').update(code.replace(/\/\/[^\n]*/g, '')).digest('hex').slice(0, 10);
  const name = `fused_${r.members.length}ops_${hash}`;
  const [x, y] = gr.workgroups;
  const header = [
    `// mtc kernel ${name}`,
    `// a fused region of ${r.members.length} ops, one thread per token block (${T} blocks); it fuses (with their .mt lines):`,
    ...notes.map((l) => `//   ${l}`),
    `// dispatch: ${x}${y > 1 ? ` x ${y}` : ''} workgroup${x * y > 1 ? 's' : ''} of ${WG} threads`,
  ].join('\n');
  return {
    name,
    code: `${header}\n\n${code}`,
    usesStep: true,
    workgroups: gr.workgroups,
    summary: `${r.members.length} fused ops, ${nodes[r.members[0]].name} .. ${nodes[r.members[r.members.length - 1]].name}`,
    bindings,
    ...(keys.length ? { keys } : {}),
  };
}

/** Reads of a uniform member: its whole value, operands at their own strides. */
function uniformReads(n: Node, g: Graph): OperandRead[] {
  if (n.op.kind === 'reshape') return [];
  const per = readStrides(n, g) as number[][];
  return per.map((local) => ({ local, blockDims: [], blockStrides: [], aligned: false, same: true }));
}

const opAttrs = (n: Node): string => {
  const op = n.op as Record<string, unknown>;
  const parts = Object.entries(op)
    .filter(([k]) => k !== 'kind' && !(n.op.kind === 'dropout' && k === 'key')) // a dropout site's key is bound at run time
    .map(([k, v]) => `${k}=${Array.isArray(v) ? `[${v.join(',')}]` : String(v)}`);
  return parts.length ? ` ${parts.join(' ')}` : '';
};

/** `a + b` leaving out empty and zero parts. */
function plus(a: string, b: string): string {
  const parts = [a, b].filter((x) => x && x !== '0u');
  return parts.length ? parts.join(' + ') : '0u';
}

/** Σ var·stride over the axes with size > 1 and a nonzero stride. */
function linear(vars: readonly string[], dims: readonly number[], st: readonly number[], skip: Set<number> = new Set()): string {
  const terms = vars.flatMap((v, a) => (skip.has(a) || dims[a] === 1 || st[a] === 0 ? [] : [st[a] === 1 ? v : `${v} * ${u32Lit(st[a])}`]));
  return terms.length ? terms.join(' + ') : '0u';
}

/**
 * Innermost loops of at most UNROLL iterations keep constant bounds (unrolled: 1.5x faster on
 * lavapipe); the others are `n + z` (z = 0 at run time), which the shader compiler cannot
 * unroll: unrolling every loop made a 4-op region 2.5x faster to run but 40x slower to compile
 * (6 s), and compile time is paid on every new machine.
 */
const UNROLL = 8;
/** Multiply-adds of one output row above which a region's matmul is not unrolled by rows. */
const ROW_TERMS = 256;
function loopNest(loops: Array<{ v: string; d: number }>, inner: string[], opaque = false): string[] {
  const real = loops.filter((l) => l.d > 1);
  const consts = loops.filter((l) => l.d === 1).map((l) => `let ${l.v} = 0u;`);
  let lines = inner;
  for (let k = real.length - 1; k >= 0; k--) {
    const l = real[k];
    // the innermost loop, when short, is left to the shader compiler to unroll
    const bound = !opaque && k === real.length - 1 && l.d <= UNROLL ? u32Lit(l.d) : `${u32Lit(l.d)} + z`;
    lines = [`for (var ${l.v} = 0u; ${l.v} < ${bound}; ${l.v}++) {`, ...lines.map((x) => `  ${x}`), '}'];
  }
  return consts.length || real.length ? ['{', ...[...consts, ...lines].map((x) => `  ${x}`), '}'] : ['{', ...inner.map((x) => `  ${x}`), '}'];
}

function indent(lines: string[], level: number): string[] {
  const pad = '  '.repeat(level);
  return lines.map((l) => (l ? pad + l : l));
}

