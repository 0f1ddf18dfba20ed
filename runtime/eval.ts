// `mtc run eval`: held-out loss, bits per byte and perplexity of a checkpoint, with dropout off,
// on a fixed set of windows (`--windows N` drawn by `--seed`, or `all`: every non-overlapping
// ctx+1 window of the file in order from its first byte). The cross-entropy of every window
// is computed on the host in float64 from the logits, so a short last batch counts exactly
// its real windows. `--backend reference` runs the same evaluation on the float64 interpreter.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compile, type Compiled } from '../compiler/pipeline.ts';
import { interpret } from '../compiler/interp.ts';
import { MtcError } from '../compiler/diagnostics.ts';
import { encodeBytes, loadText, WindowSampler, type Batch } from './data.ts';
import { acquireDevice } from './device.ts';
import { Session, writeModule } from './session.ts';
import { readSafetensors } from './checkpoint.ts';

export interface EvalOptions {
  file: string;
  preset?: string;
  sets: Record<string, string>;
  checkpoint: string;
  data: string;
  windows: number | 'all';
  seed: number;
  backend: 'gpu' | 'reference';
  /** sequences per device run (default: the train section's batch) */
  batch?: number;
}

export interface EvalResult {
  loss: number;
  bpb: number;
  ppl: number;
  windows: number;
  tokens: number;
  bytes: number;
  backend: string;
}

/** Mean cross-entropy (nats) of the first `rows` rows of logits [rows·ctx, vocab] against targets. */
function rowLosses(logits: ArrayLike<number>, targets: Int32Array, rows: number, ctx: number, vocab: number): number {
  let sum = 0;
  for (let i = 0; i < rows * ctx; i++) {
    let max = -Infinity;
    for (let v = 0; v < vocab; v++) max = Math.max(max, logits[i * vocab + v]);
    let z = 0;
    for (let v = 0; v < vocab; v++) z += Math.exp(logits[i * vocab + v] - max);
    sum += Math.log(z) + max - logits[i * vocab + targets[i]];
  }
  return sum;
}

export async function evaluateCheckpoint(o: EvalOptions): Promise<EvalResult> {
  const compiled = compile(o.file, { preset: o.preset, sets: o.sets, batch: o.batch });
  const { ctx, batch } = compiled.train;
  const vocab = compiled.graph.nodes[compiled.graph.outputs.logits].shape[2];
  const tokens = encodeBytes(loadText(o.data));
  const sampler = new WindowSampler(tokens, ctx, batch, o.seed, o.data);
  const windows = o.windows === 'all' ? [...Array(sampler.numWindows).keys()] : sampler.sampleWindows(o.windows);
  if (windows.length === 0) throw new MtcError('--windows must be at least 1');
  const batches: Array<{ b: Batch; rows: number }> = [];
  for (let i = 0; i < windows.length; i += batch) {
    const rows = Math.min(batch, windows.length - i);
    const ids = windows.slice(i, i + batch);
    while (ids.length < batch) ids.push(ids[0]); // pad a short last batch; only `rows` count
    batches.push({ b: sampler.batchOf(ids), rows });
  }
  let total = 0;
  if (o.backend === 'reference') total = referenceLosses(compiled, o.checkpoint, batches, ctx, vocab);
  else {
    const gpu = await acquireDevice();
    try {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-eval-'));
      writeModule(compiled, dir);
      const session = await Session.open(dir, gpu);
      checkHypers(o.checkpoint, session.loadCheckpoint(o.checkpoint), compiled.hypers);
      for (const { b, rows } of batches) total += rowLosses(await session.logits(b), b.targets, rows, ctx, vocab);
      fs.rmSync(dir, { recursive: true, force: true });
    } finally {
      gpu.close();
    }
  }
  const n = windows.length * ctx;
  const loss = total / n;
  // byte tokens: one byte per token, so bits per byte is the loss in bits
  return { loss, bpb: loss / Math.LN2, ppl: Math.exp(loss), windows: windows.length, tokens: n, bytes: n, backend: o.backend };
}

/** The checkpoint records the hyperparameters it was trained with: they must be the ones compiled now. */
function checkHypers(file: string, meta: Record<string, string>, now: Record<string, number>): void {
  if (!meta.hypers) return;
  const then = JSON.parse(meta.hypers) as Record<string, number>;
  const diff = Object.keys(now).filter((k) => k in then && then[k] !== now[k] && !['batch', 'steps', 'lr', 'warmup', 'dropout'].includes(k));
  if (diff.length) {
    throw new MtcError(
      `checkpoint ${file} was trained with ${diff.map((k) => `${k}=${then[k]}`).join(', ')}, but the model is compiled with ${diff.map((k) => `${k}=${now[k]}`).join(', ')}; pass the run's --preset and --set`,
    );
  }
}

function referenceLosses(c: Compiled, file: string, batches: Array<{ b: Batch; rows: number }>, ctx: number, vocab: number): number {
  const ck = readSafetensors(file);
  checkHypers(file, ck.meta, c.hypers);
  const params = c.graph.params.map((p) => {
    const t = ck.tensors.get(p.path);
    if (!t || t.shape.join(',') !== p.shape.join(',')) throw new MtcError(`checkpoint ${file} does not hold '${p.path}' of shape [${p.shape.join(', ')}]`);
    return t.data;
  });
  const g = c.graph;
  let total = 0;
  for (const { b, rows } of batches) {
    const values = interpret(g, { params, inputs: { tokens: b.tokens, targets: b.targets }, training: false, seed: 0, step: 0 }, g.outputs.logits, [g.outputs.logits]);
    total += rowLosses(values[g.outputs.logits], b.targets, rows, ctx, vocab);
  }
  return total;
}
