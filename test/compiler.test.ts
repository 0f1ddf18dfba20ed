// The compiler front to middle: lowering, shapes, diagnostics, parameter counts of MODEL.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { formatError, MtcError } from '../compiler/diagnostics.ts';
import { loadProgram } from '../compiler/program.ts';
import { resolveHypers, resolveTrain } from '../compiler/config.ts';
import { lowerModel } from '../compiler/lower.ts';
import { buildGraph } from '../compiler/pipeline.ts';
import { numel } from '../compiler/ir.ts';
import { modelsDir, smallTrain, stdlibPath, tempModel } from './helpers/models.ts';

const thinker = path.join(modelsDir, 'matrix_thinker.mt');

function lowered(file: string, preset?: string, sets: Record<string, string> = {}) {
  const unit = loadProgram(file);
  const hypers = resolveHypers(unit, preset, sets);
  const train = resolveTrain(unit, hypers);
  return { graph: lowerModel(unit, hypers, train).graph, hypers, train };
}
const paramCount = (g: { params: { shape: number[] }[] }): number => g.params.reduce((a, p) => a + numel(p.shape), 0);

test('the full preset has the parameter counts of MODEL.md', () => {
  // bytes vocab, 512-row position tables: 257,560; the study's 2048 rows: 355,864
  assert.equal(paramCount(lowered(thinker, 'full', { pos_rows: '512', batch: '1' }).graph), 257_560);
  assert.equal(paramCount(lowered(thinker, 'full', { batch: '1' }).graph), 355_864);
  // GPT-2 BPE vocabulary with 2048 rows: the study's 5,155,960
  assert.equal(paramCount(lowered(thinker, 'full', { vocab: '50257', batch: '1' }).graph), 5_155_960);
});

test('the tiny model lowers to logits [batch, ctx, vocab] and observes the residual once per iteration', () => {
  const { graph, hypers } = lowered(thinker, 'tiny');
  const logits = graph.nodes[graph.outputs.logits];
  assert.deepEqual(logits.shape, [16, 64, 256]);
  assert.deepEqual(graph.nodes[graph.outputs.loss].shape, []);
  assert.equal(graph.observations.residual.length, hypers.get('T'));
  for (const id of graph.observations.residual) assert.deepEqual(graph.nodes[id].shape, [16, 64, 8, 8]);
  // distinct blocks, each with its own weights; iterations share them
  const paths = graph.params.map((p) => p.path);
  assert.ok(paths.includes('blocks.0.attn.q.A') && paths.includes('blocks.1.think.gamma.up.B'));
  assert.equal(new Set(paths).size, paths.length);
  assert.equal(paths.filter((p) => p.startsWith('blocks.')).length, 2 * paths.filter((p) => p.startsWith('blocks.0.')).length);
});

test('initialisers are read from the source', () => {
  const { graph } = lowered(thinker);
  const byPath = new Map(graph.params.map((p) => [p.path, p]));
  assert.deepEqual(byPath.get('blocks.0.attn.q.A')?.init, [{ kind: 'eye' }, { kind: 'normal', std: 0.02 }]);
  assert.deepEqual(byPath.get('blocks.0.think.b_m')?.init, [{ kind: 'const', value: -2 }]);
  assert.deepEqual(byPath.get('blocks.0.think.scale')?.init, [{ kind: 'const', value: 0.1 }]);
  assert.deepEqual(byPath.get('head.U')?.init, [{ kind: 'normal', std: 1 / Math.sqrt(8) }]);
  assert.deepEqual(byPath.get('head.W_out')?.init, [{ kind: 'uniform', bound: 1 / Math.sqrt(32) }]);
  assert.deepEqual(byPath.get('blocks.0.think.scale')?.shape, []);
});

test('gradients: one per parameter, with the parameter shape', () => {
  const { graph } = buildGraph(thinker);
  assert.ok(graph.grads);
  graph.params.forEach((p, i) => assert.deepEqual(graph.nodes[graph.grads![i]].shape, p.shape, p.path));
  assert.equal(new Set(graph.grads).size, graph.params.length);
});

function diagnostic(source: string): string {
  const file = tempModel(source);
  try {
    buildGraph(file);
  } catch (e) {
    if (e instanceof MtcError) return formatError(e).replaceAll(file, 'model.mt');
    throw e;
  }
  assert.fail('expected a diagnostic');
}

const header = `import "${stdlibPath}"\nhyper {\n  d = 4\n}\n`;

test('a shape mismatch names both shapes and the source position', () => {
  const msg = diagnostic(`${header}
model Bad {
  param W: [3, 5] = normal(1)
  param E: [256, 4] = normal(1)
  forward(tokens) {
    x = gather(E, tokens)
    return W @ x
  }
}
${smallTrain(8, 2)}`);
  assert.equal(
    msg,
    [
      'model.mt:11:12: error: matrix product of shapes [3, 5] and [2, 8, 4]: inner sizes 5 and 8 differ',
      '11 |     return W @ x',
      '                ^~~~~',
    ].join('\n'),
  );
});

test('unknown names, arity and presets are reported with positions', () => {
  const unknown = diagnostic(`${header}
model Bad {
  forward(tokens) {
    return silu(tokenz)
  }
}
${smallTrain(8, 2)}`);
  assert.match(unknown, /^model\.mt:8:17: error: unknown name 'tokenz'\n8 \|     return silu\(tokenz\)\n {20}\^~~~~~$/);
  const arity = diagnostic(`${header}
model Bad {
  forward(tokens) {
    return clamp(tokens, 1)
  }
}
${smallTrain(8, 2)}`);
  assert.match(arity, /^model\.mt:8:12: error: clamp takes 3 arguments, got 2/);
  assert.throws(() => resolveHypers(loadProgram(thinker), 'huge', {}), /unknown preset 'huge'; .* has 'tiny', 'full'/);
  assert.throws(() => resolveHypers(loadProgram(thinker), undefined, { dd: '3' }), /--set dd: 'dd' is not a hyperparameter/);
  assert.throws(() => resolveHypers(loadProgram(thinker), undefined, { d: 'x' }), /--set d=x: the value must be a number/);
});

test('a layer that calls itself is stopped with a diagnostic, not a stack overflow', () => {
  const msg = diagnostic(`${header}
layer Loop(n) {
  inner = Loop(n)
  forward(x) {
    return x
  }
}
model Bad {
  l = Loop(d)
  forward(tokens) {
    return l(tokens)
  }
}
${smallTrain(8, 2)}`);
  assert.match(msg, /nest more than 64 deep/);
});
