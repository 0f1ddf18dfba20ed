// Resolving hyperparameters (defaults, a preset, --set overrides) and the train section.
import type { Entry } from '../grammar/ast.ts';
import { fail, MtcError, type SrcLoc } from './diagnostics.ts';
import { evalExpr, type Host, type Scope } from './evaluate.ts';
import type { Unit } from './program.ts';
import { describe, num, type Value } from './values.ts';

/** The tokenizers a train section may name (runtime/tokenizer.ts implements them). */
export const TOKENIZERS = ['bytes', 'gpt2'] as const;
export type TokenizerName = (typeof TOKENIZERS)[number];

export interface TrainConfig {
  data: string;
  tokenizer: TokenizerName;
  ctx: number;
  /** sequences per optimizer step */
  batch: number;
  /** sequences per compiled step: batch / microBatch micro-batches accumulate their gradients before each update */
  microBatch: number;
  steps: number;
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  warmup: number;
  clip: number;
  logEvery: number;
  evalEvery: number;
  evalBatches: number;
  valFraction: number;
  seed: number;
  /** per-block gradient checkpointing: recompute each call of a layer-array item in the backward pass */
  checkpoint: boolean;
  /** f16 storage of the forward activations (compiler/precision.ts); needs an adapter with shader-f16 */
  f16: boolean;
}

const numericHost = (): Host => ({
  callLayer: (_i, _a, loc) => fail('layers can only be called inside a forward function', loc),
  callFn: () => undefined,
  observe: (_n, _v, loc) => fail('observe is only allowed inside a forward function', loc),
  nextDropoutKey: () => 0,
  budget: { repeats: 0 },
});

/** The number a `--set name=value` gives, written in decimal (64, -1, 3e-4, .5); NaN for anything else (abc, 0x10, Infinity, ''). */
export function setValue(text: string): number {
  const t = text.trim();
  return /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t) && Number.isFinite(Number(t)) ? Number(t) : NaN;
}

/** Evaluates hyper entries in order with a preset's and the command line's overrides. */
export function resolveHypers(unit: Unit, preset: string | undefined, sets: Record<string, string>): Map<string, number> {
  const exprs = new Map<string, Entry>();
  for (const e of unit.hyper) {
    if (exprs.has(e.name)) fail(`hyperparameter '${e.name}' is defined twice`, e.loc);
    exprs.set(e.name, e);
  }
  if (preset !== undefined) {
    const p = unit.presets.get(preset);
    if (!p) {
      const names = [...unit.presets.keys()];
      throw new MtcError(`unknown preset '${preset}'; ${unit.file} has ${names.length ? names.map((n) => `'${n}'`).join(', ') : 'no presets'}`);
    }
    for (const e of p.entries) {
      if (!exprs.has(e.name)) fail(`preset '${preset}' sets '${e.name}', which is not a hyperparameter of the hyper section`, e.loc);
      exprs.set(e.name, e);
    }
  }
  for (const name of Object.keys(sets)) {
    if (!exprs.has(name)) {
      throw new MtcError(`--set ${name}: '${name}' is not a hyperparameter; known: ${[...exprs.keys()].join(', ')}`);
    }
  }
  const out = new Map<string, number>();
  const scope: Scope = { locals: new Map(), globals: new Map() };
  const host = numericHost();
  for (const e of unit.hyper) {
    let v: number;
    if (Object.hasOwn(sets, e.name)) {
      const text = sets[e.name];
      v = setValue(text);
      if (Number.isNaN(v)) throw new MtcError(`--set ${e.name}=${text}: the value must be a decimal number (like 64, 3e-4 or 0.5)`);
    } else {
      const entry = exprs.get(e.name) as Entry;
      const val = evalExpr(entry.value, scope, host);
      if (val.t !== 'num') fail(`hyperparameter '${e.name}' must be a number, got ${describe(val)}`, entry.value.loc);
      v = (val as { v: number }).v;
      if (!Number.isFinite(v)) fail(`hyperparameter '${e.name}' is not a finite number`, entry.value.loc);
    }
    out.set(e.name, v);
    scope.globals.set(e.name, num(v));
  }
  return out;
}

export function hyperScope(hypers: Map<string, number>): Map<string, Value> {
  return new Map([...hypers].map(([k, v]) => [k, num(v)]));
}

