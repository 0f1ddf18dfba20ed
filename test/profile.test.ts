// Session.profileStep (the bench's per-kernel device times): one timestamped pass per dispatch,
// and the step it takes is the training step trainStep takes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compile } from '../compiler/pipeline.ts';
import { Rng } from '../compiler/rng.ts';
import { acquireDevice, type Gpu } from '../runtime/device.ts';
import { Session, writeModule } from '../runtime/session.ts';
import { byFamily, kernelFamily } from '../runtime/profile.ts';
import { modelsDir } from './helpers/models.ts';

const sets = { d: '6', heads: '3', n_blocks: '1', T: '2', probes: '5', vocab: '19', ctx: '7', pos_rows: '9', batch: '3' };
let gpu: Gpu;
let dir: string;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-profile-'));
  writeModule(compile(path.join(modelsDir, 'matrix_thinker.mt'), { sets }), dir);
  gpu = await acquireDevice({ timestamps: true });
});
after(() => gpu?.close());

/** The kernels the generated program dispatches in a training step, in order, from its source. */
function programOrder(): string[] {
  const src = fs.readFileSync(path.join(dir, 'program.ts'), 'utf8');
  const body = (fn: string) => src.slice(src.indexOf(`  ${fn}(pass: GPUComputePassEncoder) {`), src.indexOf('\n  }\n', src.indexOf(`  ${fn}(pass: GPUComputePassEncoder) {`)));
  return ['forward', 'backward', 'optimizer'].flatMap((fn) => [...body(fn).matchAll(/this\.run\(pass, "([^"]+)"/g)].map((m) => m[1]));
}

function batch(seed: number) {
  const rng = new Rng(seed);
  return { tokens: Int32Array.from({ length: 21 }, () => rng.int(19)), targets: Int32Array.from({ length: 21 }, () => rng.int(19)) };
}

test('profileStep times every dispatch and trains exactly as trainStep', async (t) => {
  if (!gpu.hasTimestamps) return t.skip(`${gpu.description} has no timestamp queries`);
  const plain = await Session.open(dir, gpu);
  const profiled = await Session.open(dir, gpu);
  for (const s of [plain, profiled]) s.initialise(3);
  plain.trainStep(batch(1), 0, 1e-2, 7);
  plain.trainStep(batch(2), 1, 1e-2, 7);
  profiled.trainStep(batch(1), 0, 1e-2, 7);
  const times = await profiled.profileStep(batch(2), 1, 1e-2, 7, 7); // 7 dispatches a query set: several sets
  assert.deepEqual(
    times.map((x) => x.kernel),
    programOrder(),
  );
  const d = profiled.mod.layout.dispatches;
  assert.equal(times.length, d.forward + d.backward + d.optimizer);
  for (const x of times) assert.ok(Number.isFinite(x.ms) && x.ms >= 0, `${x.kernel}: ${x.ms} ms`);
  assert.ok(times.some((x) => x.ms > 0), 'every timestamp pair is zero');
  // the recorded run was the program's own: a third step goes the same way in both
  plain.trainStep(batch(3), 2, 1e-2, 7);
  profiled.trainStep(batch(3), 2, 1e-2, 7);
  assert.deepEqual(await profiled.readLosses(), await plain.readLosses());
});

test('profileStep without timestamp queries is a clear error', async () => {
  const g = await acquireDevice();
  try {
    const s = await Session.open(dir, g);
    await assert.rejects(s.profileStep(batch(1), 0, 1e-2, 7), /profiling needs timestamp queries/);
  } finally {
    g.close();
  }
});

test('kernel families come from kernel names', () => {
  assert.equal(kernelFamily('fused_16ops_cc868584f1'), 'fused regions');
  assert.equal(kernelFamily('attention_dq_s0p17_p0p1_k2_16x2x64x32'), 'attention dq');
  assert.equal(kernelFamily('binary_mul_16x64x8x8_16x64x8x8'), 'binary mul');
  assert.equal(kernelFamily('contract_8x8192_s1_8_8192x8_s8_1_sum_none_plus'), 'contract');
  const p = byFamily([
    { kernel: 'fused_2ops_a', ms: 1 },
    { kernel: 'matmul_8x8', ms: 0.5 },
    { kernel: 'fused_3ops_b', ms: 2 },
  ]);
  assert.equal(p.device_ms, 3.5);
  assert.deepEqual(p.families, [
    { family: 'fused regions', dispatches: 2, ms: 3 },
    { family: 'matmul', dispatches: 1, ms: 0.5 },
  ]);
});
