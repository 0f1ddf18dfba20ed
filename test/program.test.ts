// The generated program on the WebGPU device against the reference interpreter (float64):
// the loss of a forward pass, the gradients of one training step, and the weights after it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compile } from '../compiler/pipeline.ts';
import { interpret } from '../compiler/interp.ts';
import { numel } from '../compiler/ir.ts';
import { Rng } from '../compiler/rng.ts';
import { acquireDevice, type Gpu } from '../runtime/device.ts';
import { Session, writeModule } from '../runtime/session.ts';
import { initParams } from '../runtime/init.ts';
import { modelsDir } from './helpers/models.ts';

// Awkward sizes on purpose: ctx 7, vocab 19, d 6 with 3 heads, batch 3.
const sets = { d: '6', heads: '3', n_blocks: '2', T: '2', probes: '5', vocab: '19', ctx: '7', pos_rows: '9', batch: '3' };
let gpu: Gpu;
let session: Session;
let compiled: ReturnType<typeof compile>;

before(async () => {
  compiled = compile(path.join(modelsDir, 'matrix_thinker.mt'), { sets });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-prog-'));
  writeModule(compiled, dir);
  gpu = await acquireDevice();
  session = await Session.open(dir, gpu);
});
after(() => gpu?.close());

function batch(seed: number) {
  const rng = new Rng(seed);
  const n = 3 * 7;
  return {
    tokens: Int32Array.from({ length: n }, () => rng.int(19)),
    targets: Int32Array.from({ length: n }, () => rng.int(19)),
  };
}
const relErr = (a: number, b: number): number => Math.abs(a - b) / Math.max(1e-30, Math.abs(b));

test('forward loss on the device equals the interpreter (dropout off)', async () => {
  session.initialise(5);
  const b = batch(1);
  const gpuLoss = await session.evaluate([b]);
  const params = initParams(compiled.graph.params, 5);
  const g = compiled.graph;
  const ref = interpret(g, { params, inputs: { tokens: b.tokens, targets: b.targets }, training: false, seed: 0, step: 0 }, g.outputs.loss)[g.outputs.loss][0];
  // float32 against float64 through 4 block applications: 1e-4 relative (MODEL.md, Numerics)
  assert.ok(relErr(gpuLoss, ref) < 1e-4, `device ${gpuLoss} vs interpreter ${ref}`);
});

test('one training step: gradients and AdamW weights equal the interpreter', async () => {
  session.initialise(6);
  const b = batch(2);
  const seed = 9;
  const step = 0;
  const lr = 1e-2;
  const t = compiled.train;
  const before = initParams(compiled.graph.params, 6);
  session.trainStep(b, step, lr, seed);
  const [loss] = await session.readLosses();
  const grads = await session.readArena('grads');
  const after = await session.readParams();
  const g = compiled.graph;
  const vals = interpret(g, { params: before, inputs: { tokens: b.tokens, targets: b.targets }, training: true, seed, step });
  assert.ok(relErr(loss, vals[g.outputs.loss][0]) < 1e-4, `loss ${loss} vs ${vals[g.outputs.loss][0]}`);
  // global norm for clipping
  let sq = 0;
  g.grads!.forEach((id) => vals[id].forEach((x) => (sq += x * x)));
  const norm = Math.sqrt(sq);
  const clip = Math.min(1, t.clip / (norm + 1e-6));
  let worstGrad = 0;
  compiled.plan.params.forEach((p, i) => {
    const ref = vals[g.grads![i]];
    const scale = Math.max(...Array.from(ref, Math.abs), 1e-12);
    for (let k = 0; k < numel(p.shape); k++) {
      const e = Math.abs(grads[p.offset + k] - ref[k]) / scale;
      worstGrad = Math.max(worstGrad, e);
      // 1e-3 of the tensor's largest gradient: float32 through the whole backward pass
      assert.ok(e < 1e-3, `${p.path}[${k}]: device grad ${grads[p.offset + k]} vs ${ref[k]}`);
      // AdamW's first step moves each weight by lr·ĝ/(|ĝ|+eps) plus decay: check where ĝ is not tiny
      const gk = ref[k] * clip;
      if (Math.abs(ref[k]) > 1e-3 * scale) {
        const m = (1 - t.betas[0]) * gk;
        const v = (1 - t.betas[1]) * gk * gk;
        const want = before[i][k] * (1 - lr * t.weightDecay) - (lr / (1 - t.betas[0])) * (m / (Math.sqrt(v) / Math.sqrt(1 - t.betas[1]) + t.eps));
        assert.ok(Math.abs(after[p.offset + k] - want) < 1e-5 * Math.max(1, Math.abs(want)), `${p.path}[${k}]: ${after[p.offset + k]} vs ${want}`);
      }
    }
  });
  assert.ok(worstGrad < 1e-3);
});
