// `mtc run sweep <models...> --seeds 0-4`: every (model, seed) trained into
// <out>/<model>/seed-<n>/ and evaluated there (eval.json), then the mean and 95% confidence
// interval of every metric over the seeds, per model and per iteration (<out>/summary.json).
// Each job is a child `mtc` process, so a failed run does not end the sweep and keeps its own
// last checkpoint. Rerunning the same command resumes: finished jobs are skipped, interrupted
// ones continue from their newest checkpoint. `--parallel N` runs N jobs at once, each on the
// adapter named by `--adapters` in turn (by default every job asks for the default adapter).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MtcError } from '../compiler/diagnostics.ts';
import { listCheckpoints } from './checkpoint.ts';
import type { EvalResult } from './eval.ts';
import { meanCI } from './stats.ts';
import { makeDirs } from '../compiler/files.ts';

export interface SweepOptions {
  models: string[];
  seeds: number[];
  preset?: string;
  sets: Record<string, string>;
  data?: string;
  val?: string;
  steps?: number;
  /** the tokenizer of every run (default: each train section's) */
  tokenizer?: string;
  out: string;
  /** evaluation of each run: the --vary and --project-rank studies and the windows */
  vary?: string;
  projectRank?: string;
  windows?: string;
  parallel: number;
  adapters: string[];
}

interface Job {
  model: string;
  seed: number;
  dir: string;
}

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bin/mtc.js');

/** "0-4" -> [0..4], "1,3,5" -> [1,3,5], "2" -> [2] */
export function parseSeeds(text: string): number[] {
  const out: number[] = [];
  for (const part of text.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new MtcError(`--seeds takes whole numbers and ranges like 0-4 or 1,3,5; got '${text}'`);
    const [a, b] = [Number(m[1]), m[2] === undefined ? Number(m[1]) : Number(m[2])];
    if (b < a) throw new MtcError(`--seeds: the range ${a}-${b} is empty`);
    if (b - a > 1000) throw new MtcError(`--seeds: ${b - a + 1} seeds are too many for one sweep`);
    for (let s = a; s <= b; s++) if (!out.includes(s)) out.push(s);
  }
  return out;
}

/** "T=1,2,4,8" -> { name: 'T', values: [1, 2, 4, 8] } (the CLI has checked the syntax) */
function parseVary(text: string): { name: string; values: number[] } {
  const eq = text.indexOf('=');
  return { name: text.slice(0, eq).trim(), values: text.slice(eq + 1).split(',').map((x) => Number(x.trim())) };
}

/** Where a job stands: finished (evaluated), trained but not evaluated, partly trained, or new. */
function stateOf(job: Job, steps: number | undefined): 'done' | 'evaluate' | 'resume' | 'new' {
  const cks = listCheckpoints(job.dir);
  if (cks.length === 0) return 'new';
  const target = steps ?? readSteps(job.dir);
  if (target !== undefined && cks[0] < target) return 'resume';
  const evalFile = path.join(job.dir, 'eval.json');
  if (fs.existsSync(evalFile)) {
    const r = JSON.parse(fs.readFileSync(evalFile, 'utf8')) as EvalResult;
    if (r.step === cks[0]) return 'done';
  }
  return 'evaluate';
}

function readSteps(dir: string): number | undefined {
  try {
    return (JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as { steps: number }).steps;
  } catch {
    return undefined;
  }
}

function commandsFor(job: Job, state: ReturnType<typeof stateOf>, o: SweepOptions): string[][] {
  const common = [...(o.preset ? ['--preset', o.preset] : []), ...Object.entries(o.sets).flatMap(([k, v]) => ['--set', `${k}=${v}`])];
  const trainArgs = ['run', 'train', job.model, ...common, '--seed', String(job.seed), '--out', job.dir];
  if (o.data) trainArgs.push('--data', o.data);
  if (o.val) trainArgs.push('--val', o.val);
  if (o.steps !== undefined) trainArgs.push('--steps', String(o.steps));
  if (o.tokenizer !== undefined) trainArgs.push('--tokenizer', o.tokenizer);
  const evalArgs = ['run', 'eval', '--run', job.dir];
  if (o.vary) evalArgs.push('--vary', o.vary);
  if (o.projectRank) evalArgs.push('--project-rank', o.projectRank);
  if (o.windows) evalArgs.push('--windows', o.windows);
  if (state === 'new') return [trainArgs, evalArgs];
  if (state === 'resume') return [[...trainArgs, '--resume'], evalArgs];
  if (state === 'evaluate') return [evalArgs];
  return [];
}

function runChild(args: string[], adapter: string | undefined, logFile: string | undefined): Promise<number> {
  const env = { ...process.env, ...(adapter ? { MTC_ADAPTER: adapter } : {}) };
  return new Promise((resolve) => {
    const fd = logFile ? fs.openSync(logFile, 'a') : undefined;
    const child = spawn(process.execPath, [bin, ...args], { env, stdio: fd === undefined ? 'inherit' : ['ignore', fd, fd] });
    child.on('exit', (code, signal) => {
      if (fd !== undefined) fs.closeSync(fd);
      resolve(code ?? (signal ? 128 : 1));
    });
  });
}

