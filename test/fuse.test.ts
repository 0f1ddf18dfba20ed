// The fusion pass (compiler/fuse.ts): how it cuts the graph into kernels, and that fused and
// unfused programs train alike on the device.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compile } from '../compiler/pipeline.ts';
import { fuseGraph, liveNodes, operandRead, tokenSplit, FUSE_DEFAULTS, MAX_BLOCK_FLOATS } from '../compiler/fuse.ts';
import { numel } from '../compiler/ir.ts';
import { Rng } from '../compiler/rng.ts';
import { interpret } from '../compiler/interp.ts';
import { initParams } from '../runtime/init.ts';
import { acquireDevice, type Gpu } from '../runtime/device.ts';
import { Session, writeModule } from '../runtime/session.ts';
import { modelsDir } from './helpers/models.ts';

const sets = { d: '6', heads: '3', n_blocks: '2', T: '2', probes: '5', vocab: '19', ctx: '7', pos_rows: '9', batch: '3' };

test('token blocks: where a shape is cut into one block per token', () => {
  assert.deepEqual(tokenSplit([16, 64, 8, 8], 1024), { axis: 1, lo: 1 });
  assert.deepEqual(tokenSplit([8192, 8], 1024), { axis: 0, lo: 8 }); // folded rows: 8 per token
  assert.deepEqual(tokenSplit([16, 2, 64, 32], 1024), { axis: 2, lo: 2 });
  assert.equal(tokenSplit([8, 8], 1024), null);
  assert.equal(tokenSplit([3, 5, 7], 21), null); // 21 does not divide at an axis boundary
  // a [16, 64, 1, 1] operand broadcast over [16, 64, 8, 8]: read at its own block
  const r = operandRead([16, 64, 8, 8], { axis: 1, lo: 1 }, [64, 1, 0, 0], 1024, 1024);
  assert.equal(r.aligned, true);
  assert.deepEqual(r.local, [1, 0, 0]);
  // a [64, 8, 8] position table broadcast over the batch: not aligned, not the same for all blocks
  const p = operandRead([16, 64, 8, 8], { axis: 1, lo: 1 }, [0, 64, 8, 1], 4096, 1024);
  assert.equal(p.aligned, false);
  assert.equal(p.same, false);
});

test('fusion partitions the graph: every computed node once, regions within the binding limit, deterministic', () => {
  const c = compile(path.join(modelsDir, 'matrix_thinker.mt'), { sets });
  const g = c.graph;
  const groups = fuseGraph(g);
  const live = liveNodes(g);
  const seen = new Map<number, number>();
  const ids = (gr: (typeof groups)[number]): number[] => (gr.kind === 'region' ? gr.members : [gr.node, ...(gr.absorbed ?? [])]);
  for (const gr of groups) for (const id of ids(gr)) seen.set(id, (seen.get(id) ?? 0) + 1);
  for (const n of g.nodes) if (live[n.id]) assert.equal(seen.get(n.id), 1, `node %${n.id} ${n.op.kind} scheduled ${seen.get(n.id) ?? 0} times`);
  // dispatch order respects dependencies
  const at = new Map<number, number>();
  groups.forEach((gr, i) => {
    for (const id of ids(gr)) at.set(id, i);
  });
  for (const n of g.nodes) if (live[n.id]) for (const i of n.inputs) assert.ok((at.get(i) as number) <= (at.get(n.id) as number), `%${n.id} runs before its input %${i}`);
  assert.ok(groups.some((gr) => gr.kind === 'contract'), 'weight gradients are contractions');
  // every region kernel binds at most the default limit of storage buffers
  const regions = c.plan.forward.concat(c.plan.backward).filter((d) => d.kernel.startsWith('fused_'));
  assert.ok(regions.length > 10, 'the thinker has fused regions');
  for (const d of regions) assert.ok(d.bindings.length <= FUSE_DEFAULTS.maxStorageBuffers, `${d.kernel} binds ${d.bindings.length} buffers`);
  // fewer kernels than one per node
  const unfused = compile(path.join(modelsDir, 'matrix_thinker.mt'), { sets, fuse: false });
  const count = (x: typeof c) => x.plan.forward.length + x.plan.backward.length;
  assert.ok(count(c) * 2 < count(unfused), `fused ${count(c)} dispatches, unfused ${count(unfused)}`);
  // same input, same bytes
  const again = compile(path.join(modelsDir, 'matrix_thinker.mt'), { sets });
  assert.deepEqual([...again.files], [...c.files]);
});

