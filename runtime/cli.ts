// The mtc command line (commander). Exit codes: 0 ok, 1 user error (a diagnostic was
// printed), 2 usage error. Stack traces only with MTC_DEBUG set.
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatError, MtcError } from '../compiler/diagnostics.ts';
import { compile, MTC_VERSION, PASSES, writeCompiled, type PassName } from '../compiler/pipeline.ts';
import { setValue } from '../compiler/config.ts';
import { parseSeeds } from './sweep.ts';

const collectSet = (v: string, prev: Record<string, string>): Record<string, string> => {
  const eq = v.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`expected name=value, got '${v}'`);
  if (Number.isNaN(setValue(v.slice(eq + 1)))) throw new InvalidArgumentError(`the value of ${v.slice(0, eq).trim()} must be a decimal number (like 64, 3e-4 or 0.5), got '${v.slice(eq + 1)}'`);
  return { ...prev, [v.slice(0, eq).trim()]: v.slice(eq + 1).trim() };
};
const positiveInt = (what: string) => (v: string): number => {
  const n = setValue(v); // decimal only: 0x10, 1_0, Infinity are refused
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${what} must be a whole number ≥ 0, got '${v}'`);
  return n;
};

export function buildCli(): Command {
  const program = new Command('mtc')
    .description('mtc compiles .mt matrix-token models to WGSL kernels and TypeScript host code, and trains them on WebGPU.')
    .version(MTC_VERSION, '-V, --version', 'print the version of mtc')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)');

  program
    .command('compile')
    .description('compile a .mt model to WGSL kernels and TypeScript host code')
    .argument('<model.mt>', 'the model source file')
    .option('-o, --out <dir>', 'output folder (default: generated/<file name>)')
    .option('--preset <name>', 'a preset of the model file (e.g. tiny, full); default: the hyper section as written')
    .option('--set <name=value>', 'override a hyperparameter (repeatable)', collectSet, {})
    .addOption(new Option('--dump-after <pass>', 'print the program after a compiler pass and stop').choices([...PASSES]))
    .option('--no-fuse', 'one kernel per graph node: no fused regions (compiler/fuse.ts)')
    .option('--f16', 'f16 storage of the forward activations, f32 math and weights (the train setting f16 = 1; needs shader-f16 to run)')
    .action((file: string, o: { out?: string; preset?: string; set: Record<string, string>; dumpAfter?: PassName; fuse: boolean; f16?: boolean }) => {
      const c = compile(file, { preset: o.preset, sets: o.set, fuse: o.fuse, f16: o.f16, dumpAfter: o.dumpAfter, dump: (t) => process.stdout.write(t.endsWith('\n') ? t : t + '\n') });
      if (o.dumpAfter) return;
      const out = o.out ?? path.join('generated', path.basename(file, '.mt'));
      writeCompiled(c, out);
      const p = c.plan;
      const { batch, microBatch } = c.train;
      const per =
        microBatch < batch
          ? `per micro-batch + 1 accumulate, ${batch / microBatch} micro-batches of ${microBatch} a step, then 3 optimizer dispatches`
          : 'per step + 3 optimizer dispatches';
      console.log(
        `mtc: compiled ${c.modelName} to ${out}: ${p.kernels.length + (microBatch < batch ? 4 : 3)} kernels, ${p.forward.length} forward + ${p.backward.length} backward dispatches ${per}, ${p.params.length} parameter tensors`,
      );
    });

  const run = program.command('run').description('run a compiled model');
  run
    .command('train')
    .description('train a .mt model on the GPU (software Vulkan where there is none) and log to <out>/metrics.jsonl')
    .argument('<model.mt>', 'the model source file')
    .option('--preset <name>', 'a preset of the model file (e.g. tiny, full)')
    .option('--set <name=value>', 'override a hyperparameter, e.g. --set lr=1e-3 (repeatable)', collectSet, {})
    .option('--data <file>', 'training text: .txt, or .jsonl whose string fields are joined (default: the train section\'s data; "sotu" = the bundled State of the Union corpus)')
    .option('--val <file>', 'held-out text (default: the last val_fraction of --data)')
    .option('--steps <n>', 'number of optimizer steps (default: the train section\'s)', positiveInt('--steps'))
    .option('--seed <n>', 'seed of weights, data order and dropout (default: the train section\'s)', positiveInt('--seed'))
    .option('--out <dir>', 'run folder for metrics.jsonl, config.json, the compiled code and checkpoints (default: runs/<model>[-<preset>])')
    .option('--resume', 'continue from the newest checkpoint in the run folder, exactly where it stopped')
    .addOption(new Option('--tokenizer <name>', "bytes, or gpt2 (GPT-2 BPE, vocabulary 50257: needs --set vocab=50257); default: the train section's").choices(['bytes', 'gpt2']))
    .option('--no-fuse', 'compile one kernel per graph node (no fused regions)')
    .option('--f16', 'f16 storage of the forward activations, f32 math and weights (the train setting f16 = 1); needs an adapter with shader-f16')
    .action(async (file: string, o: { preset?: string; set: Record<string, string>; data?: string; val?: string; steps?: number; seed?: number; out?: string; resume?: boolean; tokenizer?: string; fuse: boolean; f16?: boolean }) => {
      const { train } = await import('./train.ts');
      const r = await train({ file, preset: o.preset, sets: o.set, data: o.data, val: o.val, steps: o.steps, seed: o.seed, out: o.out, resume: o.resume, tokenizer: o.tokenizer, fuse: o.fuse, f16: o.f16 });
      // stopped by Ctrl-C: the checkpoint is written, but the run did not finish (the shell's 128 + SIGINT)
      if (r.interrupted) process.exitCode = 130;
    });
  run
    .command('eval')
    .description('held-out loss, bits per byte and perplexity of a checkpoint (dropout off), identical on every run; with the val-time rank trajectory where the model observes its token matrices')
    .argument('[model.mt]', 'the model source file the checkpoint was trained from (default with --run: the run\'s)')
    .option('--run <dir>', 'a run folder of mtc run train: its model, preset, --set values, newest checkpoint and held-out split; the result is also saved to <dir>/eval.json')
    .option('--checkpoint <file>', 'a model checkpoint (.safetensors) written by mtc run train')
    .option('--data <file>', 'text or .jsonl to evaluate on (default with --run: the run\'s held-out split)')
    .option('--preset <name>', 'the preset the checkpoint was trained with')
    .option('--set <name=value>', 'the --set overrides the checkpoint was trained with (repeatable)', collectSet, {})
    .option('--windows <n|all>', "how many ctx+1 windows: a number (drawn by --seed) or 'all' (every window in file order)", windowsArg, 64)
    .option('--seed <n>', 'which windows --windows N takes, and which positions the rank metric draws', positiveInt('--seed'), 0)
    .addOption(new Option('--backend <name>', 'gpu, or reference: the float64 interpreter').choices(['gpu', 'reference']).default('gpu'))
    .option('--batch <n>', 'windows per device run (default: the train section\'s micro_batch, which is its batch unless gradients accumulate; the loss does not depend on it, the rank metric draws its positions per device run)', atLeastOne)
    .option('--vary <name=v1,v2,...>', 'also evaluate the same weights with other values of a hyperparameter, e.g. T=1,2,4,8 (the iteration count)', varyArg)
    .option('--project-rank <k1,k2,...>', 'rank-projection ablation: replace each token matrix after the last iteration by its best rank-k approximation before the head, e.g. 1,2,4,8,16', intList('--project-rank'))
    .option('--rank-positions <n|all>', 'positions drawn per batch and iteration for the effective rank (the study: 512)', countOrAll('--rank-positions'), 512)
    .addOption(new Option('--tokenizer <name>', "the run's tokenizer (default: the run folder's, else the train section's)").choices(['bytes', 'gpt2']))
    .option('--save <file>', 'write the result as JSON to this file')
    .option('--json', 'print the result as one JSON object')
    .action(async (fileArg: string | undefined, o: EvalCliOptions) => {
      const { evaluateCheckpoint, readRunConfig, newestCheckpoint } = await import('./eval.ts');
      const { printEval } = await import('./evalprint.ts');
      if (o.run !== undefined && !fs.existsSync(o.run)) throw new MtcError(`--run ${o.run}: no such folder`);
      const runCfg = o.run !== undefined ? readRunConfig(o.run) : undefined;
      const file = fileArg ?? runCfg?.file;
      if (file === undefined) throw new MtcError('mtc run eval: give the model file, or --run <dir>');
      const checkpoint = o.checkpoint ?? (o.run !== undefined ? newestCheckpoint(o.run) : undefined);
      if (checkpoint === undefined) throw new MtcError('mtc run eval: give --checkpoint <file>, or --run <dir>');
      const data = o.data ?? (runCfg ? { run: runCfg } : undefined);
      if (data === undefined) throw new MtcError('mtc run eval: give --data <file>, or --run <dir>');
      const r = await evaluateCheckpoint({
        file,
        preset: o.preset ?? runCfg?.preset ?? undefined,
        sets: { ...(runCfg?.sets ?? {}), ...o.set },
        checkpoint,
        data,
        windows: o.windows,
        seed: o.seed,
        backend: o.backend,
        batch: o.batch,
        vary: o.vary,
        projectRanks: o.projectRank,
        rankPositions: o.rankPositions,
        tokenizer: o.tokenizer,
      });
      const save = o.save ?? (o.run !== undefined ? path.join(o.run, 'eval.json') : undefined);
      if (save !== undefined) fs.writeFileSync(save, JSON.stringify(r, null, 2) + '\n');
      if (o.json) console.log(JSON.stringify(r));
      else console.log(printEval(r) + (save !== undefined ? `\nsaved to ${save}` : ''));
    });
  run
    .command('sweep')
    .description('train and evaluate every model with every seed (resumable: rerun the same command to continue), then the mean and 95% confidence interval per metric and iteration')
    .argument('<models...>', 'model source files')
    .requiredOption('--seeds <list>', 'seeds, e.g. 0-4 or 0,1,2', seedsArg)
    .option('--preset <name>', 'a preset of the model files (e.g. tiny, full)')
    .option('--set <name=value>', 'override a hyperparameter of every model (repeatable)', collectSet, {})
    .option('--data <file>', 'training text (default: each train section\'s)')
    .option('--val <file>', 'held-out text (default: the last val_fraction of --data)')
    .option('--steps <n>', 'optimizer steps of every run', positiveInt('--steps'))
    .addOption(new Option('--tokenizer <name>', "bytes, or gpt2 (GPT-2 BPE, vocabulary 50257: needs --set vocab=50257) for every run; default: each train section's").choices(['bytes', 'gpt2']))
    .option('--out <dir>', 'sweep folder: runs go to <dir>/<model>/seed-<n>', 'runs/sweep')
    .option('--vary <name=v1,v2,...>', 'evaluate each run also with these values of a hyperparameter (e.g. T=1,2,4,8)', checked(varyArg))
    .option('--project-rank <k1,k2,...>', 'the rank-projection ablation of each run, e.g. 1,2,4,8,16', checked(intList('--project-rank')))
    .option('--windows <n|all>', 'held-out windows of each final evaluation (default 64)', checked(windowsArg))
    .option('--parallel <n>', 'jobs at once (each its own process and device)', atLeastOne, 1)
    .option('--adapters <names>', 'comma-separated WebGPU adapter names, given to the parallel jobs in turn (see the adapter list printed by MTC_ADAPTER=?)')
    .action(async (models: string[], o: { seeds: number[]; preset?: string; set: Record<string, string>; data?: string; val?: string; steps?: number; tokenizer?: string; out: string; vary?: string; projectRank?: string; windows?: string; parallel: number; adapters?: string }) => {
      const { sweep } = await import('./sweep.ts');
      const r = await sweep({
        models,
        seeds: o.seeds,
        preset: o.preset,
        sets: o.set,
        data: o.data,
        val: o.val,
        steps: o.steps,
        tokenizer: o.tokenizer,
        out: o.out,
        vary: o.vary,
        projectRank: o.projectRank,
        windows: o.windows,
        parallel: o.parallel,
        adapters: o.adapters ? o.adapters.split(',').map((x) => x.trim()).filter(Boolean) : [],
      });
      console.log(r.summary);
      console.log(`summary: ${path.join(o.out, 'summary.json')}; report: mtc report ${o.out}`);
      if (r.failed.length) throw new MtcError(`${r.failed.length} of the sweep's runs failed (${r.failed.map((j) => `${path.basename(j.model, '.mt')} seed ${j.seed}`).join(', ')}); rerun the same command to resume them`);
    });

  program
    .command('report')
    .description('a Markdown report with SVG figures from run folders and sweep folders: rank trajectories, loss curves, the T-sweep, the ablation, and the study\'s numbers beside ours')
    .argument('<folders...>', 'run folders (mtc run train --out) and sweep folders (mtc run sweep --out)')
    .option('-o, --out <dir>', 'where report.md and the figures go', 'report')
    .action(async (folders: string[], o: { out: string }) => {
      const { writeReport } = await import('./report.ts');
      const r = writeReport(folders, o.out);
      console.log(`mtc: wrote ${path.join(o.out, 'report.md')} and ${r.files.filter((f) => f.endsWith('.svg')).length} figures`);
    });
  return program;
}

