// The mtc command line (commander). Exit codes: 0 ok, 1 user error (a diagnostic was
// printed), 2 usage error. Stack traces only with MTC_DEBUG set.
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import * as path from 'node:path';
import { formatError, MtcError } from '../compiler/diagnostics.ts';
import { compile, PASSES, writeCompiled, type PassName } from '../compiler/pipeline.ts';

const collectSet = (v: string, prev: Record<string, string>): Record<string, string> => {
  const eq = v.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`expected name=value, got '${v}'`);
  return { ...prev, [v.slice(0, eq).trim()]: v.slice(eq + 1).trim() };
};
const positiveInt = (what: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${what} must be a whole number ≥ 0, got '${v}'`);
  return n;
};

export function buildCli(): Command {
  const program = new Command('mtc')
    .description('mtc compiles .mt matrix-token models to WGSL kernels and TypeScript host code, and trains them on WebGPU.')
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
    .action((file: string, o: { out?: string; preset?: string; set: Record<string, string>; dumpAfter?: PassName }) => {
      const c = compile(file, { preset: o.preset, sets: o.set, dumpAfter: o.dumpAfter, dump: (t) => process.stdout.write(t.endsWith('\n') ? t : t + '\n') });
      if (o.dumpAfter) return;
      const out = o.out ?? path.join('generated', path.basename(file, '.mt'));
      writeCompiled(c, out);
      const p = c.plan;
      console.log(
        `mtc: compiled ${c.modelName} to ${out}: ${p.kernels.length + 3} kernels, ${p.forward.length} forward + ${p.backward.length} backward + 3 optimizer dispatches per step, ${p.params.length} parameter tensors`,
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
    .action(async (file: string, o: { preset?: string; set: Record<string, string>; data?: string; val?: string; steps?: number; seed?: number; out?: string; resume?: boolean }) => {
      const { train } = await import('./train.ts');
      await train({ file, preset: o.preset, sets: o.set, data: o.data, val: o.val, steps: o.steps, seed: o.seed, out: o.out, resume: o.resume });
    });
  run
    .command('eval')
    .description('held-out loss, bits per byte and perplexity of a checkpoint (dropout off), identical on every run')
    .argument('<model.mt>', 'the model source file the checkpoint was trained from')
    .requiredOption('--checkpoint <file>', 'a model checkpoint (.safetensors) written by mtc run train')
    .requiredOption('--data <file>', 'text or .jsonl to evaluate on')
    .option('--preset <name>', 'the preset the checkpoint was trained with')
    .option('--set <name=value>', 'the --set overrides the checkpoint was trained with (repeatable)', collectSet, {})
    .option('--windows <n|all>', "how many ctx+1 windows: a number (drawn by --seed) or 'all' (every window in file order)", windowsArg, 64)
    .option('--seed <n>', 'which windows --windows N takes', positiveInt('--seed'), 0)
    .addOption(new Option('--backend <name>', 'gpu, or reference: the float64 interpreter').choices(['gpu', 'reference']).default('gpu'))
    .option('--batch <n>', 'windows per device run (default: the train section\'s batch; the result does not depend on it)', atLeastOne)
    .option('--json', 'print one JSON object (loss, bpb, ppl, windows, tokens, bytes, backend)')
    .action(async (file: string, o: { checkpoint: string; data: string; preset?: string; set: Record<string, string>; windows: number | 'all'; seed: number; backend: 'gpu' | 'reference'; batch?: number; json?: boolean }) => {
      const { evaluateCheckpoint } = await import('./eval.ts');
      const r = await evaluateCheckpoint({ file, preset: o.preset, sets: o.set, checkpoint: o.checkpoint, data: o.data, windows: o.windows, seed: o.seed, backend: o.backend, batch: o.batch });
      if (o.json) console.log(JSON.stringify(r));
      else console.log(`loss ${r.loss.toFixed(6)} nats/token  bpb ${r.bpb.toFixed(6)}  ppl ${r.ppl.toFixed(4)}  (${r.windows} windows, ${r.tokens} tokens, ${r.backend})`);
    });
  return program;
}

const atLeastOne = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`must be a whole number ≥ 1, got '${v}'`);
  return n;
};

const windowsArg = (v: string): number | 'all' => {
  if (v === 'all') return 'all';
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`--windows must be a positive whole number or 'all', got '${v}'`);
  return n;
};

export async function main(argv: string[]): Promise<number> {
  const program = buildCli();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
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
