// Shape rules: one per op kind. Each takes the input shapes/dtypes and the op's attributes
// and returns the output shape, or a sentence saying why the inputs do not fit. The builder
// (compiler/builder.ts) turns that sentence into a diagnostic at the source position.
import { broadcastShapes, fmtShape, numel, type DType, type Op, type OpKind, type OpOf, type Shape } from './ir.ts';

export interface ShapeIn {
  shape: Shape;
  dtype: DType;
}
/** Output shape and dtype, or an error sentence. `given` is the requested shape for ops that take one. */
export type ShapeResult = { shape: number[]; dtype: DType } | { error: string };
type Rule<K extends OpKind> = (op: OpOf<K>, ins: ShapeIn[], given?: Shape) => ShapeResult;

const f32 = (shape: Shape): ShapeResult => ({ shape: [...shape], dtype: 'f32' });
const same = (_op: unknown, ins: ShapeIn[]): ShapeResult => f32(ins[0].shape);
const needGiven = (given?: Shape): number[] => {
  if (!given) throw new Error('internal: op needs an explicit output shape');
  return [...given];
};

const VERB = { add: 'add', sub: 'subtract', mul: 'multiply', div: 'divide' } as const;

/** The attention parts' shapes (compiler/ir.ts): Q, K [..., L, e], V [..., L, f]. */
const attentionShape: Rule<'attention'> = (op, ins) => {
  const [q, k] = ins;
  const v = op.part === 'dv' ? ins[3] : ins[2]; // dv reads dO [..., L, f] in V's place
  const ok = q.shape.length >= 2 && fmtShape(q.shape) === fmtShape(k.shape) && (op.part === 'lse' || (v.shape.length === q.shape.length && fmtShape(v.shape.slice(0, -1)) === fmtShape(q.shape.slice(0, -1))));
  if (!ok) return { error: `attention needs Q and K of one shape [..., L, e] and V [..., L, f], got ${ins.map((x) => fmtShape(x.shape)).join(', ')}` };
  const rows = q.shape.slice(0, -1);
  if (op.part === 'lse') return f32([...rows, 1]);
  if (op.part === 'dq' || op.part === 'dk') return f32(q.shape);
  return f32(v.shape);
};

