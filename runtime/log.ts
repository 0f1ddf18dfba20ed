// Training progress: metrics.jsonl in the run folder (one JSON object per line, written
// synchronously so a killed run keeps every record it logged) and a live view on stderr: a
// progress bar on a terminal, one plain line per record otherwise (CI, pipes, files).
import * as fs from 'node:fs';
import * as path from 'node:path';
import cliProgress from 'cli-progress';
import { makeDirs } from '../compiler/files.ts';

export type Extra = Record<string, unknown>;

/** A process killed mid-write leaves a line without its end: cut it, so appended records stay one per line. */
function dropCutLine(file: string): void {
  if (!fs.existsSync(file)) return;
  const text = fs.readFileSync(file, 'utf8');
  if (text.length > 0 && !text.endsWith('\n')) fs.truncateSync(file, Buffer.byteLength(text.slice(0, text.lastIndexOf('\n') + 1)));
}

/**
 * The elapsed_s of the last record at or before `step` in a metrics.jsonl (records past it
 * were logged after the checkpoint a resume starts from); 0 when there is none.
 */
function elapsedAt(file: string, step: number): number {
  let at = 0;
  if (!fs.existsSync(file)) return at;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    try {
      const r = JSON.parse(line) as { step?: unknown; elapsed_s?: unknown };
      if (typeof r.step === 'number' && r.step <= step && typeof r.elapsed_s === 'number') at = r.elapsed_s;
    } catch {
      // a line cut off by a killed process
    }
  }
  return at;
}

export class RunLog {
  private fd: number | undefined;
  private multi: cliProgress.MultiBar | undefined;
  private bar: cliProgress.SingleBar | undefined;
  private readonly t0 = performance.now();
  /** Reference point for tokens/s: the last logged step and when it was logged. */
  private mark: { step: number; time: number };
  /** Where the pace for the ETA is measured from: the first training record (see etaSeconds). */
  private paceFrom: { step: number; time: number } | undefined;
  private valBpb: number | undefined;
  /** Seconds the run had trained before this process: a resumed run's elapsed_s continues. */
  private readonly before: number = 0;

  /**
   * @param runDir folder for metrics.jsonl (created if missing; appended to on resume), or
   *   undefined to write no file
   * @param totalSteps the step the run ends at
   * @param tokensPerStep tokens in one training step (batch × ctx)
   * @param startStep the step this process starts from (non-zero when resuming)
   */
  constructor(
    runDir: string | undefined,
    private readonly totalSteps: number,
    private readonly tokensPerStep: number,
    private readonly startStep = 0,
  ) {
    this.mark = { step: startStep, time: this.t0 };
    if (runDir !== undefined) {
      makeDirs(runDir);
      const file = path.join(runDir, 'metrics.jsonl');
      if (startStep > 0) this.before = elapsedAt(file, startStep);
      dropCutLine(file);
      this.fd = fs.openSync(file, 'a');
    }
    if (process.stderr.isTTY) {
      this.multi = new cliProgress.MultiBar(
        {
          stream: process.stderr,
          format: 'step {value}/{total} {bar} loss {loss} | val bpb {bpb} | {tps} tok/s | eta {etaStr}',
          barsize: 24,
          hideCursor: false, // a hidden cursor would stay hidden after Ctrl-C
          clearOnComplete: false,
          etaBuffer: 1,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar = this.multi.create(totalSteps, startStep, { loss: '-', bpb: '-', tps: '-', etaStr: '-' });
    }
  }

  /** A training record; `step` counts the steps done so far (1 after the first step). */
  train(step: number, loss: number, lr: number, extra: Extra = {}): void {
    const now = performance.now();
    const dt = (now - this.mark.time) / 1000;
    const tps = dt > 0 ? ((step - this.mark.step) * this.tokensPerStep) / dt : 0;
    this.mark = { step, time: now };
    this.write({ step, loss, lr, tokens_per_s: Math.round(tps), elapsed_s: this.elapsed(now), ...extra });
    const eta = fmtDuration(this.etaSeconds(step, now));
    this.paceFrom ??= { step, time: now };
    if (this.bar) {
      this.bar.update(step, { loss: fmt(loss, 4), bpb: this.valBpb === undefined ? '-' : fmt(this.valBpb, 4), tps: Math.round(tps), etaStr: eta });
    } else {
      const lrText = lr.toExponential(1).replace(/e([+-])(\d)$/, 'e$10$2'); // 2.9e-3 -> 2.9e-03
      this.line(`step ${step}/${this.totalSteps}  loss ${fmt(loss, 4)}  lr ${lrText}  ${Math.round(tps)} tok/s  eta ${eta}`);
    }
  }

  /** An evaluation record: val loss in nats per token; bits per byte from `extra.val_bpb` (byte tokens: loss / ln 2). */
  eval(step: number, valLoss: number, extra: Extra = {}): void {
    const now = performance.now();
    this.valBpb = typeof extra.val_bpb === 'number' ? extra.val_bpb : valLoss / Math.LN2;
    this.write({ step, val_loss: valLoss, val_bpb: this.valBpb, elapsed_s: this.elapsed(now), ...extra });
    const extras = Object.entries(extra)
      .filter(([k]) => k !== 'val_bpb')
      .map(([k, v]) => `  ${k} ${typeof v === 'number' ? fmt(v, 4) : Array.isArray(v) ? v.map((x) => (typeof x === 'number' ? fmt(x, 3) : String(x))).join(' ') : JSON.stringify(v)}`)
      .join('');
    this.line(`eval ${step}/${this.totalSteps}  val loss ${fmt(valLoss, 4)}  val bpb ${fmt(this.valBpb, 4)}${extras}`);
    this.bar?.update({ bpb: fmt(this.valBpb, 4) });
    // Evaluation time is not training time: measure tokens/s from here on.
    this.mark = { step, time: performance.now() };
  }

  /** A line of text on stderr (above the bar on a terminal). */
  line(text: string): void {
    if (this.multi) this.multi.log(text + '\n');
    else process.stderr.write(text + '\n');
  }

  /** Stop the bar and close the file. Safe to call twice. */
  close(): void {
    this.multi?.update(); // flushes lines logged since the last redraw; stop() drops them
    this.multi?.stop();
    this.multi = this.bar = undefined;
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }

  private write(record: Extra): void {
    if (this.fd !== undefined) fs.writeSync(this.fd, JSON.stringify(record) + '\n');
  }

  private elapsed(now: number): number {
    return Math.round(this.before * 100 + (now - this.t0) / 10) / 100;
  }

  /**
   * Remaining time at the pace since the first training record (evaluations included); unknown
   * ("?") until then. The first steps pay for compiling the kernels once (a minute or more on
   * a new machine under lavapipe), which is not the pace of the rest.
   */
  etaSeconds(step: number, now: number): number {
    const from = this.paceFrom;
    const done = from ? step - from.step : 0;
    return from && done > 0 ? (((now - from.time) / 1000) * (this.totalSteps - step)) / done : NaN;
  }
}

/** 4 significant digits at most, as a short string ("2.913", "0.0412"); non-finite as is. */
function fmt(x: number, digits: number): string {
  return Number.isFinite(x) ? String(+x.toPrecision(digits)) : String(x);
}

/** 72 -> "1m12s", 3700 -> "1h01m", NaN -> "?" */
export function fmtDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  s = Math.round(s);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
