// Per-block gradient checkpointing (compiler/checkpoint.ts): the same gradients, computed from
// fewer saved forward values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { buildGraph, compile } from '../compiler/pipeline.ts';
import { savedFloats } from '../compiler/checkpoint.ts';
import { interpret } from '../compiler/interp.ts';
import { Rng } from '../compiler/rng.ts';
import { initParams } from '../runtime/init.ts';
import { modelsDir } from './helpers/models.ts';

const model = path.join(modelsDir, 'matrix_thinker.mt');
const sets = { d: '6', heads: '3', n_blocks: '2', T: '2', probes: '5', vocab: '19', ctx: '7', pos_rows: '9', batch: '3' };

test('checkpointed gradients equal the stored ones exactly (float64 interpreter, dropout on)', () => {
  const plain = buildGraph(model, { sets }).graph;
  const ckpt = buildGraph(model, { sets: { ...sets, checkpoint: '1' } }).graph;
  assert.ok(ckpt.nodes.some((n) => n.name.endsWith('.recomputed')), 'the backward pass recomputes');
  const rng = new Rng(4);
  const inputs = { tokens: Int32Array.from({ length: 21 }, () => rng.int(19)), targets: Int32Array.from({ length: 21 }, () => rng.int(19)) };
  const env = { params: initParams(plain.params, 2), inputs, training: true, seed: 7, step: 3 };
  const a = interpret(plain, env);
  const b = interpret(ckpt, env);
  assert.equal(b[ckpt.outputs.loss][0], a[plain.outputs.loss][0]);
  plain.grads!.forEach((gid, p) => assert.deepEqual(b[ckpt.grads![p]], a[gid], `gradient of ${plain.params[p].path}`));
});

test('checkpointing keeps only what crosses block boundaries: saved values and device memory fall', () => {
  const big = { ...sets, d: '8', heads: '2', n_blocks: '4', T: '4', ctx: '32', pos_rows: '32', batch: '4' };
  const plain = compile(model, { sets: big });
  const ckpt = compile(model, { sets: { ...big, checkpoint: '1' } });
  const saved = [savedFloats(plain.graph), savedFloats(ckpt.graph)];
  const bytes = (c: typeof plain) => c.plan.buffers.reduce((s, b) => s + b.bytes, 0);
  assert.ok(saved[1] * 4 < saved[0], `forward floats read by the backward pass: ${saved[0]} stored, ${saved[1]} checkpointed`);
  assert.ok(bytes(ckpt) * 2 < bytes(plain), `activation buffers: ${bytes(plain)} bytes stored, ${bytes(ckpt)} checkpointed`);
});

test('a fused, checkpointed plan stays near the unfused one: weight gradients never wait past a later addend', () => {
  // A weight shared by T iterations gets one gradient contribution per use, accumulated by
  // adds. A contraction fused with the add of a contribution computed after it would run where
  // that add is, keeping its operands (a recomputed block's values) alive through a whole
  // iteration of the backward pass: 3.1x the unfused plan here before the rule, 1.18x after.
  const big = { ...sets, d: '8', heads: '2', n_blocks: '4', T: '4', ctx: '32', pos_rows: '32', batch: '4', checkpoint: '1' };
  const fused = compile(model, { sets: big });
  const unfused = compile(model, { sets: big, fuse: false });
  const bytes = (c: typeof fused) => c.plan.buffers.reduce((s, b) => s + b.bytes, 0);
  assert.ok(bytes(fused) < 1.5 * bytes(unfused), `activation buffers: fused ${bytes(fused)} bytes, unfused ${bytes(unfused)}`);
  for (const gr of fused.plan.groups) {
    if (gr.kind === 'contract' && gr.addend !== undefined) assert.ok(gr.addend < gr.product, `contraction %${gr.node} adds %${gr.addend}, computed after its product %${gr.product}`);
  }
});
