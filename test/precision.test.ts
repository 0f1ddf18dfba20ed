// f16 storage of activations (compiler/precision.ts, `--f16` / train setting f16 = 1): which
// values it stores as f16, that the plan's activation memory falls, and that training on the
// device tracks the f32 run (skipped where the adapter has no shader-f16; lavapipe has it).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildGraph, compile } from '../compiler/pipeline.ts';
import { Rng } from '../compiler/rng.ts';
import { acquireDevice, type Gpu } from '../runtime/device.ts';
import { Session, writeModule } from '../runtime/session.ts';
import { modelsDir } from './helpers/models.ts';

const model = path.join(modelsDir, 'matrix_thinker.mt');
const sets = { d: '6', heads: '3', n_blocks: '2', T: '2', probes: '5', vocab: '19', ctx: '7', pos_rows: '9', batch: '3' };

let gpu: Gpu;
before(async () => {
  gpu = await acquireDevice();
});
after(() => gpu?.close());

test('f16 stores forward activations only: weights, the backward pass and what the host reads stay f32', () => {
  const g = buildGraph(model, { sets, f16: true }).graph;
  const start = g.backwardStart as number;
  const halves = g.nodes.filter((n) => n.dtype === 'f16');
  assert.ok(halves.length > 100, `${halves.length} f16 values`);
  assert.ok(halves.every((n) => n.id < start || n.op.kind === 'reshape'), 'only forward values (and views of them)');
  const host = [...Object.values(g.outputs), ...Object.values(g.observations).flat()];
  for (const id of host) assert.equal(g.nodes[id].dtype, 'f32', `${g.nodes[id].name} is read by the host`);
  for (const n of g.nodes) {
    if (['param', 'input', 'fill', 'eye'].includes(n.op.kind)) assert.notEqual(n.dtype, 'f16', n.name);
    if (n.op.kind === 'reshape') assert.equal(n.dtype, g.nodes[n.inputs[0]].dtype, `${n.name} is a view of its input`);
  }
  assert.ok(g.grads!.every((id) => g.nodes[id].dtype === 'f32'), 'gradients are f32');
  assert.equal(buildGraph(model, { sets }).graph.nodes.filter((n) => n.dtype === 'f16').length, 0, 'off by default');
});

test('f16: kernels declare array<f16> and convert every access; activation buffers shrink', () => {
  const a = compile(model, { sets: { ...sets, batch: '8', ctx: '16', pos_rows: '16' } });
  const b = compile(model, { sets: { ...sets, batch: '8', ctx: '16', pos_rows: '16' }, f16: true });
  const bytes = (c: typeof a) => c.plan.buffers.reduce((s, x) => s + x.bytes, 0);
  // each f16 value takes 2 bytes an element; the backward pass's values keep 4
  for (const n of b.graph.nodes) {
    const slot = b.plan.slots.get(n.id);
    if (n.dtype === 'f16' && slot && n.op.kind !== 'reshape') assert.equal(slot.bytes, Math.ceil(n.shape.reduce((x, y) => x * y, 1) / 2) * 4, n.name);
  }
  assert.ok(bytes(b) < 0.85 * bytes(a), `activation buffers: ${bytes(a)} bytes f32, ${bytes(b)} f16`);
  const kernels = [...b.files].filter(([f]) => f.startsWith('kernels/'));
  const halves = kernels.filter(([, code]) => code.includes('array<f16>'));
  assert.ok(halves.length > 10, `${halves.length} kernels hold f16`);
  for (const [f, code] of halves) {
    assert.match(code, /^enable f16;$/m, f);
    const names = [...code.matchAll(/var<storage, [a-z_]+> (\w+): array<f16>/g)].map((m) => m[1]);
    for (const n of names) {
      const body = code.split('\n').filter((l) => !l.trimStart().startsWith('//') && !l.includes('var<storage'));
      for (const l of body) {
        // every access to an f16 binding is a converted read or a converted store
        const bad = [...l.matchAll(new RegExp(`(^|[^\\w(])${n}\\[`, 'g'))].filter((m) => !new RegExp(`${n}\\[[^\\]]*\\] = f16\\(`).test(l.slice(m.index)));
        assert.deepEqual(bad.map(() => l), [], `${f}: ${n}`);
      }
    }
  }
});

test('f16: kernels that read or write f16 are named apart from their f32 twins (fused, unfused, the full preset)', () => {
  for (const opts of [{ sets, fuse: false }, { sets }, { preset: 'full', sets: { batch: '1', ctx: '16' } }]) {
    const c = compile(model, { ...opts, f16: true }); // a name used for two codes throws in the planner
    const lse = c.graph.nodes.filter((n) => n.op.kind === 'attention' && n.op.part === 'lse');
    assert.ok(lse.every((n) => n.dtype === 'f32'), 'the row log-sum-exp stays f32');
  }
});

async function losses(f16: boolean, steps: number): Promise<number[]> {
  const c = compile(model, { sets, f16 });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-f16-'));
  writeModule(c, dir);
  const s = await Session.open(dir, gpu);
  s.initialise(3);
  const rng = new Rng(11);
  const b = { tokens: Int32Array.from({ length: 21 }, () => rng.int(19)), targets: Int32Array.from({ length: 21 }, () => rng.int(19)) };
  for (let step = 0; step < steps; step++) s.trainStep(b, step, 1e-2, 5);
  return s.readLosses();
}

test('f16 activations train like f32: losses within 1e-3 relative, step for step', async (t) => {
  if (!gpu.hasF16) return t.skip(`${gpu.description} has no shader-f16`);
  const steps = 6;
  const [h, f] = [await losses(true, steps), await losses(false, steps)];
  let worst = 0;
  for (let i = 0; i < steps; i++) {
    const rel = Math.abs(h[i] - f[i]) / Math.abs(f[i]);
    worst = Math.max(worst, rel);
    // f16 keeps 11 bits (u = 2^-11 ≈ 4.9e-4 per stored value); the loss averages many of them
    assert.ok(rel <= 1e-3, `step ${i}: f16 ${h[i]}, f32 ${f[i]}`);
  }
  assert.ok(h[steps - 1] < h[0], `the loss falls: ${h.join(', ')}`);
  t.diagnostic(`largest relative loss difference f16 / f32 over ${steps} steps: ${worst.toExponential(2)}`);
});
