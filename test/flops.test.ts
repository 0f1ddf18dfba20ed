// The FLOP count of compiler/flops.ts on small graphs counted by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { GraphBuilder } from '../compiler/builder.ts';
import { differentiate } from '../compiler/autodiff.ts';
import { countFlops, OPTIMIZER_FLOPS_PER_PARAM } from '../compiler/flops.ts';
import { buildGraph } from '../compiler/pipeline.ts';
import { modelsDir } from './helpers/models.ts';

test('a matmul, a silu and a sum: forward, backward and optimizer counted by hand', () => {
  const b = new GraphBuilder();
  const X = b.param({ path: 'X', shape: [2, 3, 4], init: [] });
  const W = b.param({ path: 'W', shape: [4, 5], init: [] });
  const Y = b.matmul(X, W); // [2,3,5]: 2·30·4 = 240
  const S = b.unary('silu', Y); // 30
  const loss = b.reshape(b.sum(S, [0, 1, 2]), []); // 30 − 1 = 29; the reshape is free
  b.graph.outputs.loss = loss;
  b.graph.outputs.logits = Y;
  differentiate(b, loss);
  const f = countFlops(b.graph);
  assert.equal(f.forward, 240 + 30 + 29);
  // backward: expand of the loss gradient (free); silu_grad and the product with it (30 + 30);
  // dX = dY @ Wᵀ: [2,3,5] @ [5,4] (2·24·5 = 240); dW = Xᵀ @ dY: [2,4,3] @ [2,3,5] (2·40·3 = 240),
  // summed over the batch axis to [4,5] (40 − 20 = 20); the gradient copy x·1 + 0 is free
  assert.equal(f.backward, 60 + 240 + 240 + 20);
  assert.equal(f.parameters, 24 + 20);
  assert.equal(f.optimizer, OPTIMIZER_FLOPS_PER_PARAM * 44);
  assert.equal(f.total, 299 + 560 + OPTIMIZER_FLOPS_PER_PARAM * 44);
  assert.equal(f.byKind.matmul, 240 * 3);
  assert.equal(f.byKind.sum, 29 + 20);
});

test('softmax, cross-entropy, affine and dropout rules; dead nodes do not count', () => {
  const b = new GraphBuilder();
  const L = b.param({ path: 'L', shape: [3, 7], init: [] });
  const targets = b.input('targets', [3]);
  const a = b.affine(L, 2, 1); // 2 per element: 42
  const c = b.affine(a, 1, 0); // a copy: 0
  const d = b.node({ kind: 'dropout', p: 0.1, key: 0 }, [c]); // 21
  const s = b.node({ kind: 'softmax' }, [d]); // 5 per element: 105
  b.matmul(L, b.permute(L, [1, 0])); // dead: nothing reads it
  const loss = b.node({ kind: 'cross_entropy' }, [s, targets]); // 4 per logit + 3 per row: 84 + 9
  b.graph.outputs.loss = loss;
  b.graph.outputs.logits = s;
  const f = countFlops(b.graph);
  assert.equal(f.forward, 42 + 0 + 21 + 105 + 93);
  assert.equal(f.backward, 0); // not differentiated: a forward pass
  assert.equal(f.optimizer, 0);
  assert.equal(f.total, 261);
});

test('the tiny Matrix Thinker: backward products cost twice the forward ones', () => {
  const { graph } = buildGraph(path.join(modelsDir, 'matrix_thinker.mt'), { preset: 'tiny' });
  const f = countFlops(graph);
  assert.equal(f.total, f.forward + f.backward + f.optimizer);
  // every forward matmul gives two of the same size in the backward pass
  let fwdMatmul = 0;
  let bwdMatmul = 0;
  for (const n of graph.nodes) {
    if (n.op.kind !== 'matmul') continue;
    const a = graph.nodes[n.inputs[0]];
    const flops = 2 * n.shape.reduce((x, y) => x * y, 1) * a.shape[a.shape.length - 1];
    if (n.id < (graph.backwardStart as number)) fwdMatmul += flops;
    else bwdMatmul += flops;
  }
  assert.equal(bwdMatmul, 2 * fwdMatmul);
  assert.equal(f.byKind.matmul, 3 * fwdMatmul);
  assert.ok(f.backward > f.forward && f.backward < 3 * f.forward, `backward ${f.backward}, forward ${f.forward}`);
});