const atLeastOne = (v: string): number => {
  const n = setValue(v); // decimal only: 0x10, 1_0, Infinity are refused
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`must be a whole number ≥ 1, got '${v}'`);
  return n;
};

interface EvalCliOptions {
  run?: string;
  checkpoint?: string;
  data?: string;
  preset?: string;
  set: Record<string, string>;
  windows: number | 'all';
  seed: number;
  backend: 'gpu' | 'reference';
  batch?: number;
  vary?: { name: string; values: number[] };
  projectRank?: number[];
  rankPositions: number | 'all';
  tokenizer?: string;
  save?: string;
  json?: boolean;
}

const intList = (what: string) => (v: string): number[] => {
  const xs = v.split(',').map((x) => setValue(x));
  if (xs.length === 0 || xs.some((x) => !Number.isInteger(x) || x < 1)) throw new InvalidArgumentError(`${what} takes positive whole numbers separated by commas, got '${v}'`);
  return [...new Set(xs)];
};

const varyArg = (v: string): { name: string; values: number[] } => {
  const eq = v.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`expected name=v1,v2,..., got '${v}'`);
  const texts = v.slice(eq + 1).split(',').map((x) => x.trim());
  const values = texts.map(setValue);
  if (texts.some((x) => x === '') || values.some((x) => !Number.isFinite(x))) throw new InvalidArgumentError(`the values of --vary must be numbers separated by commas, got '${v.slice(eq + 1)}'`);
  return { name: v.slice(0, eq).trim(), values };
};