test('fusion splits regions to bind no more storage buffers than the device allows', () => {
  const dispatches = (maxStorageBuffers: number) => {
    const c = compile(path.join(modelsDir, 'matrix_thinker.mt'), { sets, maxStorageBuffers });
    const all = c.plan.forward.concat(c.plan.backward);
    for (const d of all) if (d.kernel.startsWith('fused_')) assert.ok(d.bindings.length <= maxStorageBuffers, `${d.kernel} binds ${d.bindings.length} > ${maxStorageBuffers}`);
    return all.length;
  };
  const [four, eight, sixteen] = [dispatches(4), dispatches(8), dispatches(16)];
  assert.ok(four > eight && eight > sixteen, `dispatches with 4, 8, 16 bindings: ${four}, ${eight}, ${sixteen}`);
});

test('tiny, with the 16 storage buffers lavapipe allows: at least 5x fewer dispatches than one kernel per primitive', () => {
  // issue #5's target; weight gradients that read a region wait for it to close rather than
  // splitting it (281 dispatches before, 261 after)
  const count = (fuse: boolean) => {
    const c = compile(path.join(modelsDir, 'matrix_thinker.mt'), { preset: 'tiny', fuse, maxStorageBuffers: 16 });
    return c.plan.forward.length + c.plan.backward.length + 3; // + the optimizer's three
  };
  const [fused, unfused] = [count(true), count(false)];
  assert.ok(fused * 5 <= unfused, `fused ${fused} dispatches a step, unfused ${unfused}`);
});

test('token blocks past MAX_BLOCK_FLOATS are not fused into regions', () => {
  const c = compile(path.join(modelsDir, 'matrix_thinker.mt'), { sets: { ...sets, d: '32', heads: '2' } }); // 32 x 32 = 1024 floats a block
  const tokens = 3 * 7;
  const regions = c.plan.groups.filter((gr) => gr.kind === 'region');
  assert.ok(MAX_BLOCK_FLOATS < 1024);
  for (const r of regions) for (const m of r.members) if (r.modes.get(m) === 'tok') assert.ok(numel(c.graph.nodes[m].shape) / tokens < 1024, `%${m} ${c.graph.nodes[m].op.kind} [${c.graph.nodes[m].shape}] in a region`);
  assert.ok(c.plan.groups.some((gr) => gr.kind === 'node' && c.graph.nodes[gr.node].op.kind === 'binary' && numel(c.graph.nodes[gr.node].shape) === tokens * 1024), 'elementwise ops on 32 x 32 blocks have kernels of their own');
  assert.ok(c.plan.groups.some((gr) => gr.kind === 'contract'), 'weight gradients are still contractions');
});

test('fused region kernels say what they fuse and where it comes from', () => {
  const c = compile(path.join(modelsDir, 'matrix_thinker.mt'), { sets });
  const fused = [...c.files].filter(([f]) => f.startsWith('kernels/fused_'));
  assert.ok(fused.length > 0);
  for (const [f, code] of fused) {
    assert.match(code, /a fused region of \d+ ops/, f);
    assert.match(code, /line \d+/, f);
  }
});

