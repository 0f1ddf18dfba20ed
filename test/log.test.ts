// Training progress (runtime/log.ts): the ETA a user reads while a run trains.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
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

test("a resumed run's elapsed_s continues from its checkpoint's step", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-log-'));
  const file = path.join(dir, 'metrics.jsonl');
  // the first process logged to step 30, checkpointed at 20 and was killed mid-line
  fs.writeFileSync(file, [{ step: 10, loss: 3, elapsed_s: 100 }, { step: 20, val_loss: 2.9, elapsed_s: 205.5 }, { step: 30, loss: 2.8, elapsed_s: 300 }].map((r) => JSON.stringify(r)).join('\n') + '\n{"step": 40, "lo');
  const log = new RunLog(dir, 50, 1, 20);
  log.train(21, 2.7, 0.1);
  log.close();
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
  assert.deepEqual(lines.map((l) => (JSON.parse(l) as { step: number }).step), [10, 20, 30, 21], 'the cut line is dropped, every line parses');
  const last = JSON.parse(lines.pop()!) as { step: number; elapsed_s: number };
  assert.equal(last.step, 21);
  assert.ok(last.elapsed_s >= 205.5 && last.elapsed_s < 215, `elapsed_s ${last.elapsed_s}`);
  const fresh = new RunLog(path.join(dir, 'new'), 50, 1);
  fresh.train(1, 3, 0.1);
  fresh.close();
  const first = JSON.parse(fs.readFileSync(path.join(dir, 'new', 'metrics.jsonl'), 'utf8')) as { elapsed_s: number };
  assert.ok(first.elapsed_s < 10, 'a new run starts at 0');
});