export async function sweep(o: SweepOptions): Promise<{ failed: Job[]; summary: string }> {
  for (const m of o.models) if (!fs.existsSync(m)) throw new MtcError(`model file ${m} does not exist`);
  const stems = o.models.map((m) => path.basename(m, '.mt'));
  if (new Set(stems).size !== stems.length) throw new MtcError('two model files of the sweep have the same name; their run folders would collide');
  // Every model, with the preset, the sets and the evaluation's studies, is checked before the
  // first run trains: a typo in --vary or a rank k too large for d would otherwise surface only
  // at the first evaluation, after a whole training run.
  const { checkStudy } = await import('./eval.ts');
  const vary = o.vary === undefined ? undefined : parseVary(o.vary);
  const projectRanks = o.projectRank === undefined ? undefined : o.projectRank.split(',').map((k) => Number(k.trim()));
  for (const model of o.models) checkStudy({ file: model, preset: o.preset, sets: o.sets, vary, projectRanks, tokenizer: o.tokenizer });
  const jobs: Job[] = o.models.flatMap((model) => o.seeds.map((seed) => ({ model, seed, dir: path.join(o.out, path.basename(model, '.mt'), `seed-${seed}`) })));
  const failed: Job[] = [];
  let next = 0;
  const quiet = o.parallel > 1;
  const worker = async (slot: number): Promise<void> => {
    while (next < jobs.length) {
      const job = jobs[next++];
      const state = stateOf(job, o.steps);
      const label = `${path.basename(job.model, '.mt')} seed ${job.seed}`;
      if (state === 'done') {
        process.stderr.write(`mtc sweep: ${label}: done already (${job.dir})\n`);
        continue;
      }
      process.stderr.write(`mtc sweep: ${label}: ${state === 'new' ? 'training' : state === 'resume' ? 'resuming' : 'evaluating'} in ${job.dir}\n`);
      makeDirs(job.dir);
      const adapter = o.adapters.length ? o.adapters[slot % o.adapters.length] : undefined;
      for (const args of commandsFor(job, state, o)) {
        const code = await runChild(args, adapter, quiet ? path.join(job.dir, 'sweep.log') : undefined);
        if (code !== 0) {
          process.stderr.write(`mtc sweep: ${label} failed (mtc ${args.slice(0, 2).join(' ')} exited ${code}${quiet ? `; see ${path.join(job.dir, 'sweep.log')}` : ''}); its checkpoints are kept, rerun the sweep to resume\n`);
          failed.push(job);
          break;
        }
      }
    }
  };
  await Promise.all([...Array(Math.max(1, o.parallel)).keys()].map((i) => worker(i)));
  const summary = summarise(o.out, o.models);
  return { failed, summary };
}

/** Mean and 95% CI over seeds of every number of the runs' eval.json, per model; writes summary.json. */
export function summarise(out: string, models: string[]): string {
  const result: Record<string, unknown> = {};
  const lines: string[] = [];
  for (const model of models) {
    const stem = path.basename(model, '.mt');
    const dir = path.join(out, stem);
    const evals: EvalResult[] = [];
    for (const d of fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []) {
      const f = path.join(dir, d, 'eval.json');
      if (/^seed-\d+$/.test(d) && fs.existsSync(f)) evals.push(JSON.parse(fs.readFileSync(f, 'utf8')) as EvalResult);
    }
    if (evals.length === 0) continue;
    const ci = (xs: number[]) => meanCI(xs);
    const series = (get: (r: EvalResult) => number[] | undefined) => {
      const first = get(evals[0]);
      if (!first) return undefined;
      return first.map((_, t) => ci(evals.map((r) => get(r)?.[t] ?? NaN)));
    };
    const entry = {
      seeds: evals.length,
      loss: ci(evals.map((r) => r.loss)),
      bpb: ci(evals.map((r) => r.bpb)),
      ppl: ci(evals.map((r) => r.ppl)),
      erank: series((r) => r.erank),
      collapse: series((r) => r.collapse),
      variants: evals[0].variants?.map((v, i) => ({ hypers: v.hypers, bpb: ci(evals.map((r) => r.variants?.[i]?.bpb ?? NaN)), erank: series((r) => r.variants?.[i]?.erank) })),
      ablation: evals[0].ablation?.map((a, i) => ({ k: a.k, bpb: ci(evals.map((r) => r.ablation?.[i]?.bpb ?? NaN)), erank: ci(evals.map((r) => r.ablation?.[i]?.erank ?? NaN)) })),
    };
    result[stem] = entry;
    const pm = (m: { mean: number; lo: number; hi: number }, d = 3) => `${m.mean.toFixed(d)} ± ${((m.hi - m.lo) / 2).toFixed(d)}`;
    lines.push(`${stem} (${evals.length} seed${evals.length === 1 ? '' : 's'}): bpb ${pm(entry.bpb)}  erank per iteration ${entry.erank?.map((m) => pm(m, 2)).join('  ') ?? '-'}`);
  }
  makeDirs(out);
  fs.writeFileSync(path.join(out, 'summary.json'), JSON.stringify(result, null, 2) + '\n');
  return lines.join('\n');
}
