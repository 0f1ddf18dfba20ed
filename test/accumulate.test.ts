// Gradient accumulation (train setting micro_batch): a batch run as micro-batches whose
// gradients are averaged before the update trains as the whole batch in one device step. The
// oracle is the unaccumulated program (itself checked against the float64 interpreter in
// program.test.ts) on the same windows, with dropout off so that both draw nothing.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compile } from '../compiler/pipeline.ts';
import { formatDiagnostic, MtcError } from '../compiler/diagnostics.ts';
import { Rng } from '../compiler/rng.ts';
import { acquireDevice, type Gpu } from '../runtime/device.ts';
import { Session, writeModule } from '../runtime/session.ts';
import { modelsDir, repoRoot } from './helpers/models.ts';

const model = path.join(modelsDir, 'matrix_thinker.mt');
const sets = { d: '4', heads: '2', n_blocks: '2', T: '2', probes: '5', vocab: '19', ctx: '7', pos_rows: '9', dropout: '0', batch: '6' };
let gpu: Gpu;
before(async () => {
  gpu = await acquireDevice();
});
after(() => gpu?.close());

async function open(extra: Record<string, string>): Promise<Session> {
  const c = compile(model, { sets: { ...sets, ...extra } });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-accum-'));
  writeModule(c, dir);
  return Session.open(dir, gpu);
}

function rows(seed: number, n: number) {
  const rng = new Rng(seed);
  return { tokens: Int32Array.from({ length: n * 7 }, () => rng.int(19)), targets: Int32Array.from({ length: n * 7 }, () => rng.int(19)) };
}
const part = (b: ReturnType<typeof rows>, from: number, n: number) => ({ tokens: b.tokens.slice(from * 7, (from + n) * 7), targets: b.targets.slice(from * 7, (from + n) * 7) });

test('micro_batch must divide the batch; micro_batch ≥ batch accumulates nothing', () => {
  assert.throws(
    () => compile(model, { sets: { ...sets, micro_batch: '4' } }),
    (e: unknown) => e instanceof MtcError && /train setting 'micro_batch' must divide the batch into equal micro-batches: batch 6 is not a multiple of micro_batch 4/.test(e.message) && /matrix_thinker\.mt:\d+:\d+: error: /.test(e.diagnostics.map(formatDiagnostic).join('\n')),
  );
  const whole = compile(model, { sets: { ...sets, micro_batch: '64' } });
  assert.equal(whole.train.microBatch, 6);
  assert.ok(![...whole.files.keys()].some((f) => f.includes('accumulate')), 'no accumulate kernel without accumulation');
  const split = compile(model, { sets: { ...sets, micro_batch: '2' } });
  assert.deepEqual([split.train.batch, split.train.microBatch], [6, 2]);
  assert.deepEqual(split.graph.nodes[split.graph.outputs.logits].shape, [2, 7, 19], 'the program runs one micro-batch');
  assert.ok(split.files.has(`kernels/accumulate_${split.plan.arenaFloats}.wgsl`));
  assert.match(split.files.get('program.ts')!, /"accumulate": 3,/);
});

test('three micro-batches of 2 train as one batch of 6: losses, mean gradients and weights', async () => {
  const whole = await open({});
  const split = await open({ micro_batch: '2' });
  assert.deepEqual([whole.accumulation, split.accumulation], [1, 3]);
  assert.equal(split.tokensPerStep, whole.tokensPerStep);
  whole.initialise(3);
  split.initialise(3);
  const relTo = (a: Float32Array, b: Float32Array) => {
    let worst = 0;
    const scale = Math.max(...Array.from(b, Math.abs), 1e-30);
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / scale);
    return worst;
  };
  for (let step = 0; step < 3; step++) {
    const b = rows(10 + step, 6);
    whole.trainStep(b, step, 1e-2, 4);
    split.trainStep([part(b, 0, 2), part(b, 2, 2), part(b, 4, 2)], step, 1e-2, 4);
    const [lw] = await whole.readLosses();
    const [ls] = await split.readLosses();
    // float32 sums in another order: 1e-5 relative
    assert.ok(Math.abs(lw - ls) / lw < 1e-5, `step ${step}: loss ${lw} (one batch) vs ${ls} (micro-batches)`);
    const [gw, gs] = [await whole.readArena('grads'), await split.readArena('grads')];
    // the mean of the micro-batch gradients: 1e-4 of the largest gradient
    assert.ok(relTo(gs, gw) < 1e-4, `step ${step}: gradients differ by ${relTo(gs, gw)} of the largest`);
    assert.ok(gw.some((x) => x !== 0));
  }
  const [pw, ps] = [await whole.readParams(), await split.readParams()];
  // three AdamW steps of lr 1e-2 from the same weights: 1e-5 of the largest weight
  assert.ok(relTo(ps, pw) < 1e-5, `weights differ by ${relTo(ps, pw)} of the largest`);
  assert.throws(() => split.trainStep(rows(1, 6), 3, 1e-2, 4), /takes 3 micro-batches, got 1/);
  await assert.rejects(split.profileStep(rows(1, 2), 3, 1e-2, 4), /accumulates 3 micro-batches/);
});

