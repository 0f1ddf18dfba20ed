// The primitives a .mt source can call, one entry each. They are generic tensor operations;
// no layer of any model is known here. Numbers are folded at compile time.
import { fail, type SrcLoc } from './diagnostics.ts';
import type { GraphBuilder } from './builder.ts';
import { fmtShape, numel, type UnaryFn } from './ir.ts';
import { describe, num, tensor, type Value } from './values.ts';

export interface BuiltinCtx {
  b: GraphBuilder;
  loc: SrcLoc;
  name: string;
  /** Next dropout site number (stable: program order). */
  nextDropoutKey(): number;
}
type Builtin = { arity: [number, number]; fn: (args: Value[], cx: BuiltinCtx) => Value };

function asTensor(v: Value, cx: BuiltinCtx, what = 'argument'): number {
  if (v.t === 'tensor') return v.id;
  if (v.t === 'num') return cx.b.fill(v.v, []);
  return fail(`${cx.name}: the ${what} must be a tensor, got ${describe(v)}`, cx.loc);
}
export function asNumber(v: Value, loc: SrcLoc, what: string): number {
  if (v.t !== 'num') return fail(`${what} must be a compile-time number, got ${describe(v)}`, loc);
  return v.v;
}
function asInt(v: Value, loc: SrcLoc, what: string): number {
  const n = asNumber(v, loc, what);
  if (!Number.isInteger(n)) fail(`${what} must be a whole number, got ${n}`, loc);
  return n;
}
function asNumList(v: Value, loc: SrcLoc, what: string): number[] {
  if (v.t === 'num') return [asInt(v, loc, what)];
  if (v.t !== 'list') return fail(`${what} must be a list of numbers like [-2, -1], got ${describe(v)}`, loc);
  return v.items.map((x) => asInt(x, loc, what));
}
/** Normalise possibly negative axes against a rank. */
function axes(list: number[], rank: number, cx: BuiltinCtx): number[] {
  return list.map((a) => {
    const r = a < 0 ? rank + a : a;
    if (r < 0 || r >= rank) fail(`${cx.name}: axis ${a} is out of range for a tensor of rank ${rank}`, cx.loc);
    return r;
  });
}

const unaryMath: Partial<Record<UnaryFn, (x: number) => number>> = {
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  silu: (x) => x / (1 + Math.exp(-x)),
  relu: (x) => Math.max(0, x),
  tanh: Math.tanh,
  square: (x) => x * x,
};
function unary(fn: UnaryFn): Builtin {
  return {
    arity: [1, 1],
    fn: ([x], cx) => {
      const f = unaryMath[fn];
      if (x.t === 'num' && f) {
        const v = f(x.v);
        if (!Number.isFinite(v)) fail(`${cx.name}(${x.v}) is not a finite number`, cx.loc);
        return num(v);
      }
      return tensor(cx.b.unary(fn, asTensor(x, cx)));
    },
  };
}

function reduce(mean: boolean): Builtin {
  return {
    arity: [2, 2],
    fn: ([x, ax], cx) => {
      const id = asTensor(x, cx);
      const shape = cx.b.shape(id);
      const list = axes(asNumList(ax, cx.loc, `${cx.name} axes`), shape.length, cx);
      const s = cx.b.sum(id, [...new Set(list)]);
      if (!mean) return tensor(s);
      const count = list.reduce((a, i) => a * shape[i], 1);
      return tensor(cx.b.affine(s, 1 / count));
    },
  };
}

/** reshape(x, [..., a, b], r?): `...` keeps the leading axes; r says how many trailing axes are replaced. */
function reshape(args: Value[], cx: BuiltinCtx): Value {
  const id = asTensor(args[0], cx);
  const inShape = cx.b.shape(id);
  const spec = args[1];
  if (spec.t !== 'list') return fail(`reshape: the shape must be a list like [..., 4, 8], got ${describe(spec)}`, cx.loc);
  const hasEllipsis = spec.items.length > 0 && spec.items[0].t === 'ellipsis';
  const dims = spec.items.slice(hasEllipsis ? 1 : 0).map((v) => {
    if (v.t === 'ellipsis') fail(`reshape: '...' may only come first in the shape`, cx.loc);
    return asInt(v, cx.loc, 'a reshape size');
  });
  if (dims.some((d) => d < 1)) fail(`reshape: sizes must be positive, got [${dims.join(', ')}]`, cx.loc);
  if (!hasEllipsis) return tensor(cx.b.reshape(id, dims));
  const want = numel(dims);
  let r: number;
  if (args.length > 2) {
    r = asInt(args[2], cx.loc, 'the number of replaced axes');
    if (r < 0 || r > inShape.length) fail(`reshape: cannot replace ${r} axes of a tensor of shape ${fmtShape(inShape)}`, cx.loc);
  } else {
    const fits = [...Array(inShape.length + 1).keys()].filter((k) => numel(inShape.slice(inShape.length - k)) === want);
    if (!fits.length) fail(`reshape: no trailing axes of shape ${fmtShape(inShape)} hold ${want} elements for [..., ${dims.join(', ')}]`, cx.loc);
    if (fits.length > 1)
      fail(`reshape of shape ${fmtShape(inShape)} to [..., ${dims.join(', ')}] is ambiguous: '...' could keep ${fits.map((k) => inShape.length - k).join(' or ')} axes; pass the number of replaced axes as a third argument`, cx.loc);
    r = fits[0];
  }
  return tensor(cx.b.reshape(id, [...inShape.slice(0, inShape.length - r), ...dims]));
}

