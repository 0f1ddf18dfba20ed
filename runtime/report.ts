// `mtc report`: one Markdown report with SVG figures over run folders (and sweep folders of
// run folders), comparing configurations with the study's numbers (../shared/MODEL.md,
// "What the study reported"). A configuration is model + preset + --set overrides (the seed
// left out) + data + steps; its seeds aggregate to mean ± 95% Student-t CI half-width.
//
// Inputs per run folder: config.json (required), metrics.jsonl (training and evaluation
// records; unknown and unreadable lines are skipped), eval.json (optional final evaluation of
// the last checkpoint: T-sweep variants and rank-projection ablation). Older runs without rank
// fields or without `model` in config.json still report what they have.
//
// The output is deterministic: same folders → same bytes (no dates, fixed number formats,
// sorted everything).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MtcError } from '../compiler/diagnostics.ts';
import { meanCI, type CI } from './stats.ts';
import { lineChart, type RefLine, type Series } from './svg.ts';
import { makeDirs } from '../compiler/files.ts';

// ---------------------------------------------------------------------------------------
// Reading runs

export interface TrainPoint {
  step: number;
  loss: number;
}

export interface EvalPoint {
  step: number;
  loss?: number;
  bpb?: number;
  ppl?: number;
  valErank?: number[];
  valCollapse?: number[];
  trainErank?: number[];
  trainCollapse?: number[];
}

/** One evaluation of a run at its trained T: eval.json's matching variant, else the last eval record. */
export interface FinalEval {
  source: 'eval.json' | 'metrics.jsonl';
  step: number | undefined;
  loss?: number;
  bpb?: number;
  ppl?: number;
  erank?: number[];
  collapse?: number[];
  /** training-batch rank (dropout on), from the last eval record of metrics.jsonl */
  trainErank?: number[];
  trainCollapse?: number[];
}

export interface Variant {
  T: number;
  loss?: number;
  bpb?: number;
  ppl?: number;
  erank?: number[];
  collapse?: number[];
}

export interface AblationPoint {
  /** rank of the projection; null = the unprojected model */
  k: number | null;
  loss?: number;
  bpb?: number;
  ppl?: number;
  /** mean erank of the matrices fed to the head */
  erank?: number;
}

export interface Run {
  /** absolute path */
  dir: string;
  model: string;
  preset: string | null;
  sets: Record<string, string>;
  seed: number | undefined;
  /** steps the run was set to train */
  steps: number | undefined;
  /** last step found in metrics.jsonl */
  stepsDone: number | undefined;
  data: string | undefined;
  val: string | null;
  /** iterations the model was trained with (hypers.T) */
  T: number | undefined;
  train: TrainPoint[];
  evals: EvalPoint[];
  final: FinalEval | undefined;
  variants: Variant[];
  ablation: AblationPoint[];
  warnings: string[];
}

const SKIP_DIRS = new Set(['checkpoints', 'compiled', 'node_modules']);

/**
 * The run folders (holding config.json) in `folders`: each is a run folder, or a folder whose
 * sub-folders (up to three levels: `<sweep>/<model>/seed-<n>`) are. Sorted, duplicates removed.
 */
export function findRunFolders(folders: readonly string[]): string[] {
  const found = new Set<string>();
  const visit = (dir: string, depth: number): void => {
    if (fs.existsSync(path.join(dir, 'config.json'))) {
      found.add(fs.realpathSync(dir));
      return;
    }
    if (depth >= 3) return;
    const subs = fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory() && !e.name.startsWith('.') && !SKIP_DIRS.has(e.name))
      .map((e) => e.name)
      .sort(byString);
    for (const s of subs) visit(path.join(dir, s), depth + 1);
  };
  for (const f of folders) {
    if (!fs.existsSync(f)) throw new MtcError(`${f}: no such folder`);
    const st = fs.statSync(f);
    if (st.isFile() && path.basename(f) === 'config.json') {
      found.add(fs.realpathSync(path.dirname(f)));
      continue;
    }
    if (!st.isDirectory()) throw new MtcError(`${f}: not a folder (give run folders of mtc run train, or sweep folders of mtc run sweep)`);
    const before = found.size;
    visit(f, 0);
    if (found.size === before && !found.has(fs.realpathSync(f))) {
      throw new MtcError(`${f}: no run folder (one holding config.json) in it or up to three levels below`);
    }
  }
  return [...found].sort(byString);
}

/** The model files of this repository whose stem does not spell the model's name. */
const MODEL_OF_STEM: Record<string, string> = {
  matrix_thinker: 'MatrixThinker',
  vector_collapse: 'VectorCollapseThinker',
  matrix_product_attention: 'MatrixProductThinker',
};

/**
 * The model name for a run whose config.json has none (older runs): `compiled/program.ts`
 * of the run folder names it; else the repository's model files by stem; else the file stem
 * in PascalCase ("models/matrix_thinker.mt" → "MatrixThinker").
 */