// Models that once broke the scheduler (found in review): a constant read through a reshape,
// and a dead sum of a product that something else reads.
const probe = (body: string, params: string) => `hyper {
  n = 4
  vocab = 7
  ctx = 5
  batch = 3
}
model Probe {
${params}
  forward(tokens) {
${body}
  }
}
train {
  ctx = ctx
  batch = batch
  steps = 1
  loss = cross_entropy
}
`;
const constThroughView = probe(
  '    J = reshape(eye(n), [n * n])\n    E = gather(emb, tokens)\n    return (E * J + E) @ out',
  '  param emb: [vocab, n * n] = normal(1)\n  param out: [n * n, vocab] = normal(0.3)',
);
const deadSum = probe(
  '    X = reshape(gather(emb, tokens), [..., n, n], 1)\n    Y = X @ transpose(X)\n    Z = sum(Y, [0, 1])\n    return reshape(Y, [..., n * n], 2) @ out',
  '  param emb: [vocab, n * n] = normal(1)\n  param out: [n * n, vocab] = normal(0.3)',
);
const writeProbe = (src: string): string => {
  const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-probe-')), 'probe.mt');
  fs.writeFileSync(f, src);
  return f;
};

test('constants have buffers of their own: setup writes them once, nothing may reuse them', () => {
  for (const fuse of [true, false]) {
    // batch · ctx = d: the rank-1 write's vectors [1, 8, 8, 1] have the size of the identity
    // [8, 8] of each block, which once took the buffer such a vector had released
    const c = compile(path.join(modelsDir, 'matrix_thinker.mt'), { sets: { batch: '1', ctx: '8', pos_rows: '8', checkpoint: '1' }, fuse });
    const g = c.graph;
    const consts = [...c.plan.slots].filter(([id]) => g.nodes[id].inputs.length === 0 && (g.nodes[id].op.kind === 'eye' || g.nodes[id].op.kind === 'fill'));
    for (const [id, slot] of consts) {
      for (const [other, s] of c.plan.slots) {
        if (other !== id && s.buffer === slot.buffer) assert.fail(`constant %${id} shares ${slot.buffer} with %${other} (fuse ${fuse})`);
      }
    }
  }
});

let gpu: Gpu;
before(async () => {
  gpu = await acquireDevice();
});
after(() => gpu?.close());

async function losses(fuse: boolean, steps: number): Promise<number[]> {
  const c = compile(path.join(modelsDir, 'matrix_thinker.mt'), { sets, fuse });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-fuse-'));
  writeModule(c, dir);
  const s = await Session.open(dir, gpu);
  s.initialise(3);
  const rng = new Rng(11);
  const b = { tokens: Int32Array.from({ length: 21 }, () => rng.int(19)), targets: Int32Array.from({ length: 21 }, () => rng.int(19)) };
  // one batch over and over, so that the loss falls; dropout on, the same masks in both (seed, step, index)
  for (let step = 0; step < steps; step++) s.trainStep(b, step, 1e-2, 5);
  return s.readLosses();
}

test('a constant read through a view, and a dead sum of a live product, compile and compute right', async () => {
  for (const src of [constThroughView, deadSum]) {
    const file = writeProbe(src);
    for (const fuse of [true, false]) {
      const c = compile(file, { fuse });
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-probe-run-'));
      writeModule(c, dir);
      const s = await Session.open(dir, gpu);
      s.initialise(1);
      const b = { tokens: Int32Array.from({ length: 15 }, (_, i) => (i * 3) % 7), targets: Int32Array.from({ length: 15 }, (_, i) => (i * 5) % 7) };
      const got = await s.evaluate([b]);
      const g = c.graph;
      const want = interpret(g, { params: initParams(g.params, 1), inputs: b, training: false, seed: 0, step: 0 }, g.outputs.loss)[g.outputs.loss][0];
      assert.ok(Math.abs(got - want) <= 1e-5 * Math.abs(want), `fuse ${fuse}: device ${got}, interpreter ${want}`);
    }
  }
});

test('fused and unfused programs give the same training losses, step for step', async () => {
  const steps = 6;
  const [a, b] = [await losses(true, steps), await losses(false, steps)];
  assert.equal(a.length, steps);
  for (let i = 0; i < steps; i++) {
    // f32 rounding only: the fused kernels compute the same ops, some in another order
    assert.ok(Math.abs(a[i] - b[i]) <= 1e-5 * Math.abs(b[i]), `step ${i}: fused ${a[i]}, unfused ${b[i]}`);
  }
  assert.ok(a[steps - 1] < a[0], `the loss falls: ${a.join(', ')}`);
});
