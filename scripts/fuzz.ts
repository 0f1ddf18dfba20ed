// Mutation fuzzing of the compiler: the valid model sources, mutated token by token (deletions,
// duplications, swaps, random tokens, huge numbers, unicode, deep nesting) and compiled with
// random hyperparameter overrides through `plan` (not `emit`). Every mutant must either compile
// or be rejected with an MtcError, quickly; anything else (a TypeError, a RangeError, a hang) is
// a compiler bug.
//
//   node --import tsx scripts/fuzz.ts [count] [seed]
//
// runs `count` cases (default 2000), case i drawn from seed `seed + i` (default seed 1), in
// worker threads with a watchdog, and prints how many compiled, how many were rejected with a
// diagnostic, and every failure with the seed that reproduces it (`fuzz.ts 1 <that seed>`) and
// the shrunk counterexample. test/fuzz.test.ts runs a fixed-seed subset with fast-check.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { formatError, MtcError } from '../compiler/diagnostics.ts';
import { buildGraph } from '../compiler/pipeline.ts';
import { planProgram } from '../compiler/plan.ts';
import { parseSource } from '../grammar/index.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const modelsDir = path.join(here, '..', 'models');
const read = (f: string): string => fs.readFileSync(path.join(modelsDir, f), 'utf8');

// ---- the sources ------------------------------------------------------------------------------

export type Target = 'thinker' | 'stdlib' | 'vector';
export const TARGETS: Target[] = ['thinker', 'stdlib', 'vector'];

const STDLIB = read('stdlib.mt');
const THINKER = read('matrix_thinker.mt');
const VECTOR = read('vector_transformer.mt');
/** The Matrix Thinker with the stdlib inlined in place of its import, so mutations reach both. */
const THINKER_INLINE = THINKER.replace(/^import "stdlib\.mt".*$/m, STDLIB);

/** The text that is mutated for each target. */
export const SOURCES: Record<Target, string> = { thinker: THINKER_INLINE, stdlib: STDLIB, vector: VECTOR };

/** Small sizes so that a valid mutant compiles in a fraction of a second. */
export const SMALL_SETS: Record<Target, Record<string, string>> = {
  thinker: { d: '4', heads: '2', n_blocks: '1', T: '1', ctx: '8', pos_rows: '8', batch: '2', probes: '4' },
  stdlib: { d: '4', heads: '2', n_blocks: '1', T: '1', ctx: '8', pos_rows: '8', batch: '2', probes: '4' },
  vector: { width: '8', heads: '2', n_layers: '1', mlp: '1', ctx: '8', batch: '2' },
};

// ---- mutations --------------------------------------------------------------------------------

/** Whitespace, comments, strings, names, numbers (generously), `...`, any other character. */
const TOKEN = /\s+|#[^\n]*|"(?:[^"\\\n]|\\.)*"?|[A-Za-z_][A-Za-z0-9_]*|[0-9][A-Za-z0-9_.]*(?:[eE][+-][0-9]+)?|\.\.\.|[\s\S]/gu;
const isSpace = (t: string): boolean => /^\s/.test(t) || t.startsWith('#');

const HUGE = ['1e308', '99999999999', '1e999', '2147483648', '4294967296', '1e-320', '0', '007', '0.5', '1e9', '65536'];
const UNICODE = ['é', 'ß', '中文', '😀', '\u200b', '\u2028', '\u0000', '\ufeff', '\u202e', 'Ω', '\ud800', '\t', '\r', '\\'];
const PUNCT = ['(', ')', '[', ']', '{', '}', ',', ';', ':', '=', '+', '-', '*', '/', '@', '...', '.', '$', '"'];
const WORDS = [
  'import', 'hyper', 'preset', 'layer', 'model', 'fn', 'train', 'param', 'forward', 'return', 'repeat', 'for', 'in',
  'observe', 'eye', 'ones', 'zeros', 'normal', 'uniform', 'reshape', 'transpose', 'permute', 'slice', 'gather', 'sum',
  'mean', 'softmax', 'causal_mask', 'dropout', 'clamp', 'silu', 'log', 'sqrt', 'cross_entropy', 'adamw',
  'warmup_cosine', 'constructor', '__proto__', 'toString', 'hasOwnProperty', 'prototype', 'tokens', 'M', 'x',
];
const STRINGS = ['"sotu"', '"a\\nb"', '"*/ ${x} `"', '"stdlib.mt"', '"../no_such_dir/x.mt"', '"é😀"', '""', '"/"'];

