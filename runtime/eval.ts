// `mtc run eval`: held-out loss, bits per byte and perplexity of a checkpoint, with dropout off,
// on a fixed set of windows (`--windows N` drawn by `--seed`, or `all`: every non-overlapping
// ctx+1 window of the file in order from its first byte). The cross-entropy of every window
// is computed on the host in float64 from the logits, so a short last batch counts exactly
// its real windows. `--backend reference` runs the same evaluation on the float64 interpreter.
//
// Where the model observes its token matrices (`observe residual`), the evaluation also gives
// the val-time rank trajectory and token-collapse ratio per iteration (runtime/trajectory.ts),
// and two studies of ../shared/MODEL.md: `--vary T=1,2,4,8` evaluates the same weights with
// other values of a hyperparameter that leaves the parameters' shapes alone (the iteration
// count), and `--project-rank 1,2,4,8,16` replaces each token matrix of the last observation
// by its best rank-k approximation before the rest of the graph (the final norm and the
// head) runs, in float64 on the host.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildGraph, compile, type Compiled } from '../compiler/pipeline.ts';
import { resolveHypers, resolveTrain } from '../compiler/config.ts';
import { loadProgram } from '../compiler/program.ts';
import { interpret, interpretFrom, type InterpEnv } from '../compiler/interp.ts';
import { MtcError } from '../compiler/diagnostics.ts';
import { numel, type Graph } from '../compiler/ir.ts';
import { loadCorpus, loadText, WindowSampler, type Batch } from './data.ts';
import { bitsPerByte, checkModelVocab, getTokenizer, type Tokenizer } from './tokenizer.ts';
import { acquireDevice, type Gpu } from './device.ts';
import { Session, writeModule } from './session.ts';
import { listCheckpoints, checkpointPaths, readSafetensors } from './checkpoint.ts';
import { effectiveRank, svd } from './rank.ts';
import { RANK_POSITIONS, rankObservation, TrajectoryMeter, type Trajectory } from './trajectory.ts';

export interface EvalOptions {
  file: string;
  preset?: string;
  sets: Record<string, string>;
  checkpoint: string;
  /** a text file, or the held-out split of a run (`run`) */
  data: string | { run: RunConfig };
  windows: number | 'all';
  seed: number;
  backend: 'gpu' | 'reference';
  /** sequences per device run (default: the train section's batch) */
  batch?: number;
  /** other values of one hyperparameter to evaluate the same weights with, e.g. T = [1, 2, 4, 8] */
  vary?: { name: string; values: number[] };
  /** ranks k of the projection ablation */
  projectRanks?: number[];
  /** positions per batch and iteration for the erank, or 'all' */
  rankPositions?: number | 'all';
  /** the tokenizer (default: the run's, else the train section's) */
  tokenizer?: string;
}

/** One evaluated configuration: loss and, where observed, the trajectory per iteration. */
export interface Measured {
  loss: number;
  bpb: number;
  ppl: number;
  erank?: number[];
  collapse?: number[];
}

export interface EvalResult extends Measured {
  model: string;
  checkpoint: string;
  step: number | null;
  windows: number;
  tokens: number;
  bytes: number;
  backend: string;
  tokenizer: string;
  hypers: Record<string, number>;
  /** the --vary study: one entry per value, `hypers` naming it */
  variants?: Array<Measured & { hypers: Record<string, number> }>;
  /** the --project-rank study: k = null is the model unprojected (through the same host path) */
  ablation?: Array<{ k: number | null; loss: number; bpb: number; ppl: number; erank: number }>;
}

/** What a run folder's config.json records (runtime/train.ts). */
export interface RunConfig {
  file: string;
  preset: string | null;
  sets: Record<string, string>;
  data: string;
  val: string | null;
  steps: number;
  seed: number;
  train: { valFraction: number; tokenizer?: string };
}

export function readRunConfig(dir: string): RunConfig {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) throw new MtcError(`${dir} is not a run folder of mtc run train (it has no config.json)`);
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as RunConfig;
  } catch {
    throw new MtcError(`${file} is not valid JSON; was it edited by hand?`);
  }
}

