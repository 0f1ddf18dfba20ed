// Lowering: the model of a .mt program, with resolved hyperparameters, becomes a tensor graph.
// Layers are instantiated (each instance its own parameters, named by its source path),
// forwards are inlined, `repeat` is unrolled with shared weights, and the loss is appended.
import type { Decl } from '../grammar/ast.ts';
import { asNumber } from './builtins.ts';
import { GraphBuilder } from './builder.ts';
import type { TrainConfig } from './config.ts';
import { hyperScope } from './config.ts';
import { fail, MtcError, type SrcLoc } from './diagnostics.ts';
import { evalExpr, execBody, MAX_EXPR_DEPTH, MAX_NODES, type Host, type Scope } from './evaluate.ts';
import { fmtShape, type InitTerm } from './ir.ts';
import type { Unit } from './program.ts';
import { describe, tensor, type LayerDecl, type LayerInst, type Value } from './values.ts';

const MAX_DEPTH = 64;
/** The most layers one `[Layer(args); count]` member may hold. */
const MAX_LAYER_COUNT = 10_000;

export function lowerModel(unit: Unit, hypers: Map<string, number>, train: TrainConfig): GraphBuilder {
  try {
    return lowerUnguarded(unit, hypers, train);
  } catch (e) {
    // Last resort (depths of layers, loops and expressions are bounded one by one above).
    if (e instanceof RangeError) throw new MtcError('the model nests layers, loops and expressions too deeply to compile', unit.model?.loc);
    throw e;
  }
}