export function modelFromFile(file: string, runDir?: string): string {
  if (runDir !== undefined) {
    const program = path.join(runDir, 'compiled', 'program.ts');
    if (fs.existsSync(program)) {
      const m = /export const model = \{\s*"name":\s*"([^"]+)"/.exec(fs.readFileSync(program, 'utf8').slice(0, 4000));
      if (m) return m[1];
    }
  }
  const stem = path.basename(file).replace(/\.[^.]*$/, '');
  if (Object.hasOwn(MODEL_OF_STEM, stem)) return MODEL_OF_STEM[stem];
  return stem
    .split(/[^A-Za-z0-9]+/)
    .filter((p) => p.length > 0)
    .map((p) => p[0].toUpperCase() + p.slice(1))
    .join('');
}

const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);
/** JSON has no NaN: a diverged value arrives as null; keep it as NaN so it is not averaged away. */
const nums = (v: unknown): number[] | undefined =>
  Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number' || x === null) ? v.map((x) => (x === null ? NaN : (x as number))) : undefined;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Read one run folder. Throws when config.json is missing or not JSON. */
export function loadRun(dir: string): Run {
  const abs = path.resolve(dir);
  const warnings: string[] = [];
  let cfg: unknown;
  try {
    cfg = JSON.parse(fs.readFileSync(path.join(abs, 'config.json'), 'utf8'));
  } catch {
    throw new MtcError('config.json is not valid JSON');
  }
  if (!isObject(cfg)) throw new MtcError(`${path.join(dir, 'config.json')}: not a JSON object`);
  const hypers = isObject(cfg.hypers) ? cfg.hypers : {};
  const trainCfg = isObject(cfg.train) ? cfg.train : {};
  const sets: Record<string, string> = {};
  if (isObject(cfg.sets)) for (const [k, v] of Object.entries(cfg.sets)) sets[k] = String(v);

  // metrics.jsonl: the last record of a step wins (a resumed run logs the steps after its
  // checkpoint again).
  const trainByStep = new Map<number, TrainPoint>();
  const evalByStep = new Map<number, EvalPoint>();
  const metricsPath = path.join(abs, 'metrics.jsonl');
  if (fs.existsSync(metricsPath)) {
    let bad = 0;
    for (const line of fs.readFileSync(metricsPath, 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      let r: unknown;
      try {
        r = JSON.parse(line);
      } catch {
        bad++;
        continue;
      }
      if (!isObject(r) || typeof r.step !== 'number') continue;
      const step = r.step;
      if (typeof r.val_loss === 'number' || typeof r.val_bpb === 'number') {
        const loss = num(r.val_loss);
        evalByStep.set(step, {
          step,
          loss,
          bpb: num(r.val_bpb),
          ppl: num(r.val_ppl) ?? (loss === undefined ? undefined : Math.exp(loss)),
          valErank: nums(r.val_erank),
          valCollapse: nums(r.val_collapse),
          trainErank: nums(r.train_erank),
          trainCollapse: nums(r.train_collapse),
        });
      } else if (typeof r.loss === 'number') {
        trainByStep.set(step, { step, loss: r.loss });
      }
    }
    if (bad > 0) warnings.push(`${bad} unreadable line${bad === 1 ? '' : 's'} in metrics.jsonl skipped`);
  } else {
    warnings.push('no metrics.jsonl');
  }
  const train = [...trainByStep.values()].sort((a, b) => a.step - b.step);
  const evals = [...evalByStep.values()].sort((a, b) => a.step - b.step);

  let evalJson: Record<string, unknown> | undefined;
  const evalPath = path.join(abs, 'eval.json');
  if (fs.existsSync(evalPath)) {
    try {
      const e: unknown = JSON.parse(fs.readFileSync(evalPath, 'utf8'));
      if (isObject(e)) evalJson = e;
      else warnings.push('eval.json is not a JSON object; ignored');
    } catch {
      warnings.push('eval.json is not valid JSON; ignored');
    }
  }
  const variants: Variant[] = [];
  const ablation: AblationPoint[] = [];
  if (evalJson) {
    for (const v of Array.isArray(evalJson.variants) ? evalJson.variants : []) {
      if (!isObject(v)) continue;
      const T = isObject(v.hypers) ? num(v.hypers.T) : undefined;
      if (T === undefined) continue;
      variants.push({ T, loss: num(v.loss), bpb: num(v.bpb), ppl: num(v.ppl), erank: nums(v.erank), collapse: nums(v.collapse) });
    }
    variants.sort((a, b) => a.T - b.T);
    for (const a of Array.isArray(evalJson.ablation) ? evalJson.ablation : []) {
      if (!isObject(a) || !(a.k === null || typeof a.k === 'number')) continue;
      ablation.push({ k: a.k, loss: num(a.loss), bpb: num(a.bpb), ppl: num(a.ppl), erank: num(a.erank) ?? nums(a.erank)?.[0] });
    }
    ablation.sort((a, b) => (a.k ?? -1) - (b.k ?? -1));
  }

  const T = num(hypers.T) ?? num(hypers.iterations) ?? evals.find((e) => e.valErank)?.valErank?.length;
  const lastEval = evals.length > 0 ? evals[evals.length - 1] : undefined;
  const trainRank = { trainErank: lastEval?.trainErank, trainCollapse: lastEval?.trainCollapse };
  let final: FinalEval | undefined;
  const atT = variants.find((v) => v.T === T);
  if (atT) {
    final = { source: 'eval.json', step: num(evalJson?.step), loss: atT.loss, bpb: atT.bpb, ppl: atT.ppl, erank: atT.erank, collapse: atT.collapse, ...trainRank };
  } else if (evalJson && (typeof evalJson.bpb === 'number' || typeof evalJson.loss === 'number')) {
    // An eval.json without variants: the plain `mtc eval --json` object.
    final = { source: 'eval.json', step: num(evalJson.step), loss: num(evalJson.loss), bpb: num(evalJson.bpb), ppl: num(evalJson.ppl), erank: nums(evalJson.erank), collapse: nums(evalJson.collapse), ...trainRank };
  } else if (lastEval) {
    final = { source: 'metrics.jsonl', step: lastEval.step, loss: lastEval.loss, bpb: lastEval.bpb, ppl: lastEval.ppl, erank: lastEval.valErank, collapse: lastEval.valCollapse, ...trainRank };
  }

  const stepsDone = Math.max(-1, ...train.map((p) => p.step), ...evals.map((p) => p.step));
  const file = typeof cfg.file === 'string' ? cfg.file : '';
  const model = typeof cfg.model === 'string' ? cfg.model : typeof evalJson?.model === 'string' ? evalJson.model : modelFromFile(file || abs, abs);
  return {
    dir: abs,
    model,
    preset: typeof cfg.preset === 'string' ? cfg.preset : null,
    sets,
    seed: num(cfg.seed) ?? num(trainCfg.seed) ?? (sets.seed !== undefined ? Number(sets.seed) : undefined),
    steps: num(cfg.steps) ?? num(trainCfg.steps),
    stepsDone: stepsDone >= 0 ? stepsDone : undefined,
    data: typeof cfg.data === 'string' ? cfg.data : typeof trainCfg.data === 'string' ? trainCfg.data : undefined,
    val: typeof cfg.val === 'string' ? cfg.val : null,
    T,
    train,
    evals,
    final,
    variants,
    ablation,
    warnings,
  };
}

// ---------------------------------------------------------------------------------------
// Configurations

/** The study's configurations, in the order its table lists them, with its own numbers. */
export const STUDY: Record<string, { rank: string; atT: string; trend: string }> = {
  MatrixThinker: { rank: '5.05 … 6.13', atT: 'PPL 72.4, "bpb" 1.670', trend: 'rose 5.05 → 6.13 (after ~1000 steps; at step 500 it fell 4.73 → 4.20)' },
  VectorCollapseThinker: { rank: '3.66 → 3.38', atT: 'PPL 638', trend: 'fell 3.66 → 3.38' },
  MatrixProductThinker: { rank: '2.75 → 2.66', atT: '"bpb" 2.457', trend: 'fell 2.75 → 2.66' },
};
const STUDY_ORDER = Object.keys(STUDY);

export interface Configuration {
  key: string;
  model: string;
  /** the model name and whatever sets this configuration apart from the others */
  label: string;
  /** palette index, the same in every figure */
  color: number;
  runs: Run[];
}

/** The attributes that make a configuration, besides the model (seed excluded). */
function attributes(r: Run): Array<[string, string]> {
  const out: Array<[string, string]> = [['preset', r.preset ?? '(none)']];
  for (const k of Object.keys(r.sets).sort(byString)) if (k !== 'seed') out.push([`set:${k}`, r.sets[k]]);
  out.push(['data', r.data ?? '(default)']);
  if (r.val !== null) out.push(['val', r.val]);
  out.push(['steps', r.steps === undefined ? '?' : String(r.steps)]);
  return out;
}

function attrRank(name: string): number {
  return name === 'preset' ? 0 : name.startsWith('set:') ? 1 : name === 'data' ? 2 : name === 'val' ? 3 : 4;
}

function attrText(name: string, value: string | undefined): string {
  if (name === 'preset') return value === '(none)' ? 'no preset' : `preset ${value}`;
  if (name === 'steps') return `${value} steps`;
  if (name.startsWith('set:')) return `${name.slice(4)}=${value ?? 'default'}`;
  return `${name} ${value ?? '(default)'}`;
}

/** Group runs into configurations (sorted: the study's order, then by name), seeds sorted inside. */
export function groupConfigurations(runs: readonly Run[]): { configs: Configuration[]; common: string[] } {
  const groups = new Map<string, Run[]>();
  for (const r of runs) {
    const key = JSON.stringify([r.model, ...attributes(r)]);
    const g = groups.get(key);
    if (g) g.push(r);
    else groups.set(key, [r]);
  }
  const keys = [...groups.keys()];
  const attrMaps = new Map(keys.map((k) => [k, new Map(attributes(groups.get(k)![0]))]));
  // In the order attributes() lists them (preset, sets, data, val, steps); a set only some
  // configurations have goes after the sets of the first.
  const names = [...new Set([...attrMaps.values()].flatMap((m) => [...m.keys()]))].sort((a, b) => attrRank(a) - attrRank(b) || byString(a, b));
  const varying = names.filter((n) => new Set([...attrMaps.values()].map((m) => m.get(n) ?? '\u0000')).size > 1);
  const first = attrMaps.get(keys[0]);
  const common = keys.length === 0 ? [] : names.filter((n) => !varying.includes(n) && first!.has(n)).map((n) => attrText(n, first!.get(n)));
  const rank = (m: string) => (STUDY_ORDER.includes(m) ? STUDY_ORDER.indexOf(m) : STUDY_ORDER.length);
  // A label names the model and the attributes that vary between configurations; a --set
  // this configuration does not make is left out ("lr=default" is noise) unless two labels
  // would then read the same.
  const labelFor = (model: string, m: Map<string, string>, withDefaults: boolean) => {
    const extra = varying.filter((n) => withDefaults || m.has(n)).map((n) => attrText(n, m.get(n)));
    return model + (extra.length ? ` (${extra.join(', ')})` : '');
  };
  const short = keys.map((key) => labelFor(groups.get(key)![0].model, attrMaps.get(key)!, false));
  const configs = keys.map((key, i) => {
    const rs = [...groups.get(key)!].sort((a, b) => (a.seed ?? -1) - (b.seed ?? -1) || byString(a.dir, b.dir));
    const unique = short.filter((l) => l === short[i]).length === 1;
    return { key, model: rs[0].model, label: unique ? short[i] : labelFor(rs[0].model, attrMaps.get(key)!, true), color: 0, runs: rs };
  });
  configs.sort((a, b) => rank(a.model) - rank(b.model) || byString(a.model, b.model) || byString(a.label, b.label));
  configs.forEach((c, i) => (c.color = i));
  return { configs, common };
}

// ---------------------------------------------------------------------------------------
// Aggregation over seeds

/** Per index i, the CI over the arrays that reach i. */
function perIndex(arrays: ReadonlyArray<readonly number[] | undefined>): CI[] {
  const present = arrays.filter((a): a is readonly number[] => a !== undefined);
  const len = Math.max(0, ...present.map((a) => a.length));
  const out: CI[] = [];
  for (let i = 0; i < len; i++) out.push(meanCI(present.filter((a) => i < a.length).map((a) => a[i])));
  return out;
}

function ciOf(values: ReadonlyArray<number | undefined>): CI {
  return meanCI(values.filter((v): v is number => v !== undefined));
}

/** Mean ± CI at every step any seed logged, over the seeds that logged it. */
function curve(runs: readonly Run[], pick: (r: Run) => Array<{ step: number; v: number | undefined }>): { x: number[]; ci: CI[] } {
  const bySteps = new Map<number, number[]>();
  for (const r of runs) {
    for (const p of pick(r)) {
      if (p.v === undefined) continue;
      const l = bySteps.get(p.step);
      if (l) l.push(p.v);
      else bySteps.set(p.step, [p.v]);
    }
  }
  const x = [...bySteps.keys()].sort((a, b) => a - b);
  return { x, ci: x.map((s) => meanCI(bySteps.get(s)!)) };
}

interface Stats {
  valErank: CI[];
  trainErank: CI[];
  valCollapse: CI[];
  trainCollapse: CI[];
  bpb: CI;
  ppl: CI;
  /** per-seed change of the val rank from t = 1 to t = T */
  delta: CI;
  trainDelta: CI;
  T: number | undefined;
  sweepTs: number[];
  sweep: Map<number, { bpb: CI; ppl: CI; rank: CI }>;
  ablationKs: Array<number | null>;
  ablation: Map<number | null, { bpb: CI; erank: CI }>;
  loss: { x: number[]; ci: CI[] };
  valBpb: { x: number[]; ci: CI[] };
}

const change = (a: number[] | undefined) => (a && a.length >= 2 ? a[a.length - 1] - a[0] : undefined);

function stats(c: Configuration): Stats {
  const f = c.runs.map((r) => r.final);
  const sweepTs = [...new Set(c.runs.flatMap((r) => r.variants.map((v) => v.T)))].sort((a, b) => a - b);
  const sweep = new Map(
    sweepTs.map((T) => {
      const vs = c.runs.map((r) => r.variants.find((v) => v.T === T));
      return [T, { bpb: ciOf(vs.map((v) => v?.bpb)), ppl: ciOf(vs.map((v) => v?.ppl)), rank: ciOf(vs.map((v) => v?.erank?.[v.erank.length - 1])) }] as const;
    }),
  );
  const ks = [...new Set(c.runs.flatMap((r) => r.ablation.map((a) => a.k)))].sort((a, b) => (a ?? -1) - (b ?? -1));
  const ablation = new Map(
    ks.map((k) => {
      const as = c.runs.map((r) => r.ablation.find((a) => a.k === k));
      return [k, { bpb: ciOf(as.map((a) => a?.bpb)), erank: ciOf(as.map((a) => a?.erank)) }] as const;
    }),
  );
  const Ts = [...new Set(c.runs.map((r) => r.T).filter((t) => t !== undefined))];
  return {
    valErank: perIndex(f.map((e) => e?.erank)),
    trainErank: perIndex(f.map((e) => e?.trainErank)),
    valCollapse: perIndex(f.map((e) => e?.collapse)),
    trainCollapse: perIndex(f.map((e) => e?.trainCollapse)),
    bpb: ciOf(f.map((e) => e?.bpb)),
    ppl: ciOf(f.map((e) => e?.ppl)),
    delta: ciOf(f.map((e) => change(e?.erank))),
    trainDelta: ciOf(f.map((e) => change(e?.trainErank))),
    T: Ts.length === 1 ? Ts[0] : undefined,
    sweepTs,
    sweep,
    ablationKs: ks,
    ablation,
    loss: curve(c.runs, (r) => r.train.map((p) => ({ step: p.step, v: p.loss }))),
    valBpb: curve(c.runs, (r) => r.evals.map((p) => ({ step: p.step, v: p.bpb }))),
  };
}

// ---------------------------------------------------------------------------------------
// Formatting

function byString(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** mean ± CI half-width with `d` decimals; just the mean for one seed; "—" for none. */
function fmtCI(ci: CI | undefined, d: number): string {
  if (!ci || ci.n === 0) return '—';
  if (!Number.isFinite(ci.mean)) return String(ci.mean);
  if (ci.n === 1) return ci.mean.toFixed(d);
  return `${ci.mean.toFixed(d)} ± ${ci.half.toFixed(d)}`;
}

function pplDecimals(ci: CI): number {
  return Math.abs(ci.mean) >= 100 ? 0 : Math.abs(ci.mean) >= 10 ? 1 : 2;
}

function signed(v: number, d: number): string {
  const s = v.toFixed(d);
  return v > 0 ? `+${s}` : /^-0(\.0*)?$/.test(s) ? s.slice(1) : s.replace('-', '−');
}

/** "rose 4.10 → 4.35 (Δ +0.25 ± 0.08, 95% CI excludes 0)" */
function trend(per: CI[], delta: CI): string {
  if (per.length < 2 || delta.n === 0) return 'not measured';
  const first = per[0].mean.toFixed(2);
  const last = per[per.length - 1].mean.toFixed(2);
  const dir = delta.mean > 0 ? 'rose' : delta.mean < 0 ? 'fell' : 'did not change';
  if (delta.n === 1) return `${dir} ${first} → ${last} (Δ ${signed(delta.mean, 2)}; one seed, no CI)`;
  const excludes = delta.lo > 0 || delta.hi < 0;
  return `${dir} ${first} → ${last} (Δ ${signed(delta.mean, 2)} ± ${delta.half.toFixed(2)} over ${delta.n} seeds; the 95% CI ${excludes ? 'excludes' : 'includes'} 0)`;
}

/** Escape a Markdown table cell. */
function cell(s: string): string {
  return s.replace(/\r?\n/g, ' ').replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/</g, '&lt;');
}

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

const posix = (p: string) => p.split(path.sep).join('/');

// ---------------------------------------------------------------------------------------
// The report

export interface Figure {
  /** file name inside the output folder */
  name: string;
  /** alt text and caption */
  title: string;
  svg: string;
}

export interface BuiltReport {
  markdown: string;
  figures: Figure[];
}

/**
 * The report for `runs` (pure: no file access). `display(dir)` names a run folder in the text,
 * `link(dir)` links to it from the report's folder.
 */
export function buildReport(runs: readonly Run[], display: (dir: string) => string = (d) => d, link: (dir: string) => string = display): BuiltReport {
  const { configs, common } = groupConfigurations(runs);
  const st = new Map(configs.map((c) => [c, stats(c)]));
  const anyCI = configs.some((c) => c.runs.length > 1);
  const band = anyCI ? 'mean over seeds; shaded: 95% CI (Student t)' : 'one seed per configuration: no CI';
  const bandIn = (range: Range | undefined) => (anyCI && range ? `${band}, cut to ${range.what}` : band);
  const md: string[] = [];
  const figures: Figure[] = [];
  const addFigure = (name: string, title: string, svg: string) => {
    figures.push({ name, title, svg });
    md.push(`![${title}](${name})`, '');
  };
  const label = (c: Configuration) => cell(c.label);

  md.push('# mtc report', '');
  md.push(`${runs.length} run${runs.length === 1 ? '' : 's'} in ${configs.length} configuration${configs.length === 1 ? '' : 's'}. ` + 'Values are the mean over seeds ± the half-width of the 95% confidence interval (Student t); a single seed shows the value alone.', '');
  if (common.length > 0) md.push(`All runs: ${common.map(cell).join(' · ')}.`, '');

  // Summary table, laid out like the study's.
  md.push('## Summary', '');
  md.push(
    table(
      ['configuration', 'seeds', 'T', 'val rank, iteration 1 → T', 't=T bpb', 't=T PPL', 'study: rank', 'study: t=8'],
      configs.map((c) => {
        const s = st.get(c)!;
        const rank = s.valErank.length === 0 ? '—' : s.valErank.length === 1 ? fmtCI(s.valErank[0], 2) : `${fmtCI(s.valErank[0], 2)} → ${fmtCI(s.valErank[s.valErank.length - 1], 2)}`;
        const study = STUDY[c.model];
        return [label(c), String(c.runs.length), s.T === undefined ? '—' : String(s.T), rank, fmtCI(s.bpb, 3), s.ppl.n ? fmtCI(s.ppl, pplDecimals(s.ppl)) : '—', study ? cell(study.rank) : '—', study ? cell(study.atT) : '—'];
      }),
    ),
    '',
  );
  md.push(
    'mtc measures bpb per byte of text (byte tokens: loss / ln 2) and PPL per token of the run\'s tokenizer. ' +
      'The study\'s PPL is per GPT-2 BPE token and its "bpb" divides by an assumed 3.7 bytes per token: compare bpb only roughly, and PPL not at all across tokenizers. ' +
      'The study\'s runs were also trained differently from each other (MODEL.md, "What the study reported").',
    '',
  );

  // Rank trends.
  md.push('## Rank trend, iteration 1 → T', '');
  for (const c of configs) {
    const s = st.get(c)!;
    const study = STUDY[c.model];
    md.push(`- **${label(c)}**: val rank ${trend(s.valErank, s.delta)}. Training-batch rank (dropout on): ${trend(s.trainErank, s.trainDelta)}.${study ? ` Study: ${cell(study.trend)}.` : ''}`);
  }
  md.push('', 'Trends depend on training length: the study\'s MultiProbe rank fell early in training and rose only after about 1000 steps.', '');

  // Per-iteration figures and tables.
  const perIteration = (key: 'valErank' | 'trainErank' | 'valCollapse' | 'trainCollapse', d: number) => {
    const rows = configs.filter((c) => st.get(c)![key].length > 0);
    const width = Math.max(0, ...rows.map((c) => st.get(c)![key].length));
    return table(
      ['configuration', ...Array.from({ length: width }, (_, i) => `t=${i + 1}`)],
      rows.map((c) => [label(c), ...Array.from({ length: width }, (_, i) => fmtCI(st.get(c)![key][i], d))]),
    );
  };
  const iterationChart = (key: 'valErank' | 'trainErank' | 'valCollapse' | 'trainCollapse', title: string, yLabel: string, dashed: boolean, range: Range) => {
    const rows = configs.filter((c) => st.get(c)![key].length > 0);
    const width = Math.max(0, ...rows.map((c) => st.get(c)![key].length));
    return lineChart({
      title,
      subtitle: bandIn(range),
      xLabel: 'iteration t',
      yLabel,
      xTicks: Array.from({ length: width }, (_, i) => i + 1),
      series: rows.map((c) => seriesOf(c, st.get(c)![key].map((_, i) => i + 1), st.get(c)![key], dashed, range)),
    });
  };
  const sections: Array<{ key: 'valErank' | 'trainErank' | 'valCollapse' | 'trainCollapse'; heading: string; file: string; title: string; y: string; d: number; dashed: boolean; range: Range }> = [
    { key: 'valErank', heading: 'Val rank per iteration (held-out data, dropout off)', file: 'rank_val.svg', title: 'Effective rank per iteration — validation (dropout off)', y: 'effective rank', d: 2, dashed: false, range: RANK_RANGE },
    { key: 'trainErank', heading: 'Training-batch rank per iteration (dropout on; not comparable with the val rank)', file: 'rank_train.svg', title: 'Effective rank per iteration — TRAINING batch (dropout on)', y: 'effective rank (training batch)', d: 2, dashed: true, range: RANK_RANGE },
    { key: 'valCollapse', heading: 'Token-collapse ratio per iteration (val)', file: 'collapse_val.svg', title: 'Token-collapse ratio per iteration — validation (dropout off)', y: 'token-collapse ratio', d: 3, dashed: false, range: COLLAPSE_RANGE },
    { key: 'trainCollapse', heading: 'Token-collapse ratio per iteration (training batch, dropout on)', file: 'collapse_train.svg', title: 'Token-collapse ratio per iteration — TRAINING batch (dropout on)', y: 'token-collapse ratio (training batch)', d: 3, dashed: true, range: COLLAPSE_RANGE },
  ];
  for (const sec of sections) {
    md.push(`## ${sec.heading}`, '');
    if (!configs.some((c) => st.get(c)![sec.key].length > 0)) {
      md.push('Not recorded by these runs (older mtc versions log no rank fields).', '');
      continue;
    }
    md.push(perIteration(sec.key, sec.d), '');
    addFigure(sec.file, sec.title, iterationChart(sec.key, sec.title, sec.y, sec.dashed, sec.range));
  }

  // Curves over training.
  md.push('## Training curves', '');
  const curveChart = (pick: (s: Stats) => { x: number[]; ci: CI[] }, title: string, yLabel: string) =>
    lineChart({
      title,
      subtitle: band,
      xLabel: 'step',
      yLabel,
      series: configs.filter((c) => pick(st.get(c)!).x.length > 0).map((c) => seriesOf(c, pick(st.get(c)!).x, pick(st.get(c)!).ci, false)),
    });
  let curves = 0;
  if (configs.some((c) => st.get(c)!.loss.x.length > 0)) {
    addFigure('loss_train.svg', 'Training loss', curveChart((s) => s.loss, 'Training loss (training batches, dropout on)', 'loss (nats per token)'));
    curves++;
  }
  if (configs.some((c) => st.get(c)!.valBpb.x.length > 0)) {
    addFigure('bpb_val.svg', 'Validation bits per byte', curveChart((s) => s.valBpb, 'Validation bits per byte', 'val bpb'));
    curves++;
  }
  if (curves === 0) md.push('No training or evaluation records in metrics.jsonl.', '');

  // T-sweep.
  md.push('## T-sweep (final checkpoint evaluated with T iterations)', '');
  const swept = configs.filter((c) => st.get(c)!.sweepTs.length > 0);
  if (swept.length === 0) {
    md.push('No run has an eval.json with variants.', '');
  } else {
    const Ts = [...new Set(swept.flatMap((c) => st.get(c)!.sweepTs))].sort((a, b) => a - b);
    const sweepTable = (pick: (v: { bpb: CI; ppl: CI; rank: CI }) => CI, d: number) =>
      table(
        ['configuration', 'trained T', ...Ts.map((T) => `T=${T}`)],
        swept.map((c) => [label(c), st.get(c)!.T === undefined ? '—' : String(st.get(c)!.T), ...Ts.map((T) => fmtCI(st.get(c)!.sweep.get(T) && pick(st.get(c)!.sweep.get(T)!), d))]),
      );
    md.push('bpb:', '', sweepTable((v) => v.bpb, 3), '');
    md.push('Val rank at the last iteration (t = T):', '', sweepTable((v) => v.rank, 2), '');
    const sweepChart = (pick: (v: { bpb: CI; ppl: CI; rank: CI }) => CI, title: string, yLabel: string, range?: Range) =>
      lineChart({
        title,
        subtitle: bandIn(range),
        xLabel: 'iterations T at evaluation',
        yLabel,
        logX: true,
        xTicks: Ts,
        series: swept.map((c) => {
          const s = st.get(c)!;
          return seriesOf(c, s.sweepTs, s.sweepTs.map((T) => pick(s.sweep.get(T)!)), false, range);
        }),
      });
    addFigure('tsweep_bpb.svg', 'T-sweep: bpb', sweepChart((v) => v.bpb, 'T-sweep: bits per byte vs iterations T', 'bpb'));
    addFigure('tsweep_rank.svg', 'T-sweep: rank at the last iteration', sweepChart((v) => v.rank, 'T-sweep: val rank at the last iteration vs T', 'effective rank at t = T', RANK_RANGE));
  }

  // Rank-projection ablation.
  md.push('## Rank-projection ablation (M projected to rank k before the head)', '');
  const ablated = configs.filter((c) => st.get(c)!.ablationKs.length > 0);
  if (ablated.length === 0) {
    md.push('No run has an eval.json with an ablation.', '');
  } else {
    const ks = [...new Set(ablated.flatMap((c) => st.get(c)!.ablationKs))].sort((a, b) => (a ?? -1) - (b ?? -1));
    const head = ks.map((k) => (k === null ? 'unprojected' : `k=${k}`));
    const abTable = (pick: (v: { bpb: CI; erank: CI }) => CI, d: number) =>
      table(['configuration', ...head], ablated.map((c) => [label(c), ...ks.map((k) => fmtCI(st.get(c)!.ablation.get(k) && pick(st.get(c)!.ablation.get(k)!), d))]));
    md.push('bpb:', '', abTable((v) => v.bpb, 3), '');
    md.push('Mean effective rank of the matrices fed to the head:', '', abTable((v) => v.erank, 2), '');
    const series: Series[] = [];
    const refs: RefLine[] = [];
    for (const c of ablated) {
      const s = st.get(c)!;
      const kk = s.ablationKs.filter((k): k is number => k !== null);
      if (kk.length > 0) series.push(seriesOf(c, kk, kk.map((k) => s.ablation.get(k)!.bpb), false));
      const un = s.ablation.get(null)?.bpb;
      if (un && un.n > 0) refs.push({ label: `${c.label}: unprojected`, y: un.mean, color: c.color });
    }
    addFigure(
      'ablation_bpb.svg',
      'Rank-projection ablation: bpb vs k',
      lineChart({
        title: 'Rank-projection ablation: bits per byte vs projection rank k',
        subtitle: `${band}; dotted: unprojected model`,
        xLabel: 'rank k of the projection',
        yLabel: 'bpb',
        logX: true,
        xTicks: ks.filter((k): k is number => k !== null),
        series,
        refLines: refs,
      }),
    );
  }

  // Runs used.
  md.push('## Runs', '');
  const labelOf = new Map(configs.flatMap((c) => c.runs.map((r) => [r, c.label] as const)));
  const ordered = configs.flatMap((c) => c.runs);
  md.push(
    table(
      ['run folder', 'configuration', 'seed', 'steps', 'preset', 'sets', 'data', 'final eval'],
      ordered.map((r) => [
        `[${cell(display(r.dir))}](${encodeURI(link(r.dir))})`,
        cell(labelOf.get(r)!),
        r.seed === undefined ? '—' : String(r.seed),
        `${r.stepsDone ?? 0}/${r.steps ?? '?'}`,
        r.preset === null ? '—' : cell(r.preset),
        Object.keys(r.sets).length === 0 ? '—' : cell(Object.keys(r.sets).sort(byString).map((k) => `${k}=${r.sets[k]}`).join(', ')),
        r.data === undefined ? '—' : cell(r.data) + (r.val === null ? '' : ` (val ${cell(r.val)})`),
        r.final ? `${r.final.source}${r.final.step === undefined ? '' : ` (step ${r.final.step})`}` : '—',
      ]),
    ),
    '',
  );
  const warnings = ordered.flatMap((r) => r.warnings.map((w) => `- ${cell(display(r.dir))}: ${cell(w)}`));
  for (const c of configs) {
    const fromMetrics = c.runs.filter((r) => r.final?.source === 'metrics.jsonl');
    if (fromMetrics.length > 0 && fromMetrics.length < c.runs.length) {
      warnings.push(
        `- ${cell(c.label)}: the final values mix eval.json (${c.runs.length - fromMetrics.length} run${c.runs.length - fromMetrics.length === 1 ? '' : 's'}) with the last evaluation in metrics.jsonl, on other windows (${fromMetrics.map((r) => cell(display(r.dir))).join(', ')}: run \`mtc run eval --run <folder>\` there)`,
      );
    }
  }
  const unfinished = ordered.filter((r) => r.steps !== undefined && r.stepsDone !== undefined && r.stepsDone < r.steps);
  for (const r of unfinished) warnings.push(`- ${cell(display(r.dir))}: stopped at step ${r.stepsDone} of ${r.steps}`);
  if (warnings.length > 0) md.push('## Notes', '', ...warnings, '');

  return { markdown: md.join('\n').replace(/\n+$/, '\n'), figures };
}

/** The values a metric can take; a t interval over few seeds can reach past them. */
interface Range {
  lo: number;
  hi: number;
  /** how the figure's subtitle says it */
  what: string;
}
const RANK_RANGE: Range = { lo: 1, hi: Infinity, what: 'erank ≥ 1' };
const COLLAPSE_RANGE: Range = { lo: 0, hi: 2, what: 'the ratio\'s range [0, 2]' };

/**
 * A chart series for configuration `c`: mean line, CI band when some point has two or more
 * seeds, the band cut to the values the metric can take (`range`).
 */
function seriesOf(c: Configuration, x: number[], ci: CI[], dashed: boolean, range?: Range): Series {
  const clip = (v: number) => (range ? Math.min(range.hi, Math.max(range.lo, v)) : v);
  const withBand = ci.some((v) => v.n > 1);
  // The seeds this figure's values come from (a run without eval.json has no T-sweep), not
  // the configuration's runs.
  const n = Math.max(0, ...ci.map((v) => v.n));
  return {
    label: `${c.label} (${n} seed${n === 1 ? '' : 's'})`,
    x,
    y: ci.map((v) => v.mean),
    lo: withBand ? ci.map((v) => clip(v.lo)) : undefined,
    hi: withBand ? ci.map((v) => clip(v.hi)) : undefined,
    color: c.color,
    dashed,
  };
}

/**
 * Read the run folders in `folders` (run folders, or sweep folders holding them), write
 * `outDir/report.md` and its SVG figures, and return the Markdown and the paths written.
 */
export function writeReport(folders: readonly string[], outDir: string): { markdown: string; files: string[] } {
  const dirs = findRunFolders(folders);
  const absOut = path.resolve(outDir);
  // Folders below the working directory by their relative path, others by their absolute one.
  const display = (d: string) => {
    const rel = path.relative(process.cwd(), d);
    return rel.startsWith('..') || path.isAbsolute(rel) ? posix(d) : posix(rel) || '.';
  };
  const link = (d: string) => posix(path.relative(absOut, d)) || '.';
  const runs: Run[] = [];
  const skipped: string[] = [];
  for (const d of dirs) {
    try {
      runs.push(loadRun(d));
    } catch (e) {
      skipped.push(`${display(d)}: ${(e as Error).message}`);
    }
  }
  if (runs.length === 0) throw new MtcError(`no readable run folder in ${folders.join(', ')}${skipped.length ? ` (${skipped.join('; ')})` : ''}`);
  if (fs.existsSync(absOut) && !fs.statSync(absOut).isDirectory()) throw new MtcError(`-o ${outDir}: a file of that name is in the way; give a folder for the report`);
  const built = buildReport(runs, display, link);
  let markdown = built.markdown;
  if (skipped.length > 0) markdown += `\n## Skipped folders\n\n${skipped.map((s) => `- ${cell(s)}`).join('\n')}\n`;
  makeDirs(absOut);
  const files: string[] = [];
  for (const f of built.figures) {
    const p = path.join(outDir, f.name);
    fs.writeFileSync(p, f.svg);
    files.push(p);
  }
  const mdPath = path.join(outDir, 'report.md');
  fs.writeFileSync(mdPath, markdown);
  return { markdown, files: [mdPath, ...files] };
}