test('mtc run train with micro_batch logs the same run as the whole batch', () => {
  const run = (extra: string[], out = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-accum-run-'))) => {
    const args = ['run', 'train', 'models/matrix_thinker.mt', '--set', 'd=4', '--set', 'heads=2', '--set', 'n_blocks=1', '--set', 'T=2', '--set', 'probes=4', '--set', 'ctx=16', '--set', 'pos_rows=16', '--set', 'batch=4', '--set', 'dropout=0', '--steps', '4', ...extra, '--out', out];
    const r = spawnSync(process.execPath, [path.join(repoRoot, 'bin/mtc.js'), ...args], { cwd: repoRoot, encoding: 'utf8', timeout: 600_000 });
    assert.equal(r.status, 0, r.stderr);
    return { out, stdout: r.stdout + r.stderr, records: fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)) };
  };
  // mtc run eval of a run's last checkpoint, compiled without micro_batch: its weights do not depend on it
  const evaluate = (runDir: string) => {
    const args = ['run', 'eval', 'models/matrix_thinker.mt', '--checkpoint', path.join(runDir, 'checkpoints', 'step-000004.safetensors'), '--set', 'd=4', '--set', 'heads=2', '--set', 'n_blocks=1', '--set', 'T=2', '--set', 'probes=4', '--set', 'ctx=16', '--set', 'pos_rows=16', '--set', 'batch=4', '--data', path.join(repoRoot, 'README.md'), '--windows', '4', '--json'];
    const r = spawnSync(process.execPath, [path.join(repoRoot, 'bin/mtc.js'), ...args], { cwd: repoRoot, encoding: 'utf8', timeout: 600_000 });
    assert.equal(r.status, 0, r.stderr);
    return (JSON.parse(r.stdout) as { loss: number }).loss;
  };
  const whole = run([]);
  const split = run(['--set', 'micro_batch=1']);
  assert.match(split.stdout, /4 micro-batches of 1 a step \(gradients accumulated\)/);
  const pick = (recs: Array<Record<string, number>>, key: string) => recs.filter((x) => key in x).map((x) => [x.step, x[key]]);
  for (const key of ['loss', 'val_loss']) {
    const [a, b] = [pick(whole.records, key), pick(split.records, key)];
    assert.deepEqual(a.map((x) => x[0]), b.map((x) => x[0]), key);
    // the same windows each step and the same held-out windows: 1e-4 relative after 4 steps
    a.forEach(([step, v], i) => assert.ok(Math.abs(v - b[i][1]) / v < 1e-4, `${key} at step ${step}: ${v} vs ${b[i][1]}`));
  }
  const [ew, es] = [evaluate(whole.out), evaluate(split.out)];
  assert.ok(Math.abs(ew - es) / ew < 1e-4, `held-out loss of the checkpoints: ${ew} (one batch) vs ${es} (micro-batches)`);
  // a run may resume with another micro_batch (on a smaller GPU): the same windows and mean gradients
  const resumed = run(['--set', 'micro_batch=2', '--steps', '6', '--resume'], whole.out);
  assert.match(resumed.stdout, /2 micro-batches of 2 a step/);
  const last = resumed.records.filter((r) => 'loss' in r).pop()!;
  assert.equal(last.step, 6);
  assert.ok(Number.isFinite(last.loss) && last.elapsed_s > whole.records[whole.records.length - 1].elapsed_s, 'elapsed_s counts on');
});