/** The newest checkpoint of a run folder. */
export function newestCheckpoint(dir: string): string {
  const step = listCheckpoints(dir)[0];
  if (step === undefined) throw new MtcError(`the run folder ${dir} holds no checkpoint (looked in ${path.join(dir, 'checkpoints')})`);
  return checkpointPaths(dir, step).model;
}

/** Summed cross-entropy (nats) of the first `rows` rows of logits [rows·ctx, vocab] against targets. */
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

interface Windows {
  batches: Array<{ b: Batch; rows: number }>;
  windows: number;
  /** UTF-8 bytes of text the counted targets cover (what bits per byte divides by) */
  bytes: number;
}

function windowsOf(o: EvalOptions, ctx: number, batch: number, tokenizer: Tokenizer): Windows {
  let sampler: WindowSampler;
  if (typeof o.data === 'string') {
    sampler = new WindowSampler(tokenizer.encode(loadText(o.data)), ctx, batch, o.seed, o.data);
  } else {
    const r = o.data.run;
    const corpus = loadCorpus({ data: r.data, val: r.val ?? undefined, valFraction: r.train.valFraction, tokenizer: tokenizer.name });
    sampler = new WindowSampler(corpus.val, ctx, batch, o.seed, corpus.valSource);
  }
  const ids = o.windows === 'all' ? [...Array(sampler.numWindows).keys()] : sampler.sampleWindows(o.windows);
  if (ids.length === 0) throw new MtcError('--windows must be at least 1');
  const batches: Windows['batches'] = [];
  for (let i = 0; i < ids.length; i += batch) {
    const rows = Math.min(batch, ids.length - i);
    const part = ids.slice(i, i + batch);
    while (part.length < batch) part.push(part[0]); // pad a short last batch; only `rows` count
    batches.push({ b: sampler.batchOf(part), rows });
  }
  return { batches, windows: ids.length, bytes: sampler.targetBytes(ids) };
}

/** The checkpoint's weights in graph order, checked against the model's parameters. */
function checkpointParams(c: Compiled, file: string, allowed: string[]): { params: Float32Array[]; meta: Record<string, string> } {
  const ck = readSafetensors(file);
  checkHypers(file, ck.meta, c.hypers, allowed);
  const params = c.graph.params.map((p) => {
    const t = ck.tensors.get(p.path);
    if (!t || t.shape.join(',') !== p.shape.join(',')) throw new MtcError(`checkpoint ${file} does not hold '${p.path}' of shape [${p.shape.join(', ')}]`);
    return t.data;
  });
  return { params, meta: ck.meta };
}

/** Runs one compiled configuration over the windows: per batch, logits and observations. */
type Runner = (b: Batch, withObservations: boolean) => Promise<{ logits: ArrayLike<number>; observations: ArrayLike<number>[] }>;

