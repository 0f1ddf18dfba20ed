// The .mt evaluator: expressions and statements over compile-time values. Numbers fold;
// tensor operations add IR nodes through the GraphBuilder; layer calls inline the layer's
// forward. Used for hyperparameters (numbers only, no builder) and for the model.
import type { Expr, Stmt } from '../grammar/ast.ts';
import { builtins, type BuiltinCtx } from './builtins.ts';
import type { GraphBuilder } from './builder.ts';
import { fail, type SrcLoc } from './diagnostics.ts';
import { describe, num, tensor, type LayerInst, type Value } from './values.ts';
import type { Unit } from './program.ts';

/** Hooks the evaluator needs from the lowering pass (layers, functions, observations). */
export interface Host {
  unit?: Unit;
  b?: GraphBuilder;
  callLayer(inst: LayerInst, args: Value[], loc: SrcLoc): Value;
  callFn(name: string, args: Value[], loc: SrcLoc): Value | undefined;
  observe(name: string, v: Value, loc: SrcLoc): void;
  nextDropoutKey(): number;
  /** Unrolled repeat iterations so far; bounded. */
  budget: { repeats: number };
}

export interface Scope {
  locals: Map<string, Value>;
  layer?: LayerInst;
  globals: Map<string, Value>;
}

const MAX_UNROLL = 100_000;
/**
 * The most operations lowering may create: about 13 times the forward pass of the study's full
 * Matrix Thinker (7,500). A bigger graph would take minutes to plan and hundreds of thousands of
 * dispatches per step; it is almost always a runaway `repeat` or layer count.
 */
export const MAX_NODES = 100_000;

export function lookup(sc: Scope, name: string, loc: SrcLoc): Value {
  const v = sc.locals.get(name) ?? sc.layer?.members.get(name) ?? sc.layer?.args.get(name) ?? sc.globals.get(name);
  if (v === undefined) return fail(`unknown name '${name}'`, { ...loc, length: name.length });
  return v;
}

/** The deepest expression evaluation may nest (a chain `1 + 1 + ... + 1` nests once per operator). */
export const MAX_EXPR_DEPTH = 1000;
let exprDepth = 0;

export function evalExpr(e: Expr, sc: Scope, host: Host): Value {
  if (exprDepth >= MAX_EXPR_DEPTH) return fail(`this expression nests more than ${MAX_EXPR_DEPTH} operations deep; split it into several statements`, e.loc);
  exprDepth++;
  try {
    return evalExprAt(e, sc, host);
  } finally {
    exprDepth--;
  }
}

function evalExprAt(e: Expr, sc: Scope, host: Host): Value {
  switch (e.kind) {
    case 'num':
      return num(e.value);
    case 'str':
      return { t: 'str', v: e.value };
    case 'ellipsis':
      return { t: 'ellipsis' };
    case 'name':
      return lookup(sc, e.name, e.loc);
    case 'list':
      return { t: 'list', items: e.items.map((x) => evalExpr(x, sc, host)) };
    case 'unary': {
      const v = evalExpr(e.arg, sc, host);
      if (v.t === 'num') return num(-v.v);
      if (v.t === 'tensor') return tensor(builder(host, e.loc).unary('neg', v.id));
      return fail(`cannot negate ${describe(v)}`, e.loc);
    }
    case 'binary': {
      const l = evalExpr(e.left, sc, host);
      const r = evalExpr(e.right, sc, host);
      const v = binary(e.op, l, r, e.loc, host);
      if (v.t === 'num' && !Number.isFinite(v.v))
        return fail(`${(l as { v: number }).v} ${e.op} ${(r as { v: number }).v} is not a finite number`, e.loc);
      return v;
    }
    case 'index': {
      const t = evalExpr(e.target, sc, host);
      const i = evalExpr(e.index, sc, host);
      if (i.t !== 'num' || !Number.isInteger(i.v)) return fail(`an index must be a whole number, got ${describe(i)}`, e.index.loc);
      const items = t.t === 'layers' ? t.items : t.t === 'list' ? t.items : undefined;
      if (!items) return fail(`cannot index ${describe(t)}`, e.loc);
      if (i.v < 0 || i.v >= items.length) return fail(`index ${i.v} is out of range for ${items.length} items`, e.index.loc);
      const it = items[i.v];
      return 'decl' in it ? { t: 'layer', inst: it } : it;
    }
    case 'call':
      return call(e, sc, host);
  }
}

function builder(host: Host, loc: SrcLoc): GraphBuilder {
  if (!host.b) return fail('tensor operations are only allowed inside a forward function', loc);
  if (host.b.graph.nodes.length > MAX_NODES) fail(`the model has more than ${MAX_NODES} operations (a runaway repeat or layer count?)`, loc);
  host.b.loc = loc;
  return host.b;
}

