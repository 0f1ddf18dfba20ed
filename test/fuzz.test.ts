// Property-based robustness of the compiler (fast-check): mutants of the valid model sources
// (token deletions, duplications, swaps, random tokens, huge numbers, unicode, deep nesting,
// random hyperparameter values) compiled through `plan` either compile or are rejected with an
// MtcError, never anything else, and quickly. A fixed-seed subset; `scripts/fuzz.ts` runs many
// more cases with a watchdog.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import fc from 'fast-check';
import { MtcError } from '../compiler/diagnostics.ts';
import { buildGraph } from '../compiler/pipeline.ts';
import { planProgram } from '../compiler/plan.ts';
import { caseArb, describeCase, mutate, runCase, SMALL_SETS, SOURCES, type Target } from '../scripts/fuzz.ts';
import { modelsDir } from './helpers/models.ts';

/** The bound on one case: a mutant is rejected or compiled well within it (2 slow cores, loaded). */
const PER_CASE_MS = 5_000;
const RUNS = Number(process.env.FUZZ_RUNS ?? 100);

for (const target of ['thinker', 'stdlib', 'vector'] as Target[]) {
  test(`fuzz ${target}: ${RUNS} mutants compile or fail with an MtcError, each within ${PER_CASE_MS / 1000} s`, () => {
    let compiled = 0;
    let rejected = 0;
    fc.assert(
      fc.property(caseArb([target]), (c) => {
        const o = runCase(c);
        if (o.kind === 'crash') throw new Error(`not an MtcError for ${describeCase(c)}:\n${o.message}`);
        if (o.ms > PER_CASE_MS) throw new Error(`took ${o.ms.toFixed(0)} ms: ${describeCase(c)}`);
        if (o.kind === 'ok') compiled++;
        else rejected++;
      }),
      { seed: 20250101 + target.length, numRuns: RUNS },
    );
    assert.equal(compiled + rejected, RUNS);
    // The mutants reach past the parser: some still compile.
    assert.ok(compiled > 0, 'no mutant compiled');
  });
}

test('the unmutated sources compile with the small sizes', () => {
  for (const target of ['thinker', 'stdlib', 'vector'] as Target[]) {
    const o = runCase({ target, mutations: [], sets: {} });
    assert.equal(o.kind, 'ok', `${target}: ${o.message}`);
  }
});

test('mutations are deterministic and change the source', () => {
  const m = [{ op: 'delete' as const, at: 5 }, { op: 'nest' as const, at: 40, depth: 3, open: '(' as const }];
  assert.equal(mutate(SOURCES.vector, m), mutate(SOURCES.vector, m));
  assert.notEqual(mutate(SOURCES.vector, m), SOURCES.vector);
  assert.equal(mutate(SOURCES.thinker, []), SOURCES.thinker);
});

// Absurd sizes must be rejected at once, with a diagnostic, not planned or allocated.
const absurd: Array<[string, Record<string, string>, RegExp]> = [
  ['d = 1e9', { d: '1000000000' }, /is too large: more than 2147483647 elements/],
  ['d = 99999999999', { d: '99999999999' }, /is too large: more than 2147483647 elements/],
  ['vocab = 1e308', { vocab: '1e308' }, /is too large: more than 2147483647 elements/],
  ['ctx = 1e9', { ctx: '1e9', pos_rows: '1e9' }, /is too large: more than 2147483647 elements/],
  ['n_blocks = 99999999999', { n_blocks: '99999999999' }, /99999999999 layers are too many for one array/],
  ['T = 99999999999', { T: '99999999999' }, /repeat unrolls more than 100000 iterations/],
  ['T = 5000', { T: '5000' }, /the model has more than 100000 operations/],
  ['batch = 1e308', { batch: '1e308' }, /is too large: more than 2147483647 elements/],
];
for (const [name, sets, message] of absurd) {
  test(`absurd sizes are rejected quickly: ${name}`, () => {
    const t0 = performance.now();
    assert.throws(
      () => planProgram(buildGraph(path.join(modelsDir, 'matrix_thinker.mt'), { sets: { ...SMALL_SETS.thinker, ...sets } }).graph),
      (e: unknown) => e instanceof MtcError && message.test(e.message),
    );
    assert.ok(performance.now() - t0 < PER_CASE_MS, `took ${(performance.now() - t0).toFixed(0)} ms`);
  });
}