export type Mutation =
  | { op: 'delete'; at: number }
  | { op: 'duplicate'; at: number }
  | { op: 'swap'; at: number; dist: number }
  | { op: 'insert'; at: number; tok: string }
  | { op: 'number'; at: number; value: string }
  /** replace a name by another name of the source (`pick` indexes them) or a listed word */
  | { op: 'name'; at: number; pick: number; word?: string }
  | { op: 'operator'; at: number; to: '+' | '-' | '*' | '/' | '@' }
  | { op: 'nest'; at: number; depth: number; open: '(' | '[' | '-' }
  | { op: 'unicode'; at: number; text: string };

export interface FuzzCase {
  target: Target;
  mutations: Mutation[];
  preset?: string;
  /** overrides of the small sets (name -> value); `null` drops the set */
  sets: Record<string, string | null>;
}

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('delete' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('duplicate' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('swap' as const), at: fc.nat(), dist: fc.integer({ min: 1, max: 8 }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('insert' as const),
      at: fc.nat(),
      tok: fc.oneof(fc.constantFrom(...PUNCT), fc.constantFrom(...WORDS), fc.constantFrom(...HUGE), fc.constantFrom(...STRINGS)),
    }),
  },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('name' as const), at: fc.nat(), pick: fc.nat(), word: fc.option(fc.constantFrom(...WORDS), { nil: undefined, freq: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('operator' as const), at: fc.nat(), to: fc.constantFrom('+' as const, '-' as const, '*' as const, '/' as const, '@' as const) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('number' as const), at: fc.nat(), value: fc.oneof(fc.constantFrom(...HUGE), fc.integer({ min: -3, max: 9 }).map(String)) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('nest' as const),
      at: fc.nat(),
      depth: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constantFrom(60, 300, 2000, 30000)),
      open: fc.constantFrom('(' as const, '[' as const, '-' as const),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('unicode' as const), at: fc.nat(), text: fc.oneof(fc.constantFrom(...UNICODE), fc.string({ unit: 'binary', maxLength: 3 })) }) },
);

/** Mutations that keep the source parseable most of the time, to reach the later passes. */
const semanticArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('name' as const), at: fc.nat(), pick: fc.nat(), word: fc.option(fc.constantFrom(...WORDS), { nil: undefined, freq: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('operator' as const), at: fc.nat(), to: fc.constantFrom('+' as const, '-' as const, '*' as const, '/' as const, '@' as const) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('number' as const), at: fc.nat(), value: fc.oneof(fc.constantFrom(...HUGE), fc.integer({ min: -3, max: 9 }).map(String)) }) },
);

const SET_VALUES = ['0', '-1', '1', '2', '3', '0.5', '1e9', '1e308', '99999999999', '65536', 'NaN', 'abc', '', '1e999', '0x10'];

export function caseArb(targets: Target[] = TARGETS): fc.Arbitrary<FuzzCase> {
  return fc.constantFrom(...targets).chain((target) =>
    fc.record({
      target: fc.constant(target),
      mutations: fc.oneof(fc.array(mutationArb, { minLength: 0, maxLength: 4 }), fc.array(semanticArb, { minLength: 1, maxLength: 3 })),
      preset: fc.oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom('tiny', 'full', 'huge') }),
      sets: fc.oneof(
        { weight: 7, arbitrary: fc.constant({}) },
        {
          weight: 3,
          arbitrary: fc.dictionary(
            fc.constantFrom(...Object.keys(SMALL_SETS[target]), 'vocab', 'dropout', 'lr'),
            fc.option(fc.constantFrom(...SET_VALUES), { freq: 8, nil: null }),
            { minKeys: 1, maxKeys: 2 },
          ),
        },
      ),
    }),
  );
}