function lowerUnguarded(unit: Unit, hypers: Map<string, number>, train: TrainConfig): GraphBuilder {
  const b = new GraphBuilder();
  const globals = hyperScope(hypers);
  let depth = 0;
  let dropoutKey = 0;
  let observeIteration = new Map<string, number>();
  const host: Host = {
    unit,
    b,
    budget: { repeats: 0 },
    nextDropoutKey: () => dropoutKey++,
    observe(name, v, loc) {
      if (v.t !== 'tensor') fail(`observe needs a tensor, got ${describe(v)}`, loc);
      // The planner and the runtime keep observations in plain objects (compiler/plan.ts).
      if (name === '__proto__') fail(`an observation cannot be called '__proto__'; choose another name`, loc);
      // Own properties only: an observation may be called `constructor` or `toString`.
      const obs = b.graph.observations;
      if (!Object.hasOwn(obs, name)) Object.defineProperty(obs, name, { value: [], enumerable: true, writable: true, configurable: true });
      const list = obs[name];
      list.push((v as { id: number }).id);
      observeIteration.set(name, list.length);
    },
    callLayer(inst, args, loc) {
      const fwd = inst.forward;
      if (!fwd) return fail(`layer ${inst.decl.name} has no forward function`, loc);
      if (args.length !== fwd.params.length)
        return fail(`the forward of ${inst.decl.name} takes ${fwd.params.length} argument${fwd.params.length === 1 ? '' : 's'}, got ${args.length}`, loc);
      return enter(loc, () => {
        const locals = new Map<string, Value>(fwd.params.map((p, i) => [p.name, args[i]]));
        const saved = b.scope;
        b.scope = inst.path;
        const r = execBody(fwd.body, { locals, layer: inst, globals }, host);
        b.scope = saved;
        if (r === undefined) return fail(`the forward of ${inst.decl.name} returns nothing`, fwd.loc);
        return r;
      });
    },
    callFn(name, args, loc) {
      const fn = unit.fns.get(name);
      const layer = unit.layers.get(name);
      if (layer) return fail(`layer ${name} must be declared as a member (e.g. \`norm = ${name}(...)\`) before it is called`, loc);
      if (!fn) return undefined;
      if (args.length !== fn.params.length)
        return fail(`function ${name} takes ${fn.params.length} argument${fn.params.length === 1 ? '' : 's'}, got ${args.length}`, loc);
      return enter(loc, () => {
        const locals = new Map<string, Value>(fn.params.map((p, i) => [p.name, args[i]]));
        const r = execBody(fn.body, { locals, globals }, host);
        if (r === undefined) return fail(`function ${name} returns nothing`, fn.loc);
        return r;
      });
    },
  };
  function enter<T>(loc: SrcLoc, f: () => T): T {
    if (++depth > MAX_DEPTH) fail(`layers and functions nest more than ${MAX_DEPTH} deep (is one calling itself?)`, loc);
    if (b.graph.nodes.length > MAX_NODES) fail(`the model has more than ${MAX_NODES} operations (a runaway repeat or layer count?)`, loc);
    try {
      return f();
    } finally {
      depth--;
    }
  }

  function instantiate(decl: LayerDecl, args: Value[], path: string, loc: SrcLoc): LayerInst {
    if (args.length !== decl.params.length)
      fail(`layer ${decl.name} takes ${decl.params.length} argument${decl.params.length === 1 ? '' : 's'}, got ${args.length}`, loc);
    return enter(loc, () => {
      const inst: LayerInst = { decl, path, args: new Map(decl.params.map((p, i) => [p.name, args[i]])), members: new Map() };
      const sc: Scope = { locals: new Map(), layer: inst, globals };
      for (const m of decl.members) {
        if (m.kind === 'forward') {
          if (inst.forward) fail(`layer ${decl.name} has two forward functions`, m.loc);
          inst.forward = m;
          continue;
        }
        if (inst.members.has(m.name)) fail(`'${m.name}' is declared twice in layer ${decl.name}`, m.loc);
        const sub = path ? `${path}.${m.name}` : m.name;
        if (m.kind === 'param') {
          // Checkpoints name tensors by path in a JSON header: safetensors reserves __metadata__,
          // and the runtime's header table cannot hold __proto__ (runtime/checkpoint.ts).
          if (sub === '__metadata__' || sub === '__proto__') fail(`a parameter of the model cannot be called '${sub}' (checkpoints reserve that name)`, m.loc);
          const shape = m.shape.map((e) => {
            const v = evalExpr(e, sc, host);
            const n = asNumber(v, e.loc, `a size of parameter '${m.name}'`);
            if (!Number.isInteger(n) || n < 1) fail(`sizes of parameter '${m.name}' must be positive whole numbers, got ${n}`, e.loc);
            return n;
          });
          const init = initTerms(m.init, sc, host, shape, m.name);
          b.loc = m.loc;
          inst.members.set(m.name, tensor(b.param({ path: sub, shape, init, loc: m.loc })));
        } else {
          const callee = unit.layers.get(m.call.callee);
          if (!callee || callee.isModel) {
            const what = callee ? 'is the model, not a layer' : unit.fns.has(m.call.callee) ? 'is a function, not a layer' : undefined;
            fail(what ? `'${m.call.callee}' ${what}` : `unknown layer '${m.call.callee}'`, m.call.calleeLoc);
          }
          const cargs = m.call.args.map((a) => {
            if (a.name) fail('layer arguments are positional', a.loc);
            return evalExpr(a.value, sc, host);
          });
          if (m.count) {
            const c = evalExpr(m.count, sc, host);
            const n = asNumber(c, m.count.loc, 'the number of layers');
            if (!Number.isInteger(n) || n < 0) fail(`the number of layers must be a whole number, got ${n}`, m.count.loc);
            if (n > MAX_LAYER_COUNT) fail(`${n} layers are too many for one array (at most ${MAX_LAYER_COUNT})`, m.count.loc);
            const items = [...Array(n).keys()].map((i) => instantiate(callee as LayerDecl, cargs, `${sub}.${i}`, m.call.loc));
            (b.graph.arrayItems ??= []).push(...items.map((_, i) => `${sub}.${i}`));
            inst.members.set(m.name, { t: 'layers', items });
          } else {
            inst.members.set(m.name, { t: 'layer', inst: instantiate(callee as LayerDecl, cargs, sub, m.call.loc) });
          }
        }
      }
      return inst;
    });
  }

  const model = unit.model as Extract<Decl, { kind: 'layer' }>;
  const root = instantiate(model, [], '', model.loc);
  const fwd = root.forward;
  if (!fwd) return fail(`model ${model.name} has no forward function`, model.loc);
  if (fwd.params.length !== 1) fail(`the model's forward takes the tokens, one argument; it has ${fwd.params.length}`, fwd.loc);
  b.loc = fwd.loc;
  // a compiled step runs one micro-batch (the whole batch unless gradients accumulate)
  const tokens = b.input('tokens', [train.microBatch, train.ctx]);
  const targets = b.input('targets', [train.microBatch, train.ctx]);
  observeIteration = new Map();
  const out = host.callLayer(root, [tensor(tokens)], fwd.loc);
  // Point at the forward's (last top-level) return statement.
  const retLoc = [...fwd.body].reverse().find((s) => s.kind === 'return')?.loc ?? fwd.loc;
  if (out.t !== 'tensor') return fail(`the model's forward must return the logits tensor, got ${describe(out)}`, retLoc);
  const logits = out.id;
  const ls = b.shape(logits);
  const want = [train.microBatch, train.ctx];
  if (ls.length !== 3 || ls[0] !== want[0] || ls[1] !== want[1])
    fail(`the model's forward must return logits of shape [batch, ctx, vocab] = [${want.join(', ')}, vocab], got ${fmtShape(ls)}`, retLoc);
  b.scope = 'loss';
  b.loc = fwd.loc;
  const loss = b.node({ kind: 'cross_entropy' }, [logits, targets]);
  b.graph.outputs = { logits, loss };
  return b;
}