/** Evaluates the train section against the resolved hyperparameters. */
export function resolveTrain(unit: Unit, hypers: Map<string, number>): TrainConfig {
  const scope: Scope = { locals: new Map(), globals: hyperScope(hypers) };
  const host = numericHost();
  const vals = new Map<string, { v: Value; loc: SrcLoc }>();
  for (const e of unit.train ?? []) {
    if (vals.has(e.name)) fail(`train setting '${e.name}' is given twice`, e.loc);
    if (e.name === 'loss') {
      if (e.value.kind !== 'name' || e.value.name !== 'cross_entropy')
        fail("the loss must be cross_entropy (next-token prediction)", e.value.loc);
      vals.set(e.name, { v: { t: 'str', v: 'cross_entropy' }, loc: e.loc });
      continue;
    }
    const want = e.name === 'optimizer' ? 'adamw' : e.name === 'schedule' ? 'warmup_cosine' : undefined;
    if (want && (e.value.kind !== 'call' || e.value.callee !== want)) {
      const got = e.value.kind === 'call' ? `'${e.value.callee}(...)'` : e.value.kind === 'name' ? `'${e.value.name}'` : 'something else';
      fail(`the ${e.name} must be ${want}(...), got ${got}`, e.value.loc);
    }
    if (e.value.kind === 'call' && (e.value.callee === 'adamw' || e.value.callee === 'warmup_cosine')) {
      const args = new Map<string, Value>();
      for (const a of e.value.args) {
        if (!a.name) fail(`${e.value.callee} takes named arguments, e.g. ${e.value.callee}(lr = 3e-4)`, a.loc);
        args.set(a.name as string, evalExpr(a.value, scope, host));
      }
      vals.set(e.name, { v: { t: 'config', name: e.value.callee, args }, loc: e.loc });
      continue;
    }
    vals.set(e.name, { v: evalExpr(e.value, scope, host), loc: e.loc });
  }
  const known = new Set(['data', 'tokenizer', 'ctx', 'batch', 'micro_batch', 'steps', 'loss', 'optimizer', 'schedule', 'clip', 'log_every', 'eval_every', 'eval_batches', 'val_fraction', 'seed', 'checkpoint', 'f16']);
  for (const [k, { loc }] of vals) if (!known.has(k)) fail(`unknown train setting '${k}'; known: ${[...known].join(', ')}`, loc);

  const numOf = (key: string, dflt: number | undefined, check: (x: number) => boolean, rule: string): number => {
    const got = vals.get(key);
    if (!got) {
      if (dflt === undefined) {
        if (!unit.train) throw new MtcError(`there is no train section; add one that sets at least ctx and batch`, unit.model?.loc);
        throw new MtcError(`the train section must set '${key}'`, unit.trainLoc);
      }
      return dflt;
    }
    if (got.v.t !== 'num' || !check(got.v.v)) fail(`train setting '${key}' must be ${rule}, got ${describe(got.v)}`, got.loc);
    return (got.v as { v: number }).v;
  };
  const posInt = (x: number) => Number.isInteger(x) && x >= 1;
  const strOf = (key: string, dflt: string): string => {
    const got = vals.get(key);
    if (!got) return dflt;
    if (got.v.t !== 'str') fail(`train setting '${key}' must be a string, got ${describe(got.v)}`, got.loc);
    return (got.v as { v: string }).v;
  };
  const cfgArg = (key: string, name: string, arg: string, dflt: number, pair = false): number | [number, number] => {
    const got = vals.get(key);
    if (!got) return dflt;
    if (got.v.t !== 'config' || got.v.name !== name) fail(`train setting '${key}' must be ${name}(...)`, got.loc);
    const a = (got.v as { args: Map<string, Value> }).args.get(arg);
    if (!a) return dflt;
    if (!pair && a.t === 'num') return a.v;
    if (pair && a.t === 'list' && a.items.length === 2 && a.items.every((x) => x.t === 'num'))
      return [(a.items[0] as { v: number }).v, (a.items[1] as { v: number }).v];
    return fail(`${name}: '${arg}' must be ${pair ? 'a list of two numbers such as [0.9, 0.98]' : 'a number'}, got ${describe(a)}`, got.loc);
  };
  const tokenizer = strOf('tokenizer', 'bytes');
  if (!(TOKENIZERS as readonly string[]).includes(tokenizer)) {
    fail(`unknown tokenizer '${tokenizer}'; known: ${TOKENIZERS.join(', ')}`, vals.get('tokenizer')?.loc);
  }
  for (const [k, { v, loc }] of vals) {
    if (v.t !== 'config') continue;
    const allowed = v.name === 'adamw' ? ['lr', 'betas', 'eps', 'weight_decay'] : ['warmup'];
    for (const a of v.args.keys()) if (!allowed.includes(a)) fail(`${v.name} has no setting '${a}'; it takes ${allowed.join(', ')}`, loc);
    if (k === 'optimizer' && v.name !== 'adamw') fail(`the optimizer must be adamw(...)`, loc);
    if (k === 'schedule' && v.name !== 'warmup_cosine') fail(`the schedule must be warmup_cosine(...)`, loc);
  }
  const betas = cfgArg('optimizer', 'adamw', 'betas', NaN, true);
  // Values that would train silently wrong (a negative lr climbs the loss) are refused here.
  const inRange = (key: string, name: string, arg: string, ok: (x: number) => boolean, what: string, dflt: number): number => {
    const x = cfgArg(key, name, arg, dflt) as number;
    if (!ok(x)) fail(`${name}: '${arg}' must be ${what}, got ${x}`, vals.get(key)?.loc);
    return x;
  };
  if (Array.isArray(betas) && !betas.every((b) => b >= 0 && b < 1)) fail(`adamw: 'betas' must lie in [0, 1), got [${betas.join(', ')}]`, vals.get('optimizer')?.loc);
  // Gradient accumulation: a device step runs at most micro_batch sequences, and the batch
  // is split into equal micro-batches whose gradients are averaged before the update.
  const batch = numOf('batch', undefined, posInt, 'a positive whole number');
  const microBatch = Math.min(batch, numOf('micro_batch', batch, posInt, 'a positive whole number'));
  if (batch % microBatch !== 0)
    fail(`train setting 'micro_batch' must divide the batch into equal micro-batches: batch ${batch} is not a multiple of micro_batch ${microBatch}`, vals.get('micro_batch')?.loc);
  return {
    data: strOf('data', 'sotu'),
    tokenizer: tokenizer as TokenizerName,
    ctx: numOf('ctx', undefined, posInt, 'a positive whole number'),
    batch,
    microBatch,
    steps: numOf('steps', undefined, (x) => Number.isInteger(x) && x >= 0, 'a whole number'),
    lr: inRange('optimizer', 'adamw', 'lr', (x) => x > 0 && Number.isFinite(x), 'a positive number', 3e-4),
    betas: Array.isArray(betas) ? betas : [0.9, 0.98],
    eps: inRange('optimizer', 'adamw', 'eps', (x) => x > 0 && Number.isFinite(x), 'a positive number', 1e-8),
    weightDecay: inRange('optimizer', 'adamw', 'weight_decay', (x) => x >= 0 && Number.isFinite(x), 'a number ≥ 0', 0.01),
    warmup: inRange('schedule', 'warmup_cosine', 'warmup', (x) => Number.isInteger(x) && x >= 0, 'a whole number ≥ 0', 0),
    clip: numOf('clip', 1.0, (x) => x > 0, 'a positive number'),
    logEvery: numOf('log_every', 10, posInt, 'a positive whole number'),
    evalEvery: numOf('eval_every', 100, posInt, 'a positive whole number'),
    evalBatches: numOf('eval_batches', 4, posInt, 'a positive whole number'),
    valFraction: numOf('val_fraction', 0.05, (x) => x > 0 && x < 1, 'between 0 and 1'),
    seed: numOf('seed', 0, (x) => Number.isInteger(x) && x >= 0, 'a whole number ≥ 0'),
    checkpoint: numOf('checkpoint', 0, (x) => x === 0 || x === 1, '0 (off) or 1 (recompute each block in the backward pass)') === 1,
    f16: numOf('f16', 0, (x) => x === 0 || x === 1, '0 (f32 activations) or 1 (f16 storage of the forward activations)') === 1,
  };
}