/** Applies the mutations to the source text, in order; positions wrap around the token count. */
export function mutate(text: string, mutations: Mutation[]): string {
  const toks = text.match(TOKEN) ?? [];
  for (const m of mutations) {
    const solid = toks.map((t, i) => (isSpace(t) ? -1 : i)).filter((i) => i >= 0);
    if (solid.length === 0) break;
    const i = solid[m.at % solid.length];
    switch (m.op) {
      case 'delete':
        toks.splice(i, 1);
        break;
      case 'duplicate':
        toks.splice(i, 0, toks[i], ' ');
        break;
      case 'swap': {
        const j = solid[(solid.indexOf(i) + m.dist) % solid.length];
        [toks[i], toks[j]] = [toks[j], toks[i]];
        break;
      }
      case 'insert':
        toks.splice(i, 0, m.tok, ' ');
        break;
      case 'number': {
        const nums = solid.filter((k) => /^[0-9]/.test(toks[k]));
        if (nums.length) toks[nums[m.at % nums.length]] = m.value;
        break;
      }
      case 'name': {
        const names = solid.filter((k) => /^[A-Za-z_]/.test(toks[k]));
        if (names.length) toks[names[m.at % names.length]] = m.word ?? toks[names[m.pick % names.length]];
        break;
      }
      case 'operator': {
        const ops = solid.filter((k) => /^[-+*/@]$/.test(toks[k]));
        if (ops.length) toks[ops[m.at % ops.length]] = m.to;
        break;
      }
      case 'nest': {
        const close = m.open === '(' ? ')' : m.open === '[' ? ']' : '';
        toks[i] = m.open.repeat(m.depth) + toks[i] + close.repeat(m.depth);
        break;
      }
      case 'unicode':
        toks.splice(i, 0, m.text);
        break;
    }
  }
  return toks.join('');
}

// ---- running one case -------------------------------------------------------------------------

export interface Outcome {
  /** ok: compiled; mtc: rejected with an MtcError; crash: anything else was thrown */
  kind: 'ok' | 'mtc' | 'crash';
  ms: number;
  /** the formatted diagnostic or the crash's stack */
  message?: string;
}

/** The hyperparameter names of a source's hyper section, or undefined when it does not parse. */
function hyperNames(text: string): Set<string> | undefined {
  try {
    const prog = parseSource(text, 'fuzz-probe.mt');
    return new Set(prog.decls.flatMap((d) => (d.kind === 'hyper' ? d.entries.map((e) => e.name) : [])));
  } catch {
    return undefined;
  }
}

/** The mutant's files in a temp folder: [main file, folder]. */
function writeCase(c: FuzzCase, source: string): [string, string] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-fuzz-'));
  if (c.target === 'stdlib') {
    fs.writeFileSync(path.join(dir, 'stdlib.mt'), source);
    fs.writeFileSync(path.join(dir, 'main.mt'), THINKER);
  } else {
    fs.writeFileSync(path.join(dir, 'main.mt'), source);
  }
  return [path.join(dir, 'main.mt'), dir];
}

/** The overrides for a case: the small sets, filtered to the hyperparameters the mutant still has. */
export function setsFor(c: FuzzCase, mainSource: string): Record<string, string> {
  const sets: Record<string, string> = { ...SMALL_SETS[c.target] };
  for (const [k, v] of Object.entries(c.sets)) {
    if (v === null) delete sets[k];
    else sets[k] = v;
  }
  const names = hyperNames(mainSource);
  if (!names) return sets;
  // Overrides of names the mutant lost are themselves errors; keep the interesting ones (the
  // fuzzer's own) and drop the sizes, so the rest of the mutant is still compiled.
  for (const k of Object.keys(sets)) if (!names.has(k) && !Object.hasOwn(c.sets, k)) delete sets[k];
  return sets;
}