async function withRunner<T>(c: Compiled, o: EvalOptions, gpu: Gpu | undefined, params: Float32Array[], body: (run: Runner) => Promise<T>): Promise<T> {
  const g = c.graph;
  const obs = rankObservation(g);
  if (o.backend === 'reference') {
    return body(async (b, withObs) => {
      const env: InterpEnv = { params, inputs: { tokens: b.tokens, targets: b.targets }, training: false, seed: 0, step: 0 };
      const ids = withObs && obs ? g.observations[obs.name] : [];
      const last = Math.max(g.outputs.logits, ...ids);
      const v = interpret(g, env, last, [g.outputs.logits, ...ids]);
      return { logits: v[g.outputs.logits], observations: ids.map((i) => v[i]) };
    });
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-eval-'));
  try {
    writeModule(c, dir);
    const session = await Session.open(dir, gpu!);
    session.loadCheckpoint(o.checkpoint);
    return await body(async (b, withObs) => {
      const r = await session.forwardRead(b, { logits: true, observe: withObs && obs ? obs.name : undefined });
      return { logits: r.logits!, observations: r.observations };
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Loss and trajectory of one configuration; with `ablate`, also hands each batch's values to it. */
async function measure(c: Compiled, o: EvalOptions, w: Windows, run: Runner, ablate?: (b: Batch, rows: number, last: ArrayLike<number>) => void): Promise<Measured> {
  const { ctx } = c.train;
  const vocab = c.graph.nodes[c.graph.outputs.logits].shape[2];
  const obs = rankObservation(c.graph);
  const meter = obs && new TrajectoryMeter(obs.shape, obs.iterations, o.rankPositions ?? RANK_POSITIONS, o.seed);
  let total = 0;
  for (const { b, rows } of w.batches) {
    const r = await run(b, meter !== undefined);
    total += rowLosses(r.logits, b.targets, rows, ctx, vocab);
    if (meter) meter.add(r.observations, rows);
    if (ablate) ablate(b, rows, r.observations[r.observations.length - 1]);
  }
  const loss = total / (w.windows * ctx);
  const t: Trajectory | undefined = meter?.result();
  return { loss, bpb: bitsPerByte(loss, w.windows * ctx, w.bytes), ppl: Math.exp(loss), ...(t ? { erank: t.erank, collapse: t.collapse } : {}) };
}

// ---------------------------------------------------------------------------------------
// Checks of the --vary and --project-rank studies, made before any device work (and by
// `mtc run sweep` before any training), so a mistake costs seconds, not a trained run.

/** The varied name must be a hyperparameter of the model. */
function checkVaryName(file: string, hypers: Record<string, number>, name: string): void {
  if (!Object.hasOwn(hypers, name)) {
    throw new MtcError(`--vary ${name}: '${name}' is not a hyperparameter of ${file}; known: ${Object.keys(hypers).join(', ')}`);
  }
}

/**
 * A varied value must leave the evaluation's windows alone: their length (ctx) and the rows of
 * a device run (batch, micro_batch) belong to the evaluation (--windows, --batch), and the
 * result does not depend on the rows.
 */
function checkSameWindows(o: { file: string; preset?: string; sets: Record<string, string> }, vary: { name: string; values: number[] }): void {
  const unit = loadProgram(o.file);
  const trainOf = (sets: Record<string, string>) => resolveTrain(unit, resolveHypers(unit, o.preset, sets));
  const a = trainOf(o.sets);
  for (const value of vary.values) {
    const b = trainOf({ ...o.sets, [vary.name]: String(value) });
    const diff = (['ctx', 'batch', 'microBatch'] as const).filter((k) => a[k] !== b[k]);
    if (diff.length) {
      const names = diff.map((k) => `${k === 'microBatch' ? 'micro_batch' : k} ${a[k]} -> ${b[k]}`).join(', ');
      throw new MtcError(`--vary ${vary.name}=${value} changes the train section (${names}); an evaluation sets its own windows (--windows) and rows per device run (--batch, which the result does not depend on): vary a hyperparameter of the model, such as T`);
    }
  }
}

/** A varied value must leave every parameter's shape alone: the same checkpoint has to load. */
function checkSameShapes(file: string, base: Graph, varied: Graph, what: string): void {
  const before = new Map(base.params.map((p) => [p.path, p.shape]));
  for (const p of varied.params) {
    const b = before.get(p.path);
    if (b === undefined || b.join(',') !== p.shape.join(',')) {
      const change = b === undefined ? `adds the parameter ${p.path}` : `changes ${p.path} from [${b.join(', ')}] to [${p.shape.join(', ')}]`;
      throw new MtcError(`--vary ${what} ${change} in ${file}, so the trained weights do not fit it; vary a hyperparameter that leaves the parameters' shapes alone, such as T`);
    }
  }
  if (varied.params.length !== base.params.length) {
    throw new MtcError(`--vary ${what} changes the number of parameter tensors of ${file}, so the trained weights do not fit it; vary a hyperparameter that leaves the parameters' shapes alone, such as T`);
  }
}

/** The ablation needs observed token matrices, and each rank k at most their smaller side. */
function checkRanks(file: string, modelName: string, g: Graph, ks: readonly number[]): void {
  if (ks.length === 0) return;
  const obs = rankObservation(g);
  if (!obs) throw new MtcError(`--project-rank needs the model to observe its token matrices (\`observe residual = M\` in its forward), and ${modelName} (${file}) does not`);
  const [, , rows, cols] = obs.shape;
  const most = Math.min(rows, cols);
  const over = ks.filter((k) => k > most);
  if (over.length > 0) {
    throw new MtcError(`--project-rank ${over.join(',')}: the token matrices of ${modelName} are ${rows}×${cols}, so the rank k can be at most ${most}`);
  }
}

export interface StudyCheck {
  file: string;
  preset?: string;
  sets: Record<string, string>;
  vary?: { name: string; values: number[] };
  projectRanks?: number[];
  /** the tokenizer the runs will use (default: the train section's) */
  tokenizer?: string;
}

/**
 * Checks a model's --vary and --project-rank requests without training or a device: the
 * model compiles with the preset and sets, the varied name is a hyperparameter, every varied
 * value compiles and keeps the parameters' shapes, every k fits the token matrices, and the
 * logits have a class for every token of the tokenizer.
 * The model is built at its training batch (a tensor too large for the device's indexing is
 * found here too), the varied ones at batch 1 (the parameters' shapes do not depend on it).
 */
export function checkStudy(o: StudyCheck): void {
  const build = (sets: Record<string, string>) => buildGraph(o.file, { preset: o.preset, sets, batch: 1 });
  const base = buildGraph(o.file, { preset: o.preset, sets: o.sets });
  const hypers = Object.fromEntries(base.hypers);
  checkModelVocab(base.graph.nodes[base.graph.outputs.logits].shape[2], o.tokenizer ?? base.train.tokenizer);
  if (o.vary) {
    checkVaryName(o.file, hypers, o.vary.name);
    checkSameWindows(o, o.vary);
    for (const value of o.vary.values) {
      if (value === hypers[o.vary.name]) continue;
      const varied = build({ ...o.sets, [o.vary.name]: String(value) });
      checkSameShapes(o.file, base.graph, varied.graph, `${o.vary.name}=${value}`);
    }
  }
  checkRanks(o.file, base.unit.model?.name ?? path.basename(o.file, '.mt'), base.graph, o.projectRanks ?? []);
}

export async function evaluateCheckpoint(o: EvalOptions): Promise<EvalResult> {
  const compiled = compile(o.file, { preset: o.preset, sets: o.sets, batch: o.batch, f16: false }); // held-out numbers in f32, whatever the training stored
  const { ctx, microBatch: batch } = compiled.train; // the rows one program run takes
  const allowed = o.vary ? [o.vary.name] : [];
  if (o.vary) {
    checkVaryName(o.file, compiled.hypers, o.vary.name);
    checkSameWindows(o, o.vary);
  }
  checkRanks(o.file, compiled.modelName, compiled.graph, o.projectRanks ?? []);
  const { params, meta } = checkpointParams(compiled, o.checkpoint, []);
  const tokenizer = getTokenizer(o.tokenizer ?? (typeof o.data === 'string' ? undefined : o.data.run.train.tokenizer) ?? compiled.train.tokenizer);
  checkModelVocab(compiled.graph.nodes[compiled.graph.outputs.logits].shape[2], tokenizer);
  const w = windowsOf(o, ctx, batch, tokenizer);
  // Every varied program is compiled and checked before the device does any work.
  const programs = (o.vary?.values ?? []).map((value) => {
    if (value === compiled.hypers[o.vary!.name]) return { value, c: compiled };
    const c = compile(o.file, { preset: o.preset, sets: { ...o.sets, [o.vary!.name]: String(value) }, batch: o.batch, f16: false });
    checkSameShapes(o.file, compiled.graph, c.graph, `${o.vary!.name}=${value}`);
    return { value, c };
  });
  const gpu = o.backend === 'gpu' ? await acquireDevice() : undefined;
  try {
    const ablation = o.projectRanks?.length ? new Ablation(compiled, params, o.projectRanks) : undefined;
    const base = await withRunner(compiled, o, gpu, params, (run) => measure(compiled, o, w, run, ablation && ((b, rows, last) => ablation.add(b, rows, last))));
    const variants: EvalResult['variants'] = [];
    for (const { value, c } of programs) {
      const p = c === compiled ? params : checkpointParams(c, o.checkpoint, allowed).params;
      const m = c === compiled ? base : await withRunner(c, o, gpu, p, (run) => measure(c, o, w, run));
      variants.push({ hypers: { [o.vary!.name]: value }, ...m });
    }
    const tokens = w.windows * ctx;
    return {
      model: compiled.modelName,
      checkpoint: o.checkpoint,
      step: meta.step !== undefined ? Number(meta.step) : null,
      windows: w.windows,
      tokens,
      bytes: w.bytes,
      backend: o.backend,
      tokenizer: tokenizer.name,
      hypers: compiled.hypers,
      ...base,
      ...(o.vary ? { variants } : {}),
      ...(ablation ? { ablation: ablation.result(w.windows * ctx, w.bytes) } : {}),
    };
  } finally {
    gpu?.close();
  }
}

/**
 * The rank-projection ablation: each token matrix of the last observation, replaced by its best
 * rank-k approximation (truncated SVD, float64), goes through the rest of the graph on the
 * float64 interpreter. k = null runs the unprojected matrices through the same path.
 */
class Ablation {
  private readonly ks: Array<number | null>;
  private readonly losses: number[];
  /** per k, the sum over batches of the batch's mean erank (as the trajectory averages) */
  private readonly eranks: number[];
  private batches = 0;
  private readonly cut: number;
  private readonly rows: number;
  private readonly cols: number;

  constructor(
    private readonly c: Compiled,
    private readonly params: Float32Array[],
    ranks: number[],
  ) {
    const obs = rankObservation(c.graph)!;
    this.cut = c.graph.observations[obs.name][obs.iterations - 1];
    [, , this.rows, this.cols] = obs.shape;
    this.ks = [null, ...ranks];
    this.losses = this.ks.map(() => 0);
    this.eranks = this.ks.map(() => 0);
  }

  add(b: Batch, rows: number, last: ArrayLike<number>): void {
    const g = this.c.graph;
    const { ctx } = this.c.train;
    const vocab = g.nodes[g.outputs.logits].shape[2];
    const size = this.rows * this.cols;
    const r = Math.min(this.rows, this.cols);
    const projected = this.ks.map(() => new Float64Array(numel(g.nodes[this.cut].shape)));
    const count = rows * ctx;
    const sums = this.ks.map(() => 0);
    for (let p = 0; p < count; p++) {
      const { U, S, V } = svd(last, this.rows, this.cols, p * size);
      this.ks.forEach((k, j) => {
        const keep = k === null ? r : Math.min(k, r);
        const out = projected[j];
        if (k === null) for (let i = 0; i < size; i++) out[p * size + i] = last[p * size + i];
        else
          for (let i = 0; i < this.rows; i++)
            for (let l = 0; l < this.cols; l++) {
              let acc = 0;
              for (let q = 0; q < keep; q++) acc += U[i * r + q] * S[q] * V[l * r + q];
              out[p * size + i * this.cols + l] = acc;
            }
        const sigma = Float64Array.from(S, (s, q) => (q < keep ? s : 0));
        sums[j] += effectiveRank(sigma);
      });
    }
    // A padded last batch: the rows past `rows` are copies of row 0 and never counted.
    this.ks.forEach((_, j) => (this.eranks[j] += sums[j] / count));
    this.batches++;
    this.ks.forEach((_, j) => {
      const env: InterpEnv = { params: this.params, inputs: { tokens: b.tokens, targets: b.targets }, training: false, seed: 0, step: 0 };
      const [logits] = interpretFrom(g, env, new Map([[this.cut, projected[j]]]), [g.outputs.logits]);
      this.losses[j] += rowLosses(logits, b.targets, rows, ctx, vocab);
    });
  }

  result(tokens: number, bytes: number): NonNullable<EvalResult['ablation']> {
    return this.ks.map((k, j) => {
      const loss = this.losses[j] / tokens;
      return { k, loss, bpb: bitsPerByte(loss, tokens, bytes), ppl: Math.exp(loss), erank: this.eranks[j] / this.batches };
    });
  }
}

/** The checkpoint records the hyperparameters it was trained with: they must be the ones compiled now. */
function checkHypers(file: string, meta: Record<string, string>, now: Record<string, number>, allowed: string[]): void {
  if (!meta.hypers) return;
  const then = JSON.parse(meta.hypers) as Record<string, number>;
  const free = ['batch', 'micro_batch', 'steps', 'lr', 'warmup', 'dropout', ...allowed];
  const diff = Object.keys(now).filter((k) => k in then && then[k] !== now[k] && !free.includes(k));
  if (diff.length) {
    throw new MtcError(
      `checkpoint ${file} was trained with ${diff.map((k) => `${k}=${then[k]}`).join(', ')}, but the model is compiled with ${diff.map((k) => `${k}=${now[k]}`).join(', ')}; pass the run's --preset and --set`,
    );
  }
}