/** `eye + normal(0.02)` → [{eye}, {normal 0.02}] */
function initTerms(e: import('../grammar/ast.ts').Expr, sc: Scope, host: Host, shape: number[], name: string): InitTerm[] {
  const out: InitTerm[] = [];
  const walk = (x: typeof e, sign: number, depth = 0): void => {
    if (depth > MAX_EXPR_DEPTH) fail(`the initialiser of '${name}' has more than ${MAX_EXPR_DEPTH} terms`, x.loc);
    if (x.kind === 'binary' && (x.op === '+' || x.op === '-')) {
      walk(x.left, sign, depth + 1);
      walk(x.right, x.op === '-' ? -sign : sign, depth + 1);
      return;
    }
    if (x.kind === 'name' && (x.name === 'ones' || x.name === 'zeros' || x.name === 'eye')) {
      if (x.name === 'eye') {
        if (sign < 0) fail("an initialiser cannot subtract 'eye'", x.loc);
        if (shape.length < 2 || shape[shape.length - 1] !== shape[shape.length - 2])
          fail(`'eye' initialises square matrices; parameter '${name}' has shape ${fmtShape(shape)}`, x.loc);
        out.push({ kind: 'eye' });
      } else out.push({ kind: 'const', value: x.name === 'ones' ? sign : 0 });
      return;
    }
    if (x.kind === 'call' && (x.callee === 'normal' || x.callee === 'uniform')) {
      if (x.args.length !== 1) fail(`${x.callee} takes one argument (the ${x.callee === 'normal' ? 'standard deviation' : 'bound'})`, x.loc);
      const v = asNumber(evalExpr(x.args[0].value, sc, host), x.args[0].loc, `the ${x.callee} initialiser's argument`);
      if (!(v >= 0)) fail(`${x.callee}(${v}): the argument must be ≥ 0`, x.loc);
      out.push(x.callee === 'normal' ? { kind: 'normal', std: v } : { kind: 'uniform', bound: v });
      return;
    }
    const v = evalExpr(x, sc, host);
    if (v.t !== 'num')
      fail(`an initialiser is a sum of ones, zeros, eye, normal(std), uniform(bound) and numbers; got ${describe(v)}`, x.loc);
    out.push({ kind: 'const', value: sign * (v as { v: number }).v });
  };
  walk(e, 1);
  return out;
}
