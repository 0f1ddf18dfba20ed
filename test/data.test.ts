import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MtcError } from '../compiler/diagnostics.ts';
import { gpt2Bytes } from '../runtime/tokenizer.ts';
import {
  WindowSampler,
  decodeBytes,
  defaultCorpus,
  encodeBytes,
  getTokenizer,
  loadCorpus,
  loadText,
  type Batch,
  type Encoded,
} from '../runtime/data.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const gsm8k = path.resolve(repoRoot, '../shared/data/gsm8k/test.jsonl');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-data-test-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

function write(name: string, content: string | Uint8Array): string {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, content);
  return p;
}

/** Asserts that fn throws an MtcError with exactly this message (and this source line, if given). */
function throwsMtc(fn: () => unknown, message: string, loc?: { file: string; line: number }): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof MtcError, `expected MtcError, got ${String(e)}`);
    assert.equal(e.message, message);
    if (loc) assert.deepEqual(e.diagnostics[0].loc, { file: loc.file, line: loc.line, col: 1 });
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// loadText

test('loadText reads plain UTF-8 text as is', () => {
  const p = write('plain.txt', 'héllo\nwörld\n');
  assert.equal(loadText(p), 'héllo\nwörld\n');
});

test('loadText joins JSONL string fields with \\n and records with \\n\\n', () => {
  const p = write(
    'qa.jsonl',
    '{"question": "What is 2+2?", "id": 7, "answer": "It is 4.\\n#### 4"}\n\n{"text": "second", "tags": ["x"]}\r\n',
  );
  assert.equal(loadText(p), 'What is 2+2?\nIt is 4.\n#### 4\n\nsecond');
});

test('loadText on the real GSM8K test split', { skip: !fs.existsSync(gsm8k) && `${gsm8k} not found` }, () => {
  const text = loadText(gsm8k);
  assert.ok(
    text.startsWith(
      'Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her friends every day with four.',
    ),
  );
  assert.ok(text.includes('How much in dollars does she make every day at the farmers\' market?\nJanet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.'));
  assert.ok(text.includes('#### 18\n\nA robe takes 2 bolts of blue fiber'));
  // 1319 records of {question, answer}: each is question + "\n" + answer, with "\n\n" between.
  const records = fs.readFileSync(gsm8k, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { question: string; answer: string });
  assert.equal(records.length, 1319);
  const expected = records.reduce((n, r) => n + r.question.length + 1 + r.answer.length, 0) + 2 * (records.length - 1);
  assert.equal(text.length, expected);
  assert.match(text, /#### \d+$/);
});

test('loadText errors name the file', () => {
  const missing = path.join(tmp, 'missing.txt');
  throwsMtc(() => loadText(missing), `data file ${missing} does not exist`);
  throwsMtc(() => loadText(tmp), `data file ${tmp} is a directory, not a file`);
  const empty = write('empty.txt', '');
  throwsMtc(() => loadText(empty), `data file ${empty} is empty`);
  const bin = write('weights.bin', new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x00, 0x01]));
  throwsMtc(() => loadText(bin), `data file ${bin} looks binary (it contains NUL bytes); mtc trains on UTF-8 text`);
  const latin1 = write('latin1.txt', new Uint8Array([0x63, 0x61, 0x66, 0xe9, 0x0a])); // "café" in Latin-1
  throwsMtc(() => loadText(latin1), `data file ${latin1} is not valid UTF-8 text`);
});

test('loadText JSONL errors point at the line', () => {
  const notJson = write('bad.jsonl', '{"a": "ok"}\n{"a": "unterminated\n');
  throwsMtc(
    () => loadText(notJson),
    'this JSONL line is not valid JSON (JSONL wants one JSON object per line)',
    { file: notJson, line: 2 },
  );
  const array = write('array.jsonl', '\n["a", "b"]\n');
  throwsMtc(
    () => loadText(array),
    'this JSONL line holds an array, not an object (JSONL wants one JSON object per line)',
    { file: array, line: 2 },
  );
  const str = write('string.jsonl', '"just text"\n');
  throwsMtc(
    () => loadText(str),
    'this JSONL line holds a string, not an object (JSONL wants one JSON object per line)',
    { file: str, line: 1 },
  );
  const tokens = write('tokens.jsonl', '{"text": "ok"}\n{"tokens": [1, 2, 3], "n": 3}\n');
  throwsMtc(
    () => loadText(tokens),
    'this JSONL record has no string fields (mtc trains on the text in string fields)',
    { file: tokens, line: 2 },
  );
  const blank = write('blank.jsonl', '\n  \n');
  throwsMtc(() => loadText(blank), `data file ${blank} holds no JSONL records`);
});

