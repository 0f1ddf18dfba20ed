import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { InitTerm, ParamInfo } from '../compiler/ir.ts';
import { MtcError } from '../compiler/diagnostics.ts';
import { initParams } from '../runtime/init.ts';

const param = (path: string, shape: number[], ...init: InitTerm[]): ParamInfo => ({ path, shape, init });

function stats(xs: ArrayLike<number>): { mean: number; std: number; min: number; max: number } {
  let sum = 0;
  let sq = 0;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < xs.length; i++) {
    sum += xs[i];
    sq += xs[i] * xs[i];
    min = Math.min(min, xs[i]);
    max = Math.max(max, xs[i]);
  }
  const mean = sum / xs.length;
  return { mean, std: Math.sqrt(sq / xs.length - mean * mean), min, max };
}

test('normal(std): mean 0 and the given std', () => {
  const [w] = initParams([param('w', [256, 256], { kind: 'normal', std: 0.02 })], 1);
  assert.equal(w.length, 65536);
  const s = stats(w);
  assert.ok(Math.abs(s.mean) < 4 * (0.02 / 256), `mean ${s.mean}`); // 4 standard errors
  assert.ok(Math.abs(s.std / 0.02 - 1) < 0.02, `std ${s.std}`);
});

test('uniform(bound): inside (-bound, bound), spread over all of it', () => {
  const [u] = initParams([param('u', [100, 100], { kind: 'uniform', bound: 0.1 })], 2);
  const s = stats(u);
  assert.ok(s.min >= -0.1 && s.max <= 0.1, `range [${s.min}, ${s.max}]`);
  assert.ok(s.min < -0.099 && s.max > 0.099);
  assert.ok(Math.abs(s.mean) < 0.003, `mean ${s.mean}`);
  assert.ok(Math.abs(s.std - 0.1 / Math.sqrt(3)) < 0.002, `std ${s.std}`); // U(-b, b): std b/√3
});

test('eye is the identity on the last two axes, broadcast over the leading ones', () => {
  const [e] = initParams([param('e', [2, 2, 3], { kind: 'eye' })], 0);
  assert.deepEqual([...e], [1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0]);
  const [c] = initParams([param('c', [2, 2], { kind: 'eye' }, { kind: 'const', value: 0.5 })], 0);
  assert.deepEqual([...c], [1.5, 0.5, 0.5, 1.5]);
  assert.throws(
    () => initParams([param('blocks.0.v', [4], { kind: 'eye' })], 0),
    (e: unknown) => e instanceof MtcError && e.message === 'eye initialises a matrix, but blocks.0.v has shape [4]',
  );
});

test('eye + normal(0.02): diagonal near 1, the rest near 0, in every leading slice', () => {
  const n = 64;
  const [m] = initParams([param('M', [3, n, n], { kind: 'eye' }, { kind: 'normal', std: 0.02 })], 3);
  for (let b = 0; b < 3; b++) {
    const diag: number[] = [];
    const off: number[] = [];
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) (i === j ? diag : off).push(m[b * n * n + i * n + j]);
    const d = stats(diag);
    const o = stats(off);
    assert.ok(Math.abs(d.mean - 1) < 0.01, `diagonal mean ${d.mean}`);
    assert.ok(Math.abs(o.mean) < 0.002, `off-diagonal mean ${o.mean}`);
    assert.ok(Math.abs(o.std / 0.02 - 1) < 0.05, `off-diagonal std ${o.std}`);
  }
});

test('the same seed gives the same bytes; another seed differs', () => {
  const params = [
    param('emb', [256, 16], { kind: 'normal', std: 0.02 }),
    param('A', [4, 4], { kind: 'eye' }, { kind: 'uniform', bound: 0.1 }),
    param('b', [4], { kind: 'const', value: 0 }),
  ];
  const bytes = (ws: Float32Array[]) => Buffer.concat(ws.map((w) => Buffer.from(w.buffer, w.byteOffset, w.byteLength)));
  const a = bytes(initParams(params, 1234));
  assert.ok(a.equals(bytes(initParams(params, 1234))));
  assert.ok(!a.equals(bytes(initParams(params, 1235))));
});

test('only random terms draw: deterministic params do not shift the stream', () => {
  const w = param('w', [10], { kind: 'normal', std: 1 });
  const [alone] = initParams([w], 9);
  const [, after] = initParams([param('c', [50, 50], { kind: 'const', value: 1 }, { kind: 'eye' }), w], 9);
  assert.deepEqual(after, alone);
});

test('pinned values: the same weights on every machine', () => {
  // Rng (compiler/rng.ts) is mulberry32 seeded through a PCG hash, with Box–Muller normals;
  // these numbers change only if that stream or the draw order changes.
  const [w] = initParams([param('w', [2, 3], { kind: 'normal', std: 1 })], 0);
  assert.deepEqual(
    [...w],
    [0.374432772397995, 0.5688222050666809, 1.2198987007141113, 0.2312263548374176, -1.2250323295593262, 1.155181646347046],
  );
  const [u] = initParams([param('u', [4], { kind: 'uniform', bound: 1 })], 1);
  assert.deepEqual([...u], [0.35271042585372925, 0.02560243010520935, 0.66159588098526, -0.7253595590591431]);
});
