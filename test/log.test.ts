// Training progress (runtime/log.ts): the ETA a user reads while a run trains.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fmtDuration, RunLog } from '../runtime/log.ts';

test('the ETA is paced by the steps after the first record, not by the kernels compiling before it', async () => {
  const log = new RunLog(undefined, 100, 1);
  await new Promise((r) => setTimeout(r, 60)); // the first steps: compiling the kernels
  assert.ok(Number.isNaN(log.etaSeconds(10, performance.now())), 'no pace before the first record');
  log.train(10, 1, 0.1);
  const t = performance.now();
  // 10 more steps in 10 ms: 80 left at 1 ms each, whatever the first 10 cost
  const eta = log.etaSeconds(20, t + 10);
  assert.ok(eta > 0.07 && eta < 0.12, `eta ${eta} s`);
  log.close();
  assert.equal(fmtDuration(3700), '1h01m');
});