export const shapeRules: { [K in OpKind]: Rule<K> } = {
  input: (_op, _ins, given) => ({ shape: needGiven(given), dtype: 'i32' }),
  param: (_op, _ins, given) => f32(needGiven(given)),
  fill: (_op, _ins, given) => f32(needGiven(given)),
  eye: (_op, _ins, given) => {
    const s = needGiven(given);
    if (s.length < 2 || s[s.length - 1] !== s[s.length - 2]) return { error: `eye needs a square shape, got ${fmtShape(s)}` };
    return f32(s);
  },
  unary: same,
  affine: same,
  clamp: same,
  inrange: same,
  binary: (op, [a, b]) => {
    const s = broadcastShapes(a.shape, b.shape);
    if (!s) return { error: `cannot ${VERB[op.fn]} tensors of shapes ${fmtShape(a.shape)} and ${fmtShape(b.shape)}: they do not broadcast` };
    return f32(s);
  },
  matmul: (_op, [a, b]) => {
    if (a.shape.length < 2 || b.shape.length < 2)
      return { error: `matrix product needs matrices, got shapes ${fmtShape(a.shape)} and ${fmtShape(b.shape)}` };
    const [m, k1] = a.shape.slice(-2);
    const [k2, n] = b.shape.slice(-2);
    if (k1 !== k2)
      return { error: `matrix product of shapes ${fmtShape(a.shape)} and ${fmtShape(b.shape)}: inner sizes ${k1} and ${k2} differ` };
    const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
    if (!batch)
      return { error: `matrix product of shapes ${fmtShape(a.shape)} and ${fmtShape(b.shape)}: batch axes do not broadcast` };
    return f32([...batch, m, n]);
  },
  sum: (op, [a]) => {
    for (const ax of op.axes) if (ax < 0 || ax >= a.shape.length) return { error: `axis ${ax} is out of range for shape ${fmtShape(a.shape)}` };
    return f32(a.shape.map((d, i) => (op.axes.includes(i) ? 1 : d)));
  },
  expand: (_op, [a], given) => {
    const s = needGiven(given);
    const b = broadcastShapes(a.shape, s);
    if (!b || fmtShape(b) !== fmtShape(s)) return { error: `cannot broadcast shape ${fmtShape(a.shape)} to ${fmtShape(s)}` };
    return f32(s);
  },
  reshape: (_op, [a], given) => {
    const s = needGiven(given);
    if (numel(s) !== numel(a.shape)) return { error: `cannot reshape ${fmtShape(a.shape)} (${numel(a.shape)} elements) to ${fmtShape(s)} (${numel(s)} elements)` };
    return { shape: s, dtype: a.dtype };
  },
  permute: (op, [a]) => {
    const sorted = [...op.perm].sort((x, y) => x - y);
    if (op.perm.length !== a.shape.length || sorted.some((v, i) => v !== i))
      return { error: `permutation [${op.perm.join(', ')}] does not fit shape ${fmtShape(a.shape)}` };
    return { shape: op.perm.map((p) => a.shape[p]), dtype: a.dtype };
  },
  slice: (op, [a], given) => {
    const s = needGiven(given);
    if (op.axis < 0 || op.axis >= a.shape.length) return { error: `slice axis ${op.axis} is out of range for shape ${fmtShape(a.shape)}` };
    if (op.start < 0 || op.start + s[op.axis] > a.shape[op.axis])
      return { error: `slice [${op.start}, ${op.start + s[op.axis]}) of axis ${op.axis} is out of range for shape ${fmtShape(a.shape)}` };
    return { shape: s, dtype: a.dtype };
  },
  pad: (_op, _ins, given) => f32(needGiven(given)),
  gather: (_op, [table, idx]) => {
    if (idx.dtype !== 'i32') return { error: `gather needs integer indices, got a float tensor of shape ${fmtShape(idx.shape)}` };
    if (table.shape.length < 1) return { error: `gather needs a table with at least one axis` };
    return f32([...idx.shape, ...table.shape.slice(1)]);
  },
  scatter_add: (_op, _ins, given) => f32(needGiven(given)),
  onehot: (_op, [idx], given) => {
    const s = needGiven(given);
    if (idx.dtype !== 'i32') return { error: 'onehot needs integer indices' };
    return f32(s);
  },
  causal_mask: (_op, [a]) => {
    const n = a.shape.length;
    if (n < 2 || a.shape[n - 1] !== a.shape[n - 2]) return { error: `causal_mask needs square last axes, got ${fmtShape(a.shape)}` };
    return f32(a.shape);
  },
  softmax: same,
  dropout: same,
  cross_entropy: (_op, [logits, targets]) => {
    if (targets.dtype !== 'i32') return { error: 'cross_entropy needs integer targets' };
    const lead = logits.shape.slice(0, -1);
    if (fmtShape(lead) !== fmtShape(targets.shape))
      return { error: `cross_entropy: logits of shape ${fmtShape(logits.shape)} do not match targets of shape ${fmtShape(targets.shape)}` };
    return f32([]);
  },
  attention: attentionShape,
};

/**
 * The most elements one tensor may have: WGSL indexes with 32-bit integers, and a larger tensor
 * would not fit in any device buffer anyway. Absurd sizes (a mistyped `d = 1e9`) stop here, with a
 * diagnostic, instead of reaching the planner.
 */
export const MAX_ELEMENTS = 2 ** 31 - 1;

export function inferShape(op: Op, ins: ShapeIn[], given?: Shape): ShapeResult {
  if (given && !given.every((d) => Number.isInteger(d) && d >= 0)) return { error: `tensor sizes must be whole numbers ≥ 0, got ${fmtShape(given)}` };
  const res = (shapeRules[op.kind] as Rule<OpKind>)(op as never, ins, given);
  if ('shape' in res && !(numel(res.shape) <= MAX_ELEMENTS && res.shape.every((d) => d <= MAX_ELEMENTS)))
    return { error: `a tensor of shape ${fmtShape(res.shape)} is too large: more than ${MAX_ELEMENTS} elements (a smaller micro_batch, batch, ctx or model size shrinks it)` };
  return res;
}
