// The attention pass (compiler/attention.ts): which graphs it rewrites, and that the rewritten
// graph computes what the primitives did, loss and every gradient, in float64 on the
// interpreter (dropout on). The kernels are checked against the interpreter in
// test/kernels.test.ts and, inside whole programs, in test/program.test.ts and test/fuse.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { fuseAttention } from '../compiler/attention.ts';
import { differentiate } from '../compiler/autodiff.ts';
import { GraphBuilder } from '../compiler/builder.ts';
import { interpret } from '../compiler/interp.ts';
import type { Graph } from '../compiler/ir.ts';
import { buildGraph, compile } from '../compiler/pipeline.ts';
import { Rng } from '../compiler/rng.ts';
import { initParams } from '../runtime/init.ts';
import { modelsDir } from './helpers/models.ts';

/** Relative difference, for float64 values that should agree to rounding. */
function close(a: ArrayLike<number>, b: ArrayLike<number>, what: string, tol = 1e-10): void {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) {
    const err = Math.abs(a[i] - b[i]) / Math.max(1e-3, Math.abs(b[i]));
    assert.ok(err <= tol, `${what}[${i}]: ${a[i]} against ${b[i]} (relative ${err.toExponential(2)})`);
  }
}

interface Variant {
  shift?: number;
  fill?: number;
  dropout?: number;
  scale?: number | null;
  /** read the probabilities a second time */
  reuse?: boolean;
}

/** loss = sum(O ⊙ W) with O = dropout(softmax(causal_mask(scale · Q Kᵀ))) V over params Q, K, V, W. */
function pattern(v: Variant = {}): { b: GraphBuilder; values: Float64Array[] } {
  const b = new GraphBuilder();
  const rng = new Rng(3);
  const values: Float64Array[] = [];
  const p = (shape: number[]) => {
    values.push(Float64Array.from({ length: shape.reduce((x, y) => x * y, 1) }, () => rng.normal()));
    return b.param({ path: `p${values.length}`, shape, init: [] });
  };
  const [q, k, vv] = [p([2, 3, 6, 4]), p([2, 3, 6, 4]), p([2, 3, 6, 5])];
  let s = b.matmul(q, b.permute(k, [0, 1, 3, 2]));
  if (v.scale !== null) s = b.affine(s, v.scale ?? 0.5, v.shift ?? 0);
  let a = b.node({ kind: 'softmax' }, [b.node({ kind: 'causal_mask', fill: v.fill ?? -Infinity }, [s])]);
  if (v.dropout) a = b.node({ kind: 'dropout', p: v.dropout, key: 2 }, [a]);
  let o = b.matmul(a, vv);
  if (v.reuse) o = b.binary('add', o, b.sum(a, [3]));
  const w = p(b.shape(o));
  const loss = b.reshape(b.sum(b.binary('mul', o, w), [0, 1, 2, 3]), []);
  b.graph.outputs = { loss };
  return { b, values };
}

const attentionNodes = (g: Graph) => g.nodes.filter((n) => n.op.kind === 'attention').length;

test('the pass rewrites dropout(softmax(causal_mask(scale Q Kᵀ))) V, and the loss and gradients stay (float64)', () => {
  for (const variant of [{}, { dropout: 0.3 }, { scale: null }] as Variant[]) {
    const plain = pattern(variant);
    const fused = pattern(variant);
    assert.equal(fuseAttention(fused.b.graph), 1, JSON.stringify(variant));
    assert.equal(attentionNodes(fused.b.graph), 2);
    for (const x of [plain, fused]) differentiate(x.b, x.b.graph.outputs.loss);
    assert.equal(attentionNodes(fused.b.graph), 5, 'lse, out, and the backward dq, dk, dv');
    const env = { params: plain.values, inputs: {}, training: true, seed: 5, step: 1 };
    const a = interpret(plain.b.graph, env);
    const b = interpret(fused.b.graph, env);
    const [ga, gb] = [plain.b.graph, fused.b.graph];
    close(b[gb.outputs.loss], a[ga.outputs.loss], 'loss');
    ga.grads!.forEach((gid, i) => close(b[gb.grads![i]], a[gid], `gradient of p${i + 1} ${JSON.stringify(variant)}`));
  }
});

test('the pass leaves attention alone where the scores are read elsewhere or the pattern differs', () => {
  for (const variant of [{ reuse: true }, { fill: 0 }, { shift: 1 }] as Variant[]) {
    const g = pattern(variant).b.graph;
    assert.equal(fuseAttention(g), 0, JSON.stringify(variant));
    assert.equal(attentionNodes(g), 0);
  }
});

test('models: every attention of the four models is rewritten with fusion on, none with --no-fuse', () => {
  const count = (file: string, fuse: boolean) => attentionNodes(buildGraph(path.join(modelsDir, file), { fuse }).graph);
  // tiny Matrix Thinker: n_blocks 2 x T 2 calls, each lse + out forward and dq, dk, dv backward
  assert.equal(count('matrix_thinker.mt', true), 4 * 5);
  assert.equal(count('matrix_thinker.mt', false), 0);
  assert.ok(count('vector_transformer.mt', true) > 0);
  assert.ok(count('vector_collapse.mt', true) > 0);
  // matrix-product attention mixes the per-token K_tᵀ V_t with the same softmax: V is them, f = n·n
  assert.equal(count('matrix_product_attention.mt', true), 4 * 5);
  const k = compile(path.join(modelsDir, 'matrix_thinker.mt'), {});
  assert.ok([...k.files.keys()].some((f) => /kernels\/attention_out_/.test(f)), 'an attention kernel is generated');
  assert.ok(![...k.files.keys()].some((f) => /kernels\/softmax_16x2x64x64/.test(f)), 'no softmax over the scores');
});

test('a whole model: the rewritten graph gives the loss and gradients of the primitives (float64, dropout on)', () => {
  const model = path.join(modelsDir, 'matrix_thinker.mt');
  const sets = { d: '6', heads: '3', n_blocks: '2', T: '2', probes: '5', vocab: '19', ctx: '7', pos_rows: '9', batch: '3' };
  const plain = buildGraph(model, { sets, fuse: false }).graph;
  const fused = buildGraph(model, { sets }).graph;
  assert.ok(attentionNodes(fused) > 0);
  const rng = new Rng(4);
  const inputs = { tokens: Int32Array.from({ length: 21 }, () => rng.int(19)), targets: Int32Array.from({ length: 21 }, () => rng.int(19)) };
  const env = { params: initParams(plain.params, 2), inputs, training: true, seed: 7, step: 3 };
  const a = interpret(plain, env);
  const b = interpret(fused, env);
  close(b[fused.outputs.loss], a[plain.outputs.loss], 'loss');
  plain.grads!.forEach((gid, p) => close(b[fused.grads![p]], a[gid], `gradient of ${plain.params[p].path}`, 1e-8));
});

test('one head: the memory an attention view reads is written even when its permute is fused into a region', () => {
  const sets = { d: '6', heads: '1', n_blocks: '2', T: '2', probes: '5', vocab: '19', ctx: '7', pos_rows: '9', batch: '3' };
  for (const maxStorageBuffers of [8, 16]) {
    const c = compile(path.join(modelsDir, 'matrix_thinker.mt'), { sets, maxStorageBuffers });
    for (const d of [...c.plan.forward, ...c.plan.backward]) assert.ok(d.bindings.every(Boolean), `${d.kernel}: a binding has no buffer`);
    assert.ok(c.graph.nodes.some((n) => n.op.kind === 'attention'));
  }
});