function binary(op: '+' | '-' | '*' | '/' | '@', l: Value, r: Value, loc: SrcLoc, host: Host): Value {
  if (l.t === 'num' && r.t === 'num') {
    switch (op) {
      case '+':
        return num(l.v + r.v);
      case '-':
        return num(l.v - r.v);
      case '*':
        return num(l.v * r.v);
      case '/':
        if (r.v === 0) return fail('division by zero in a compile-time expression', loc);
        return num(l.v / r.v);
      case '@':
        return fail("'@' needs two tensors, got two numbers", loc);
    }
  }
  if (l.t === 'tensor' && r.t === 'tensor') {
    const b = builder(host, loc);
    if (op === '@') return tensor(b.product(l.id, r.id));
    const fn = ({ '+': 'add', '-': 'sub', '*': 'mul', '/': 'div' } as const)[op];
    return tensor(b.binary(fn, l.id, r.id));
  }
  if (l.t === 'tensor' && r.t === 'num') {
    const b = builder(host, loc);
    switch (op) {
      case '+':
        return tensor(b.affine(l.id, 1, r.v));
      case '-':
        return tensor(b.affine(l.id, 1, -r.v));
      case '*':
        return tensor(b.affine(l.id, r.v, 0));
      case '/':
        if (r.v === 0) return fail('division of a tensor by the constant 0', loc);
        return tensor(b.affine(l.id, 1 / r.v, 0));
      case '@':
        return fail("'@' needs two tensors, got a tensor and a number", loc);
    }
  }
  if (l.t === 'num' && r.t === 'tensor') {
    const b = builder(host, loc);
    switch (op) {
      case '+':
        return tensor(b.affine(r.id, 1, l.v));
      case '-':
        return tensor(b.affine(r.id, -1, l.v));
      case '*':
        return tensor(b.affine(r.id, l.v, 0));
      case '/':
        return tensor(b.affine(b.unary('recip', r.id), l.v, 0));
      case '@':
        return fail("'@' needs two tensors, got a number and a tensor", loc);
    }
  }
  return fail(`cannot apply '${op}' to ${describe(l)} and ${describe(r)}`, loc);
}

function call(e: Extract<Expr, { kind: 'call' }>, sc: Scope, host: Host): Value {
  const named = e.args.find((a) => a.name !== undefined);
  const args = e.args.map((a) => evalExpr(a.value, sc, host));
  const target = sc.locals.get(e.callee) ?? sc.layer?.members.get(e.callee) ?? sc.layer?.args.get(e.callee);
  if (target) {
    if (target.t !== 'layer') return fail(`'${e.callee}' is ${describe(target)}, not something that can be called`, e.calleeLoc);
    if (named) return fail('layer calls take positional arguments only', named.loc);
    return host.callLayer(target.inst, args, e.loc);
  }
  const bi = Object.hasOwn(builtins, e.callee) ? builtins[e.callee] : undefined;
  if (bi) {
    if (named) return fail(`${e.callee} takes positional arguments only`, named.loc);
    const [lo, hi] = bi.arity;
    if (args.length < lo || args.length > hi) {
      const want = lo === hi ? `${lo}` : `${lo} to ${hi}`;
      return fail(`${e.callee} takes ${want} argument${hi === 1 ? '' : 's'}, got ${args.length}`, e.calleeLoc);
    }
    const cx: BuiltinCtx = { b: host.b as GraphBuilder, loc: e.loc, name: e.callee, nextDropoutKey: () => host.nextDropoutKey() };
    const needsBuilder = args.some((a) => a.t === 'tensor') || ['eye', 'gather', 'cross_entropy'].includes(e.callee);
    if (needsBuilder) cx.b = builder(host, e.loc);
    else if (!host.b && !args.every((a) => a.t === 'num')) return fail(`${e.callee} needs tensors, which exist only inside a forward function`, e.loc);
    if (host.b) host.b.loc = e.loc;
    return bi.fn(args, cx);
  }
  if (named) return fail(`'${e.callee}' takes positional arguments only`, named.loc);
  const r = host.callFn(e.callee, args, e.loc);
  if (r !== undefined) return r;
  return fail(`unknown function or layer '${e.callee}'`, { ...e.calleeLoc, length: e.callee.length });
}

/** Runs statements; returns the value of a `return`, or undefined. */
export function execBody(body: Stmt[], sc: Scope, host: Host): Value | undefined {
  for (const s of body) {
    switch (s.kind) {
      case 'assign': {
        const v = evalExpr(s.value, sc, host);
        if (sc.layer?.members.has(s.name) && !sc.locals.has(s.name))
          fail(`'${s.name}' is a member of layer ${sc.layer.decl.name}; choose another name for the local value`, s.loc);
        sc.locals.set(s.name, v);
        break;
      }
      case 'return':
        return evalExpr(s.value, sc, host);
      case 'observe':
        host.observe(s.name, evalExpr(s.value, sc, host), s.loc);
        break;
      case 'repeat': {
        const c = evalExpr(s.count, sc, host);
        // at least one: a body run zero times would leave its layers untrained and its observes unset
        if (c.t !== 'num' || !Number.isInteger(c.v) || c.v < 1)
          fail(`repeat needs a positive whole number of iterations, got ${describe(c)}`, s.count.loc);
        const n = (c as { v: number }).v;
        host.budget.repeats += n;
        if (host.budget.repeats > MAX_UNROLL) fail(`repeat unrolls more than ${MAX_UNROLL} iterations in total`, s.loc);
        for (let i = 0; i < n; i++) {
          const r = execBody(s.body, sc, host);
          if (r !== undefined) return r;
        }
        break;
      }
      case 'for': {
        const it = evalExpr(s.iterable, sc, host);
        const items: Value[] =
          it.t === 'layers' ? it.items.map((inst) => ({ t: 'layer', inst }) as Value) : it.t === 'list' ? it.items : [];
        if (it.t !== 'layers' && it.t !== 'list') fail(`for needs an array of layers or a list, got ${describe(it)}`, s.iterable.loc);
        const had = sc.locals.get(s.varName);
        for (const v of items) {
          sc.locals.set(s.varName, v);
          const r = execBody(s.body, sc, host);
          if (r !== undefined) return r;
        }
        if (had === undefined) sc.locals.delete(s.varName);
        else sc.locals.set(s.varName, had);
        break;
      }
    }
  }
  return undefined;
}
