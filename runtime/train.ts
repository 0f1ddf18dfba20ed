// `mtc run train`: compile the model into the run folder, then train it on the device with
// the protocol of its train section (AdamW, warmup + cosine, clipping), logging to
// metrics.jsonl and evaluating held-out bits per byte as it goes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { compile } from '../compiler/pipeline.ts';
import { MtcError } from '../compiler/diagnostics.ts';
import { acquireDevice, type Gpu } from './device.ts';
import { loadCorpus, WindowSampler } from './data.ts';
import { RunLog } from './log.ts';
import { lrAt } from './schedule.ts';
import { Session, writeModule } from './session.ts';
import { writeCheckpoint } from './checkpoint.ts';

export interface TrainOptions {
  file: string;
  preset?: string;
  sets: Record<string, string>;
  data?: string;
  val?: string;
  steps?: number;
  seed?: number;
  out?: string;
}

export interface TrainResult {
  steps: number;
  finalLoss: number;
  valLoss: number;
  valBpb: number;
  tokensPerSecond: number;
  seconds: number;
  outDir: string;
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
  const compiled = compile(o.file, { preset: o.preset, sets: o.sets, maxBindingBytes: gpu.device.limits.maxStorageBufferBindingSize });
  const cfg = compiled.train;
  const steps = o.steps ?? cfg.steps;
  const seed = o.seed ?? cfg.seed;
  const outDir = o.out ?? path.join('runs', `${path.basename(o.file, '.mt')}${o.preset ? '-' + o.preset : ''}`);
  const codeDir = path.join(outDir, 'compiled');
  writeModule(compiled, codeDir);
  fs.writeFileSync(path.join(outDir, 'config.json'), JSON.stringify({ file: o.file, preset: o.preset ?? null, sets: o.sets, data: o.data ?? cfg.data, val: o.val ?? null, steps, seed, hypers: compiled.hypers, train: cfg }, null, 2) + '\n');
  fs.rmSync(path.join(outDir, 'metrics.jsonl'), { force: true });

  const corpus = loadCorpus({ data: o.data ?? cfg.data, val: o.val, valFraction: cfg.valFraction });
  const trainData = new WindowSampler(corpus.train, cfg.ctx, cfg.batch, seed, corpus.trainSource);
  const valData = new WindowSampler(corpus.val, cfg.ctx, cfg.batch, seed, corpus.valSource);
  const evalBatches = valData.evalBatches(cfg.evalBatches);

  const log = new RunLog(outDir, steps, cfg.batch * cfg.ctx);
  let stopping = false;
  const onSigint = (): void => {
    stopping = true;
  };
  process.on('SIGINT', onSigint);
  try {
    const session = await Session.open(codeDir, gpu);
    log.line(
      `mtc: ${compiled.modelName} (${o.preset ?? 'defaults'}) on ${gpu.description}: ${session.mod.params.length} tensors, ` +
        `${compiled.plan.params.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0)} parameters, ` +
        `${compiled.plan.forward.length + compiled.plan.backward.length + 3} dispatches per step; ` +
        `train ${trainData.numWindows} windows, val ${evalBatches.length} batches`,
    );
    session.initialise(seed);
    const t0 = performance.now();
    let valLoss = await session.evaluate(evalBatches);
    log.eval(0, valLoss);
    let last = NaN;
    let done = 0;
    const schedule = { peak: cfg.lr, warmup: cfg.warmup, total: steps };
    for (let step = 0; step < steps && !stopping; step++) {
      const lr = lrAt(step, schedule);
      session.trainStep(trainData.batchAt(step), step, lr, seed);
      done = step + 1;
      const isLog = done % cfg.logEvery === 0 || done === steps;
      const isEval = done % cfg.evalEvery === 0 || done === steps;
      if (isLog || isEval) {
        const losses = await session.readLosses();
        last = losses[losses.length - 1];
        if (!Number.isFinite(last)) {
          throw new MtcError(`the training loss became ${last} at step ${done}; the last checkpoint in ${outDir} is kept`);
        }
        log.train(done, last, lr);
      }
      if (isEval) {
        valLoss = await session.evaluate(evalBatches);
        log.eval(done, valLoss);
        writeCheckpoint(path.join(outDir, 'checkpoint.safetensors'), session, await session.readParams(), { step: done, seed });
      }
    }
    if (stopping && done % cfg.evalEvery !== 0) {
      await session.readLosses();
      writeCheckpoint(path.join(outDir, 'checkpoint.safetensors'), session, await session.readParams(), { step: done, seed });
      log.line(`mtc: interrupted after step ${done}; checkpoint written to ${outDir}`);
    }
    const seconds = (performance.now() - t0) / 1000;
    log.line(`mtc: ${done} steps in ${seconds.toFixed(1)} s; held-out bits per byte ${(valLoss / Math.LN2).toFixed(3)}; log in ${path.join(outDir, 'metrics.jsonl')}`);
    return {
      steps: done,
      finalLoss: last,
      valLoss,
      valBpb: valLoss / Math.LN2,
      tokensPerSecond: (done * cfg.batch * cfg.ctx) / seconds,
      seconds,
      outDir,
    };
  } finally {
    process.off('SIGINT', onSigint);
    log.close();
  }
}