// ---------------------------------------------------------------------------------------------
// Tokens and the corpus

test('encodeBytes is UTF-8, one token per byte', () => {
  assert.deepEqual([...encodeBytes('aé€')], [0x61, 0xc3, 0xa9, 0xe2, 0x82, 0xac]);
  assert.equal(decodeBytes(encodeBytes('aé€')), 'aé€');
});

test('the default corpus is megabytes of English, in a fixed order', () => {
  const text = defaultCorpus();
  const bytes = encodeBytes(text);
  assert.ok(bytes.length > 10_000_000, `default corpus holds ${bytes.length} bytes`);
  let ascii = 0;
  for (let i = 0; i < bytes.length; i++) if (bytes[i] < 128) ascii++;
  assert.ok(ascii / bytes.length > 0.999, `ASCII fraction ${ascii / bytes.length}`);
  // Oldest first: Washington's 1790 address opens it.
  assert.ok(text.startsWith('Fellow-Citizens of the Senate and House of Representatives:'));
  const words = text.split(/\s+/);
  const the = words.filter((w) => w === 'the').length;
  assert.ok(the / words.length > 0.04, 'as English as "the" is common');
  assert.equal(defaultCorpus(), text);
});

test('loadCorpus holds out the last valFraction of the bytes', () => {
  const content = 'abcdefghij'.repeat(100); // 1000 bytes
  const p = write('corpus.txt', content);
  const c = loadCorpus({ data: p, valFraction: 0.1 });
  assert.equal(c.tokenizer.name, 'bytes');
  assert.equal(c.train.tokens.length, 900);
  assert.equal(c.val.tokens.length, 100);
  assert.ok(c.train.bytes.every((b) => b === 1) && c.val.bytes.length === 100 && c.val.bytes.every((b) => b === 1));
  assert.equal(decodeBytes(c.train.tokens) + decodeBytes(c.val.tokens), content);
  assert.equal(c.trainSource, `the first 90% of ${p}`);
  assert.equal(c.valSource, `the last 10% of ${p}`);

  const v = write('val.txt', 'held out');
  const withVal = loadCorpus({ data: p, val: v, valFraction: 0.1 });
  assert.equal(withVal.train.tokens.length, 1000);
  assert.equal(decodeBytes(withVal.val.tokens), 'held out');
  assert.equal(withVal.valSource, v);

  throwsMtc(() => loadCorpus({ data: p, valFraction: 0 }), 'the validation fraction must be between 0 and 1 (exclusive), got 0');
});

test('loadCorpus with the gpt2 tokenizer splits at a token boundary by bytes', () => {
  const content = 'Janet\u2019s ducks lay 16 eggs per day. Ünïcödé 中文 🤗 text.\n\n'.repeat(20);
  const total = Buffer.byteLength(content);
  const p = write('gpt2.txt', content);
  const gpt2 = getTokenizer('gpt2');
  const c = loadCorpus({ data: p, valFraction: 0.1, tokenizer: 'gpt2' });
  assert.equal(c.tokenizer, gpt2);
  const all = gpt2.encode(content);
  assert.deepEqual([...c.train.tokens, ...c.val.tokens], [...all.tokens], 'the split of the whole encoding');
  assert.equal(gpt2.decode(c.train.tokens) + gpt2.decode(c.val.tokens), content);
  const sum = (e: Encoded) => e.bytes.reduce((a, b) => a + b, 0);
  assert.equal(sum(c.train) + sum(c.val), total);
  // the val split starts at the first token boundary at or after the byte cut
  const cutByte = total - Math.round(total * 0.1);
  assert.ok(sum(c.train) >= cutByte && sum(c.train) - c.train.bytes[c.train.bytes.length - 1] < cutByte);
  assert.equal(c.valSource, `the last 10% of ${p}`);

  const v = write('gpt2-val.txt', 'held out 🤗');
  const withVal = loadCorpus({ data: p, val: v, valFraction: 0.1, tokenizer: 'gpt2' });
  assert.deepEqual(withVal.train, all);
  assert.deepEqual(withVal.val, gpt2.encode('held out 🤗'));
  assert.equal(sum(withVal.val), Buffer.byteLength('held out 🤗'));

  throwsMtc(() => loadCorpus({ data: p, valFraction: 0.1, tokenizer: 'bpe' }), "unknown tokenizer 'bpe'; known: bytes, gpt2");
  assert.deepEqual(loadCorpus({ data: p, valFraction: 0.1, tokenizer: 'bytes' }), loadCorpus({ data: p, valFraction: 0.1 }));
});

