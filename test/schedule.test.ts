import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lrAt } from '../runtime/schedule.ts';

const o = { peak: 3e-4, warmup: 100, total: 1100 };
const close = (a: number, b: number) => assert.ok(Math.abs(a - b) <= 1e-12, `${a} != ${b}`);

test('linear warmup from 0 at step 0 (as in the study) to the peak', () => {
  assert.equal(lrAt(0, o), 0);
  close(lrAt(1, o), 3e-6);
  close(lrAt(50, o), 1.5e-4);
  close(lrAt(99, o), 2.97e-4);
  close(lrAt(100, o), 3e-4);
});

test('cosine from the peak to 0 at total, then 0', () => {
  close(lrAt(600, o), 1.5e-4); // halfway through the decay: cos(π/2) = 0
  close(lrAt(350, o), 0.5 * 3e-4 * (1 + Math.SQRT1_2)); // a quarter: cos(π/4)
  close(lrAt(1100, o), 0);
  assert.equal(lrAt(1200, o), 0);
  for (let s = 100; s < 1100; s++) assert.ok(lrAt(s + 1, o) <= lrAt(s, o), `lr rises at step ${s}`);
});

test('no warmup starts at the peak; warmup as long as the run ends at 0', () => {
  close(lrAt(0, { peak: 1e-3, warmup: 0, total: 10 }), 1e-3);
  close(lrAt(5, { peak: 1e-3, warmup: 0, total: 10 }), 5e-4);
  assert.equal(lrAt(10, { peak: 1e-3, warmup: 10, total: 10 }), 0);
});
