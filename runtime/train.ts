// `mtc run train`: compile the model into the run folder, then train it on the device with
// the protocol of its train section (AdamW, warmup + cosine, clipping), logging to
// metrics.jsonl, evaluating held-out bits per byte and checkpointing as it goes.
// Data order and dropout derive from (seed, step), so `--resume` continues exactly where a
// killed run stopped.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { compile } from '../compiler/pipeline.ts';
import { MtcError } from '../compiler/diagnostics.ts';
import { acquireDevice, type Gpu } from './device.ts';
import { loadCorpus, WindowSampler } from './data.ts';
import { bitsPerByte, checkModelVocab, getTokenizer } from './tokenizer.ts';
import { RunLog } from './log.ts';
import { lrAt } from './schedule.ts';
import { Session, writeModule } from './session.ts';
import { checkpointPaths, listCheckpoints } from './checkpoint.ts';
import { RANK_POSITIONS, rankObservation, TrajectoryMeter } from './trajectory.ts';

export interface TrainOptions {
  file: string;
  preset?: string;
  sets: Record<string, string>;
  data?: string;
  val?: string;
  steps?: number;
  seed?: number;
  out?: string;
  /** continue from the newest checkpoint in the run folder */
  resume?: boolean;
  /** the tokenizer, replacing the train section's */
  tokenizer?: string;
  /** fused regions (default true); false: one kernel per node */
  fuse?: boolean;
  /** f16 storage of the forward activations (overrides the train section's f16) */
  f16?: boolean;
}

export interface TrainResult {
  steps: number;
  /** stopped by Ctrl-C before the last step (a checkpoint was written) */
  interrupted: boolean;
  finalLoss: number;
  valLoss: number;
  valBpb: number;
  tokensPerSecond: number;
  seconds: number;
  outDir: string;
}

/**
 * A resumed run must train as the run it continues: the same model, hyperparameters, train
 * section, data and seed as the config.json its first start wrote (only the number of steps
 * may change, the schedule then ending at the new last step, and micro_batch).
 * Refuses with the settings that differ.
 */
function checkResumable(outDir: string, now: Record<string, unknown>): void {
  const file = path.join(outDir, 'config.json');
  if (!fs.existsSync(file)) return; // a run from before config.json: nothing to compare
  let was: Record<string, unknown>;
  try {
    was = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    throw new MtcError(`--resume: ${file} is not valid JSON, so the run it describes cannot be checked; start a new run with --out`);
  }
  // The micro-batch may change too: the windows of a step and its mean gradient do not depend
  // on it (only the dropout masks, keyed by micro-batch), and a run started before gradient
  // accumulation has none recorded.
  const free = new Set(['steps', 'micro_batch', 'microBatch']);
  const withoutFree = (x: unknown): unknown => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).filter(([k]) => !free.has(k))) : x);
  const diffs: string[] = [];
  for (const key of ['model', 'data', 'val', 'seed', 'hypers', 'train'] as const) {
    if (!(key in was)) continue;
    const [a, b] = [withoutFree(was[key]), withoutFree(now[key])];
    if (a && b && typeof a === 'object' && typeof b === 'object') {
      const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
      for (const k of keys) {
        const [x, y] = [(a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]];
        const change = `${JSON.stringify(x)} -> ${JSON.stringify(y)}`;
        // a train setting that follows a hyperparameter (lr = lr) is named once, as the hyperparameter
        if (JSON.stringify(x) !== JSON.stringify(y) && !(key === 'train' && diffs.includes(`${k} ${change}`))) diffs.push(`${key === 'hypers' ? '' : `${key}.`}${k} ${change}`);
      }
    } else if (JSON.stringify(a) !== JSON.stringify(b)) diffs.push(`${key} ${JSON.stringify(a)} -> ${JSON.stringify(b)}`);
  }
  if (diffs.length)
    throw new MtcError(
      `--resume: the run in ${outDir} was trained with other settings (${diffs.slice(0, 6).join('; ')}${diffs.length > 6 ? `; and ${diffs.length - 6} more` : ''}); ` +
        'resume with the settings it started with (only --steps and micro_batch may change), or start a new run with --out',
    );
}

export async function train(o: TrainOptions): Promise<TrainResult> {
  const gpu = await acquireDevice();
  try {
    return await trainOn(gpu, o);
  } finally {
    gpu.close();
  }
}

