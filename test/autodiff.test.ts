// Reverse-mode gradients against central finite differences, in float64 on the reference
// interpreter, for a whole small Matrix Thinker (every stdlib layer, T = 2 iterations sharing
// one block's weights, dropout on with its fixed mask).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { buildGraph } from '../compiler/pipeline.ts';
import { interpret, type InterpEnv } from '../compiler/interp.ts';
import { numel } from '../compiler/ir.ts';
import { Rng } from '../compiler/rng.ts';
import { initParams } from '../runtime/init.ts';
import { modelsDir } from './helpers/models.ts';

const small = { d: '4', heads: '2', n_blocks: '1', T: '2', probes: '3', vocab: '16', ctx: '5', pos_rows: '6', batch: '2' };

test('gradients of a small Matrix Thinker match central differences (float64)', (t) => {
  const { graph } = buildGraph(path.join(modelsDir, 'matrix_thinker.mt'), { sets: small });
  const rng = new Rng(7);
  const params = initParams(graph.params, 3).map((p) => Float64Array.from(p));
  const tokens = Array.from({ length: 10 }, () => rng.int(16));
  const targets = Array.from({ length: 10 }, () => rng.int(16));
  const env: InterpEnv = { params, inputs: { tokens, targets }, training: true, seed: 11, step: 5 };
  const lossId = graph.outputs.loss;
  const values = interpret(graph, env);
  const loss = (): number => interpret(graph, env, lossId)[lossId][0];
  const base = loss();
  assert.ok(Math.abs(base - values[lossId][0]) === 0);
  // Tolerance: h = 1e-5 in float64 gives truncation error ~h²·|f'''| ≈ 1e-10 and rounding
  // error ~eps·|f|/h ≈ 1e-10 here; 1e-7 absolute + 1e-5 relative leaves margin for both.
  const h = 1e-5;
  let checked = 0;
  let worst = 0;
  graph.params.forEach((p, pi) => {
    const grad = values[graph.grads![pi]];
    const n = numel(p.shape);
    for (const k of new Set([0, n - 1, rng.int(n)])) {
      const old = params[pi][k];
      params[pi][k] = old + h;
      const up = loss();
      params[pi][k] = old - h;
      const down = loss();
      params[pi][k] = old;
      const fd = (up - down) / (2 * h);
      const err = Math.abs(fd - grad[k]);
      worst = Math.max(worst, err / Math.max(1e-3, Math.abs(fd)));
      assert.ok(err <= 1e-7 + 1e-5 * Math.abs(fd), `${p.path}[${k}]: autodiff ${grad[k]} vs finite difference ${fd}`);
      checked++;
    }
  });
  assert.ok(checked >= 2 * graph.params.length, `checked ${checked} gradient entries`);
  t.diagnostic(`${checked} entries, worst relative error ${worst.toExponential(2)}`);
  // the shared weights really receive gradient from both iterations
  const idx = graph.params.findIndex((p) => p.path === 'blocks.0.think.key_col');
  assert.ok(values[graph.grads![idx]].some((v) => v !== 0));
});

test('the clamp of the thinking layer passes no gradient outside [0.01, 0.5]', () => {
  const { graph } = buildGraph(path.join(modelsDir, 'matrix_thinker.mt'), { sets: small });
  const params = initParams(graph.params, 3).map((p) => Float64Array.from(p));
  const scale = graph.params.findIndex((p) => p.path === 'blocks.0.think.scale');
  const inputs = { tokens: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], targets: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11] };
  for (const [v, zero] of [[0.1, false], [0.7, true], [0.001, true]] as const) {
    params[scale][0] = v;
    const g = interpret(graph, { params, inputs, training: false, seed: 0, step: 0 })[graph.grads![scale]][0];
    assert.equal(g === 0, zero, `scale ${v}: gradient ${g}`);
  }
});