const countOrAll = (what: string) => (v: string): number | 'all' => {
  if (v === 'all') return 'all';
  const n = setValue(v); // decimal only: 0x10, 1_0, Infinity are refused
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${what} must be a positive whole number or 'all', got '${v}'`);
  return n;
};
const windowsArg = countOrAll('--windows');

/** `--seeds 0-4`: a bad list is a usage error (exit 2), like any bad option value. */
const seedsArg = (v: string): number[] => {
  try {
    return parseSeeds(v);
  } catch (e) {
    if (e instanceof MtcError) throw new InvalidArgumentError(e.message);
    throw e;
  }
};

/** Checks an option value with `parse` (a usage error when bad) and keeps its text. */
const checked = (parse: (v: string) => unknown) => (v: string): string => {
  parse(v);
  return v;
};

export async function main(argv: string[]): Promise<number> {
  const program = buildCli();
  // no command at all is a usage error, like any other: the help on stderr, exit 2
  if (argv.length === 0) {
    process.stderr.write(program.helpInformation());
    return 2;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return Number(process.exitCode ?? 0); // a command that finished but not fully (an interrupted run: 130)
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      return 2;
    }
    if (e instanceof MtcError) {
      process.stderr.write(formatError(e) + '\n');
      if (process.env.MTC_DEBUG) console.error(e.stack);
      return 1;
    }
    const err = e as Error;
    process.stderr.write(`mtc: internal error: ${err?.message ?? String(e)}\n`);
    if (process.env.MTC_DEBUG) console.error(err?.stack);
    else process.stderr.write('(set MTC_DEBUG=1 for the stack trace)\n');
    return 1;
  }
}