test('gpt2 on the real GSM8K test split: bytes per token', { skip: !fs.existsSync(gsm8k) && `${gsm8k} not found` }, () => {
  const text = loadText(gsm8k);
  const e = getTokenizer('gpt2').encode(text);
  const bytes = e.bytes.reduce((a, b) => a + b, 0);
  assert.equal(bytes, Buffer.byteLength(text));
  const perToken = bytes / e.tokens.length;
  assert.ok(perToken > 3.3 && perToken < 3.5, `${perToken} bytes per token`); // measured 3.40
  assert.equal(getTokenizer('gpt2').decode(e.tokens), text);
});

test('loadCorpus defaults to the State of the Union corpus', () => {
  const a = loadCorpus({ valFraction: 0.05 });
  const b = loadCorpus({ data: 'sotu', valFraction: 0.05 });
  assert.deepEqual(a.val, b.val);
  assert.equal(a.val.tokens.length, Math.round((a.train.tokens.length + a.val.tokens.length) * 0.05));
  assert.equal(a.valSource, 'the last 5% of the default corpus (State of the Union addresses)');
});

// ---------------------------------------------------------------------------------------------
// Windows

/** The stream 0, 1, 2, ... (mod 256). */
const iota = (n: number) => Uint8Array.from({ length: n }, (_, i) => i % 256);

/** A stream whose window w (of `stride` tokens) is all w: rows name their window. */
function labelled(windows: number, stride: number): Uint8Array {
  return Uint8Array.from({ length: windows * stride }, (_, i) => Math.floor(i / stride));
}
const windowIds = (b: Batch, batch: number, ctx: number) => Array.from({ length: batch }, (_, r) => b.tokens[r * ctx]);

test('windows are non-overlapping ctx+1 spans from the first token; targets are shifted by one', () => {
  // 23 tokens, ctx 4: windows [0..5), [5..10), [10..15), [15..20); the tail 20..22 is unused.
  const s = new WindowSampler(iota(23), 4, 2, 0, 'iota');
  assert.equal(s.numWindows, 4);
  const batches = s.evalBatches(10);
  assert.equal(batches.length, 2);
  assert.deepEqual([...batches[0].tokens], [0, 1, 2, 3, 5, 6, 7, 8]);
  assert.deepEqual([...batches[0].targets], [1, 2, 3, 4, 6, 7, 8, 9]);
  assert.deepEqual([...batches[1].tokens], [10, 11, 12, 13, 15, 16, 17, 18]);
  assert.deepEqual([...batches[1].targets], [11, 12, 13, 14, 16, 17, 18, 19]);
  assert.equal(s.evalBatches(1).length, 1);
  // Training batches are windows too: targets[i] = tokens[i] + 1 inside every row.
  const b = s.batchAt(3);
  for (let r = 0; r < 2; r++) {
    assert.equal(b.tokens[r * 4] % 5, 0, 'rows start on a window boundary');
    for (let j = 0; j < 4; j++) assert.equal(b.targets[r * 4 + j], b.tokens[r * 4 + j] + 1);
  }
});

test('a split shorter than one window is an error naming it', () => {
  throwsMtc(() => new WindowSampler(iota(4), 4, 2, 0, 'tiny.txt'), 'tiny.txt holds 4 tokens, fewer than one window of ctx+1 = 5');
  const s = new WindowSampler(iota(10), 4, 3, 0, 'small.txt');
  throwsMtc(() => s.evalBatches(1), 'small.txt holds 2 windows of ctx+1 = 5 tokens, fewer than one evaluation batch of 3');
  // micro-batches of 1 of a batch of 3: the whole batch decides what fits, not the micro-batch
  throwsMtc(() => new WindowSampler(iota(10), 4, 1, 0, 'small.txt').evalBatches(1, 3), 'small.txt holds 2 windows of ctx+1 = 5 tokens, fewer than one evaluation batch of 3');
});