/** Compiles one case through `plan`. Never throws. */
export function runCase(c: FuzzCase): Outcome {
  const source = mutate(SOURCES[c.target], c.mutations);
  const [file, dir] = writeCase(c, source);
  const sets = setsFor(c, c.target === 'stdlib' ? THINKER : source);
  const t0 = performance.now();
  try {
    const built = buildGraph(file, { preset: c.preset, sets });
    planProgram(built.graph);
    return { kind: 'ok', ms: performance.now() - t0 };
  } catch (e) {
    const ms = performance.now() - t0;
    if (e instanceof MtcError) {
      const problem = checkDiagnostics(e);
      if (problem) return { kind: 'crash', ms, message: `malformed diagnostic (${problem}): ${formatError(e)}` };
      return { kind: 'mtc', ms, message: formatError(e).replaceAll(dir + path.sep, '') };
    }
    return { kind: 'crash', ms, message: (e as Error)?.stack ?? String(e) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** What is wrong with an MtcError's diagnostics, if anything. */
function checkDiagnostics(e: MtcError): string | undefined {
  if (e.diagnostics.length === 0) return 'no diagnostics';
  for (const d of e.diagnostics) {
    if (!d.message) return 'empty message';
    if (/\binternal\b|undefined|\[object /.test(d.message)) return 'internal detail in the message';
    if (d.loc && !(d.loc.line >= 1 && d.loc.col >= 1)) return 'bad position';
  }
  formatError(e);
  return undefined;
}

/** Greedily drops mutations, overrides and the preset while the case still crashes. */
export function shrink(c: FuzzCase, fails = (x: FuzzCase): boolean => runCase(x).kind === 'crash'): FuzzCase {
  let cur = c;
  for (let changed = true; changed; ) {
    changed = false;
    const smaller: FuzzCase[] = [
      ...cur.mutations.map((_, i) => ({ ...cur, mutations: cur.mutations.filter((__, j) => j !== i) })),
      ...Object.keys(cur.sets).map((k) => ({ ...cur, sets: Object.fromEntries(Object.entries(cur.sets).filter(([q]) => q !== k)) })),
      ...(cur.preset ? [{ ...cur, preset: undefined }] : []),
    ];
    const next = smaller.find(fails);
    if (next) {
      cur = next;
      changed = true;
    }
  }
  return cur;
}

/** The case fast-check draws from `seed` (one per seed: the big run's unit of reproduction). */
export function caseOf(seed: number, targets: Target[] = TARGETS): FuzzCase {
  return fc.sample(caseArb(targets), { seed, numRuns: 1 })[0];
}

export const describeCase = (c: FuzzCase): string => JSON.stringify(c);

// ---- the big run --------------------------------------------------------------------------------

const PER_CASE_MS = 5_000;
const HANG_MS = 60_000;

interface Result extends Outcome {
  seed: number;
}

/** A worker running this file; the tsx loader must be registered in it too. */
const newWorker = (): Worker =>
  new Worker(
    `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); });`,
    { eval: true },
  );

async function bigRun(count: number, seed0: number, workers: number): Promise<void> {
  const results: Result[] = [];
  let next = 0;
  const t0 = Date.now();
  const runWorker = async (): Promise<void> => {
    let w = newWorker();
    try {
      while (next < count) {
        const seed = seed0 + next++;
        const r = await new Promise<Result>((resolve) => {
          const timer = setTimeout(() => {
            void w.terminate();
            w = newWorker();
            resolve({ seed, kind: 'crash', ms: HANG_MS, message: `no answer within ${HANG_MS / 1000} s (hang?)` });
          }, HANG_MS);
          w.once('message', (o: Outcome) => {
            clearTimeout(timer);
            resolve({ seed, ...o });
          });
          w.once('error', (e) => {
            clearTimeout(timer);
            w = newWorker();
            resolve({ seed, kind: 'crash', ms: 0, message: `worker died: ${e.stack ?? e}` });
          });
          w.postMessage(seed);
        });
        w.removeAllListeners('message');
        w.removeAllListeners('error');
        results.push(r);
        if (results.length % 250 === 0) process.stderr.write(`  ${results.length}/${count} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
      }
    } finally {
      await w.terminate();
    }
  };
  await Promise.all(Array.from({ length: workers }, runWorker));

  const failures = results.filter((r) => r.kind === 'crash' || r.ms > PER_CASE_MS).sort((a, b) => a.seed - b.seed);
  const n = (k: string) => results.filter((r) => r.kind === k).length;
  const slowest = [...results].sort((a, b) => b.ms - a.ms)[0];
  console.log(
    `fuzz: ${results.length} cases from seed ${seed0} in ${((Date.now() - t0) / 1000).toFixed(0)} s: ${n('ok')} compiled, ${n('mtc')} rejected with a diagnostic, ${failures.length} failed` +
      (slowest ? `; slowest ${slowest.ms.toFixed(0)} ms (seed ${slowest.seed})` : ''),
  );
  // The most frequent first lines of the diagnostics, to see what the mutants exercise.
  const firsts = new Map<string, number>();
  for (const r of results) {
    if (r.kind !== 'mtc' || !r.message) continue;
    const key = r.message.split('\n')[0].replace(/^([^:]*:\d+:\d+: )?error: /, '').replace(/'[^']*'|"[^"]*"|\[[^\]]*\]|-?\b[0-9][0-9.e+-]*/g, '_');
    firsts.set(key, (firsts.get(key) ?? 0) + 1);
  }
  console.log('most frequent diagnostics:');
  for (const [k, v] of [...firsts].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.FUZZ_TOP ?? 25))) console.log(`  ${String(v).padStart(6)}  ${k}`);
  for (const f of failures.slice(0, 40)) {
    console.log(`\nFAIL seed ${f.seed} (${f.kind}, ${f.ms.toFixed(0)} ms): reproduce with node --import tsx scripts/fuzz.ts 1 ${f.seed}`);
    console.log(`  case: ${describeCase(caseOf(f.seed))}`);
    console.log(`  ${(f.message ?? '').split('\n').slice(0, 8).join('\n  ')}`);
  }
  if (failures.length > 40) console.log(`\n... and ${failures.length - 40} more failures`);
  for (const f of failures.filter((x) => x.kind === 'crash' && x.ms < HANG_MS).slice(0, 5)) {
    const c = caseOf(f.seed);
    if (runCase(c).kind === 'crash') console.log(`\nshrunk counterexample of seed ${f.seed}: ${describeCase(shrink(c))}`);
  }
  process.exitCode = failures.length ? 1 : 0;
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  port.on('message', (seed: number) => port.postMessage(runCase(caseOf(seed))));
} else if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const count = Number(process.argv[2] ?? 2000);
  const seed = Number(process.argv[3] ?? 1);
  const workers = Math.max(1, Math.min(Number(process.env.FUZZ_WORKERS ?? os.availableParallelism()), count));
  if (count === 1) {
    const c = caseOf(seed);
    console.log(`case: ${describeCase(c)}`);
    console.log(`mutant (${c.target}):\n${mutate(SOURCES[c.target], c.mutations)}`);
    const o = runCase(c);
    console.log(`${o.kind} in ${o.ms.toFixed(0)} ms\n${o.message ?? ''}`);
    process.exitCode = o.kind === 'crash' || o.ms > PER_CASE_MS ? 1 : 0;
  } else {
    await bigRun(count, seed, workers);
  }
}