export const builtins: Record<string, Builtin> = {
  exp: unary('exp'),
  log: unary('log'),
  sqrt: unary('sqrt'),
  rsqrt: unary('rsqrt'),
  sigmoid: unary('sigmoid'),
  silu: unary('silu'),
  relu: unary('relu'),
  tanh: unary('tanh'),
  square: unary('square'),
  sum: reduce(false),
  mean: reduce(true),
  clamp: {
    arity: [3, 3],
    fn: ([x, lo, hi], cx) => {
      const a = asNumber(lo, cx.loc, 'clamp lower bound');
      const c = asNumber(hi, cx.loc, 'clamp upper bound');
      if (a > c) fail(`clamp: lower bound ${a} is above upper bound ${c}`, cx.loc);
      if (x.t === 'num') return num(Math.min(Math.max(x.v, a), c));
      return tensor(cx.b.node({ kind: 'clamp', lo: a, hi: c }, [asTensor(x, cx)]));
    },
  },
  softmax: { arity: [1, 1], fn: ([x], cx) => tensor(cx.b.node({ kind: 'softmax' }, [asTensor(x, cx)])) },
  causal_mask: {
    arity: [1, 1],
    fn: ([x], cx) => tensor(cx.b.node({ kind: 'causal_mask', fill: -Infinity }, [asTensor(x, cx)])),
  },
  dropout: {
    arity: [2, 2],
    fn: ([x, p], cx) => {
      const rate = asNumber(p, cx.loc, 'dropout probability');
      if (!(rate >= 0 && rate < 1)) fail(`dropout probability must be in [0, 1), got ${rate}`, cx.loc);
      const id = asTensor(x, cx);
      if (rate === 0) return tensor(id);
      return tensor(cx.b.node({ kind: 'dropout', p: rate, key: cx.nextDropoutKey() }, [id]));
    },
  },
  transpose: {
    arity: [1, 3],
    fn: (args, cx) => {
      if (args.length === 2) fail('transpose takes a tensor and either no axes or two axes', cx.loc);
      const a = args.length === 3 ? asInt(args[1], cx.loc, 'transpose axis') : -2;
      const c = args.length === 3 ? asInt(args[2], cx.loc, 'transpose axis') : -1;
      return tensor(cx.b.transpose(asTensor(args[0], cx), a, c));
    },
  },
  permute: {
    arity: [2, 2],
    fn: ([x, p], cx) => tensor(cx.b.permute(asTensor(x, cx), asNumList(p, cx.loc, 'permutation'))),
  },
  reshape: { arity: [2, 3], fn: reshape },
  slice: {
    arity: [4, 4],
    fn: ([x, ax, st, len], cx) => {
      const id = asTensor(x, cx);
      const shape = cx.b.shape(id);
      const [axis] = axes([asInt(ax, cx.loc, 'slice axis')], shape.length, cx);
      const start = asInt(st, cx.loc, 'slice start');
      const n = asInt(len, cx.loc, 'slice length');
      if (n < 1) fail(`slice length must be at least 1, got ${n}`, cx.loc);
      const out = [...shape];
      out[axis] = n;
      return tensor(cx.b.node({ kind: 'slice', axis, start }, [id], out));
    },
  },
  gather: {
    arity: [2, 2],
    fn: ([t, i], cx) => tensor(cx.b.node({ kind: 'gather' }, [asTensor(t, cx, 'table'), asTensor(i, cx, 'index')])),
  },
  eye: {
    arity: [1, 1],
    fn: ([n], cx) => {
      const k = asInt(n, cx.loc, 'eye size');
      if (k < 1) fail(`eye size must be at least 1, got ${k}`, cx.loc);
      return tensor(cx.b.node({ kind: 'eye' }, [], [k, k]));
    },
  },
  cross_entropy: {
    arity: [2, 2],
    fn: ([l, t], cx) => tensor(cx.b.node({ kind: 'cross_entropy' }, [asTensor(l, cx, 'logits'), asTensor(t, cx, 'targets')])),
  },
};