test('the evaluation set in micro-batches holds the windows of the whole batches, whatever their size', () => {
  // 11 windows of 5 tokens; eval_batches 4 of a batch of 4 fits 2 whole batches: windows 0..7
  const whole = new WindowSampler(iota(55), 4, 4, 0, 'v').evalBatches(4);
  for (const m of [1, 2, 4]) {
    const micro = new WindowSampler(iota(55), 4, m, 0, 'v').evalBatches(4, 4);
    assert.equal(micro.length, 8 / m);
    assert.deepEqual(micro.flatMap((b) => [...b.tokens]), whole.flatMap((b) => [...b.tokens]), `micro-batches of ${m}`);
  }
});

test('each epoch visits every window once, in an order that depends on seed and epoch', () => {
  const ctx = 3;
  const n = 10;
  const batch = 4; // does not divide n: step 2 straddles epochs 0 and 1
  const s = new WindowSampler(labelled(n, ctx + 1), ctx, batch, 42, 'labelled');
  const seq = Array.from({ length: 10 }, (_, step) => windowIds(s.batchAt(step), batch, ctx)).flat();
  const epochs = [0, 1, 2, 3].map((e) => seq.slice(e * n, (e + 1) * n));
  for (const e of epochs) assert.deepEqual([...e].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.notDeepEqual(epochs[0], epochs[1]);
  assert.notDeepEqual(epochs[0], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);

  const other = new WindowSampler(labelled(n, ctx + 1), ctx, batch, 43, 'labelled');
  const otherSeq = Array.from({ length: 10 }, (_, step) => windowIds(other.batchAt(step), batch, ctx)).flat();
  assert.notDeepEqual(otherSeq, seq);
});

test('batchAt is a pure function of (seed, step): a resumed run sees the same data', () => {
  const stream = encodeBytes('the quick brown fox jumps over the lazy dog. '.repeat(40));
  const a = new WindowSampler(stream, 16, 8, 7, 'fox');
  const first = Array.from({ length: 12 }, (_, step) => a.batchAt(step));
  // A fresh sampler that starts at step 9 (a resume), then goes back: identical batches.
  const b = new WindowSampler(stream, 16, 8, 7, 'fox');
  for (const step of [9, 10, 11, 0, 5]) {
    assert.deepEqual(b.batchAt(step), first[step]);
  }
  assert.deepEqual(a.batchAt(4), first[4]);
});

test('every batch knows the bytes its targets cover', () => {
  // byte tokens: one byte per target
  const s = new WindowSampler(iota(23), 4, 2, 0, 'iota');
  for (const b of [...s.evalBatches(2), s.batchAt(0), s.batchAt(5)]) assert.equal(b.bytes, 2 * 4);
  assert.equal(s.batchOf([0, 1, 2]).bytes, 12);
  assert.equal(s.targetBytes([3]), 4);

  // gpt2 tokens: the sum of the targets' byte counts (the first token of a window is no target)
  const text = 'The quick brown fox 🦊 jumps over the lazy dog; 中文 text, naïve café. '.repeat(30);
  const enc = getTokenizer('gpt2').encode(text);
  const ctx = 8;
  const g = new WindowSampler(enc, ctx, 3, 5, 'fox');
  assert.equal(g.numWindows, Math.floor(enc.tokens.length / (ctx + 1)));
  const windowBytes = (w: number) => enc.bytes.subarray(w * (ctx + 1) + 1, (w + 1) * (ctx + 1)).reduce((a, b) => a + b, 0);
  let covered = 0;
  for (let w = 0; w < g.numWindows; w++) {
    assert.equal(g.targetBytes([w]), windowBytes(w));
    covered += windowBytes(w);
  }
  assert.ok(covered > g.numWindows * ctx * 2, 'gpt2 targets cover several bytes each');
  // a token's byte count is a function of its id: the batch's bytes are its targets' bytes
  for (let step = 0; step < 20; step++) {
    const b = g.batchAt(step);
    assert.equal(b.bytes, gpt2Bytes(b.targets).length);
  }
  const evalBytes = g.evalBatches(100).reduce((a, b) => a + b.bytes, 0);
  assert.equal(evalBytes, g.targetBytes([...Array(Math.floor(g.numWindows / 3) * 3).keys()]));

  // determinism holds for any stream: a fresh sampler gives identical batches, bytes included
  const again = new WindowSampler(getTokenizer('gpt2').encode(text), ctx, 3, 5, 'fox');
  for (const step of [7, 0, 3]) assert.deepEqual(again.batchAt(step), g.batchAt(step));

  assert.throws(() => new WindowSampler({ tokens: enc.tokens, bytes: enc.bytes.subarray(1) }, ctx, 3, 5, 'bad'), /tokens but/);
});