async function trainOn(gpu: Gpu, o: TrainOptions): Promise<TrainResult> {
  const compiled = compile(o.file, { preset: o.preset, sets: o.sets, fuse: o.fuse, f16: o.f16, maxBindingBytes: gpu.device.limits.maxStorageBufferBindingSize, maxStorageBuffers: gpu.device.limits.maxStorageBuffersPerShaderStage });
  const cfg = compiled.train;
  if (cfg.f16 && !gpu.hasF16) throw new MtcError(`f16 storage of activations needs an adapter with the shader-f16 feature; ${gpu.description} has none: train without --f16 (or f16 = 0)`);
  const steps = o.steps ?? cfg.steps;
  const seed = o.seed ?? cfg.seed;
  const outDir = o.out ?? path.join('runs', `${path.basename(o.file, '.mt')}${o.preset ? '-' + o.preset : ''}`);
  const resumeFrom = o.resume ? listCheckpoints(outDir)[0] : undefined;
  if (o.resume && resumeFrom === undefined) throw new MtcError(`--resume: ${outDir} holds no checkpoint (looked in ${path.join(outDir, 'checkpoints')})`);
  if (!o.resume && listCheckpoints(outDir).length) {
    throw new MtcError(
      `the run folder ${outDir} already holds a run (checkpoints up to step ${listCheckpoints(outDir)[0]}); continue it with --resume, or choose another folder with --out`,
    );
  }
  if (resumeFrom !== undefined && resumeFrom >= steps) throw new MtcError(`--resume: the run in ${outDir} already finished step ${resumeFrom} of ${steps}; pass a larger --steps to train on`);
  const vocab = compiled.graph.nodes[compiled.graph.outputs.logits].shape[2];
  const tokenizer = getTokenizer(o.tokenizer ?? cfg.tokenizer);
  checkModelVocab(vocab, tokenizer);

  // Check every input before the run folder is touched: a failed start keeps the last run's files.
  const corpus = loadCorpus({ data: o.data ?? cfg.data, val: o.val, valFraction: cfg.valFraction, tokenizer: tokenizer.name });
  // The device runs micro-batches: step s trains on micro-batches s·n .. s·n + n-1 of the
  // sampler, which together are the windows of batch s at the full batch size (any
  // micro_batch, the same data), and evaluates the same windows as eval_batches full batches.
  const n = cfg.batch / cfg.microBatch;
  const trainData = new WindowSampler(corpus.train, cfg.ctx, cfg.microBatch, seed, corpus.trainSource);
  const valData = new WindowSampler(corpus.val, cfg.ctx, cfg.microBatch, seed, corpus.valSource);
  const evalBatches = valData.evalBatches(cfg.evalBatches, cfg.batch);
  const batchesOf = (step: number) => Array.from({ length: n }, (_, k) => trainData.batchAt(step * n + k));
  // bits per byte from the bytes of text the evaluated targets cover (exact for any tokenizer)
  const bpb = (loss: number) => bitsPerByte(loss, evalBatches.length * cfg.microBatch * cfg.ctx, evalBatches.reduce((a, b) => a + b.bytes, 0));

  const codeDir = path.join(outDir, 'compiled');
  const config = { file: o.file, preset: o.preset ?? null, sets: o.sets, data: o.data ?? cfg.data, val: o.val ?? null, steps, seed, model: compiled.modelName, hypers: compiled.hypers, train: { ...cfg, tokenizer: tokenizer.name } };
  if (resumeFrom !== undefined) checkResumable(outDir, config);
  writeModule(compiled, codeDir);
  fs.writeFileSync(path.join(outDir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  if (resumeFrom === undefined) fs.rmSync(path.join(outDir, 'metrics.jsonl'), { force: true });

  const start = resumeFrom ?? 0;
  const log = new RunLog(outDir, steps, cfg.batch * cfg.ctx, start);
  let stopping = false;
  const onSigint = (): void => {
    if (stopping) process.exit(130); // a second Ctrl-C stops at once
    stopping = true;
    log.line('mtc: stopping after this step (Ctrl-C again to stop at once)');
  };
  process.on('SIGINT', onSigint);
  try {
    const session = await Session.open(codeDir, gpu);
    const nParams = compiled.plan.params.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
    log.line(
      `mtc: ${compiled.modelName} (${o.preset ?? 'defaults'}) on ${gpu.description}: ${nParams} parameters, ` +
        (n > 1
          ? `${n} micro-batches of ${cfg.microBatch} a step (gradients accumulated), ${compiled.plan.forward.length + compiled.plan.backward.length + 1} dispatches each + 3; `
          : `${compiled.plan.forward.length + compiled.plan.backward.length + 3} dispatches per step; `) +
        `train ${trainData.numWindows} windows of ${cfg.ctx + 1} tokens, val ${evalBatches.length / n} batches of ${cfg.batch}`,
    );
    log.line('mtc: the driver compiles each kernel when it is first used (under software Vulkan a minute or more on a machine\'s first run; cached after)');
    session.initialise(seed);
    if (resumeFrom !== undefined) {
      const p = checkpointPaths(outDir, resumeFrom);
      session.loadCheckpoint(p.model, p.optimizer);
      log.line(`mtc: resumed from ${p.model} (step ${resumeFrom})`);
    }
    // Held-out loss, and where the model observes its token matrices, the val-time rank
    // trajectory (dropout off) and, labelled apart, the same on the last training batch
    // with that step's dropout (MODEL.md, "Metrics").
    const obs = rankObservation(compiled.graph);
    const evaluate = async (done: number): Promise<number> => {
      const val = obs && new TrajectoryMeter(obs.shape, obs.iterations, RANK_POSITIONS, seed);
      const loss = await session.evaluate(evalBatches, val && (async () => val.add(await session.readObservation(obs.name))));
      const extra: Record<string, unknown> = { val_bpb: bpb(loss), val_ppl: Math.exp(loss) };
      if (obs && val) {
        const step = Math.max(done - 1, 0);
        const tr = new TrajectoryMeter(obs.shape, obs.iterations, RANK_POSITIONS, seed);
        // the last micro-batch of the last step, with its dropout
        tr.add((await session.forwardRead(trainData.batchAt(step * n + n - 1), { training: true, seed, step: step * n + n - 1, observe: obs.name })).observations);
        const v = val.result();
        const t = tr.result();
        Object.assign(extra, { val_erank: v.erank, val_collapse: v.collapse, train_erank: t.erank, train_collapse: t.collapse });
      }
      log.eval(done, loss, extra);
      return loss;
    };
    const t0 = performance.now();
    let valLoss = NaN;
    if (resumeFrom === undefined) valLoss = await evaluate(0);
    let last = NaN;
    let done = start;
    const schedule = { peak: cfg.lr, warmup: cfg.warmup, total: steps };
    for (let step = start; step < steps && !stopping; step++) {
      const lr = lrAt(step, schedule);
      session.trainStep(batchesOf(step), step, lr, seed);
      done = step + 1;
      const isLog = done % cfg.logEvery === 0 || done === steps;
      const isEval = done % cfg.evalEvery === 0 || done === steps;
      if (isLog || isEval || stopping) {
        const losses = await session.readLosses();
        const bad = losses.findIndex((l) => !Number.isFinite(l));
        if (bad >= 0) await numericalFault(session, done - losses.length + bad + 1, losses[bad], outDir);
        last = losses[losses.length - 1];
        log.train(done, last, lr);
      }
      if (isEval) {
        valLoss = await evaluate(done);
        await session.saveCheckpoint(outDir, done, seed);
      }
    }
    // The final state always has an evaluation and a checkpoint (also after Ctrl-C, and for --steps 0).
    if (!listCheckpoints(outDir).includes(done)) {
      if (done > start) valLoss = await evaluate(done);
      const file = await session.saveCheckpoint(outDir, done, seed);
      if (stopping) log.line(`mtc: interrupted after step ${done}; checkpoint ${file}; continue with --resume`);
    }
    const seconds = (performance.now() - t0) / 1000;
    log.line(`mtc: ${done - start} step${done - start === 1 ? '' : 's'} in ${seconds.toFixed(1)} s; held-out bits per byte ${bpb(valLoss).toFixed(3)}; log in ${path.join(outDir, 'metrics.jsonl')}`);
    return {
      steps: done,
      interrupted: stopping && done < steps,
      finalLoss: last,
      valLoss,
      valBpb: bpb(valLoss),
      tokensPerSecond: ((done - start) * cfg.batch * cfg.ctx) / seconds,
      seconds,
      outDir,
    };
  } finally {
    process.off('SIGINT', onSigint);
    log.close();
  }
}

/** A non-finite loss: name the step and the first parameter whose gradient or value broke. */
async function numericalFault(session: Session, step: number, loss: number, outDir: string): Promise<never> {
  const [grads, params] = [await session.readArena('grads'), await session.readArena('params')];
  const first = (arena: Float32Array) =>
    session.mod.params.find((p) => arena.subarray(p.offset, p.offset + p.shape.reduce((a, b) => a * b, 1)).some((x) => !Number.isFinite(x)))?.path;
  const where = first(grads) ? `; the first parameter with a non-finite gradient is ${first(grads)}` : first(params) ? `; the first non-finite parameter is ${first(params)}` : '';
  const kept = listCheckpoints(outDir)[0];
  throw new MtcError(
    `the training loss became ${loss} at step ${step}${where}. ` +
      (kept !== undefined ? `The last good checkpoint (step ${kept}) is kept in ${path.join(outDir, 'checkpoints')}.` : 'No checkpoint had been written yet.'),
  );
}
