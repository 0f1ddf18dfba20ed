// Tokenizers: bytes and GPT-2 BPE, exact per-token byte counts, chunked encoding, the vocab
// check, bits per byte, and the train section's tokenizer setting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { MtcError } from '../compiler/diagnostics.ts';
import { loadProgram } from '../compiler/program.ts';
import { resolveHypers, resolveTrain } from '../compiler/config.ts';
import {
  GPT2_VOCAB,
  MAX_PIECE,
  bitsPerByte,
  checkModelVocab,
  getTokenizer,
  gpt2Bytes,
  gpt2Segments,
  isSpaceCode,
  type Encoded,
} from '../runtime/tokenizer.ts';
import { tempModel } from './helpers/models.ts';

const utf8 = (s: string) => new TextEncoder().encode(s);
const sum = (a: ArrayLike<number>) => {
  let n = 0;
  for (let i = 0; i < a.length; i++) n += a[i];
  return n;
};

function throwsMtc(fn: () => unknown, message: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof MtcError, `expected MtcError, got ${String(e)}`);
    assert.equal(e.message, message);
    return true;
  });
}

/** A few kB of mixed text: prose, GSM8K-style arithmetic, code, and non-ASCII of every width. */
const SAMPLE = [
  "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?\nNatalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
  "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?\nWeng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
  "Fellow-Citizens of the Senate and House of Representatives: I embrace with great satisfaction the opportunity which now presents itself of congratulating you on the present favorable prospects of our public affairs. It's what we've done, they'll say; I'd rather we'd've... \"Quoted\" — em-dash – en-dash … ellipsis, ‘single’ “double” quotes.",
  'function f(x) {\n\treturn x ** 2 + 3 * x - 1; // tabs\tand  double  spaces\r\n}\n\n\n    indented line\n   \n',
  'Ünïcödé: café, naïve, façade, Straße, Ærøskøbing, Dvořák, İstanbul, ﬁ ligature, e\u0301 (combining acute).',
  'Ελληνικά κείμενα, русский текст, עברית, العربية مع تشكيل: مَرْحَبًا, हिन्दी पाठ, ภาษาไทย.',
  '中文文本：我们今天学习分词。日本語のテキスト、カタカナとひらがな。한국어 문장입니다.',
  'Emoji: 🤗 😀👍🏽 👨‍👩‍👧‍👦 🇺🇸🇫🇷 ❤️ 🧑🏿‍🚀 and math 𝔸𝕓𝕔 ∑∫√∞ ≠ ≤ ≥, music 𝄞, old italic 𐌰𐌱.',
  'Special-looking text <|endoftext|> stays text; so does <|fim_prefix|>. Zero\u200bwidth, NBSP\u00a0here, BOM\ufeffthere, ideographic\u3000space.',
  '   leading spaces, trailing spaces   \n\n\n\nmany newlines\t\t\ttabs 12345678901234567890 numbers 3.14159 -42 1e-9 0xFF',
].join('\n\n');

// ---------------------------------------------------------------------------------------------
// Names

test('getTokenizer knows bytes and gpt2, and names them for an unknown one', () => {
  assert.equal(getTokenizer('bytes').name, 'bytes');
  assert.equal(getTokenizer('bytes').vocab, 256);
  assert.equal(getTokenizer('gpt2').name, 'gpt2');
  assert.equal(getTokenizer('gpt2').vocab, 50257);
  throwsMtc(() => getTokenizer('cl100k_base'), "unknown tokenizer 'cl100k_base'; known: bytes, gpt2");
  throwsMtc(() => getTokenizer('GPT2'), "unknown tokenizer 'GPT2'; known: bytes, gpt2");
});

// ---------------------------------------------------------------------------------------------
// Bytes

test('the bytes tokenizer: one token per UTF-8 byte, each covering one byte', () => {
  const t = getTokenizer('bytes');
  const e = t.encode('aé€');
  assert.ok(e.tokens instanceof Int32Array && e.bytes instanceof Uint8Array);
  assert.deepEqual([...e.tokens], [0x61, 0xc3, 0xa9, 0xe2, 0x82, 0xac]);
  assert.deepEqual([...e.bytes], [1, 1, 1, 1, 1, 1]);
  assert.equal(t.decode(e.tokens), 'aé€');
  const s = t.encode(SAMPLE);
  assert.deepEqual(Uint8Array.from(s.tokens), utf8(SAMPLE));
  assert.equal(sum(s.bytes), utf8(SAMPLE).length);
  assert.equal(t.decode(s.tokens), SAMPLE);
  throwsMtc(() => t.decode([65, 256]), 'token 256 is outside the bytes vocabulary (ids 0 to 255)');
});

// ---------------------------------------------------------------------------------------------
// GPT-2

test('gpt2 encodes as GPT-2 does', () => {
  const t = getTokenizer('gpt2');
  const ids = (s: string) => [...t.encode(s).tokens];
  assert.deepEqual(ids('Hello world'), [15496, 995]);
  assert.deepEqual(ids(' the'), [262]);
  assert.deepEqual(ids('🤗'), [8582, 97, 245]);
  assert.deepEqual(ids(''), []);
  // "<|endoftext|>" in the data is ordinary text, never the special token 50256
  const eot = ids('a <|endoftext|> b');
  assert.ok(!eot.includes(50256));
  assert.equal(t.decode(eot), 'a <|endoftext|> b');
  // the package's own vocabulary size and decoder agree
  const require = createRequire(import.meta.url);
  const pkg = require('gpt-tokenizer/encoding/gpt2') as { vocabularySize: number; decode(t: Iterable<number>): string };
  assert.equal(pkg.vocabularySize, GPT2_VOCAB);
  assert.equal(pkg.decode(t.encode(SAMPLE).tokens), SAMPLE);
});

/** Checks the byte counts against the text itself: per token, and in total. */
function checkBytes(text: string, e: Encoded): void {
  const want = utf8(text);
  assert.ok(e.tokens instanceof Int32Array && e.bytes instanceof Uint8Array);
  assert.equal(e.bytes.length, e.tokens.length);
  assert.equal(sum(e.bytes), want.length, 'the byte counts sum to the UTF-8 length');
  // Token by token: token i's bytes are exactly the next bytes[i] bytes of the text's UTF-8.
  let at = 0;
  for (let i = 0; i < e.tokens.length; i++) {
    const b = gpt2Bytes([e.tokens[i]]);
    assert.equal(b.length, e.bytes[i], `token ${i} (${e.tokens[i]})`);
    assert.ok(b.length >= 1);
    assert.deepEqual(b, want.subarray(at, at + b.length), `token ${i} (${e.tokens[i]}) at byte ${at}`);
    at += b.length;
  }
  assert.equal(at, want.length);
}

test('gpt2 byte counts are exact, also where a token splits a character', () => {
  const t = getTokenizer('gpt2');
  const e = t.encode(SAMPLE);
  checkBytes(SAMPLE, e);
  assert.equal(t.decode(e.tokens), SAMPLE);
  assert.ok(e.tokens.length < utf8(SAMPLE).length / 1.5, `${e.tokens.length} tokens for ${utf8(SAMPLE).length} bytes`);

  // 🤗 is F0 9F A4 97: three tokens covering 2 + 1 + 1 bytes. Decoding one of them alone gives
  // U+FFFD, whose UTF-8 is 3 bytes: a token's string is no way to count its bytes.
  const hug = t.encode('🤗');
  assert.deepEqual([...hug.bytes], [2, 1, 1]);
  assert.equal(t.decode([hug.tokens[1]]), '\ufffd');
  assert.deepEqual(gpt2Bytes(hug.tokens), utf8('🤗'));

  // Across the non-ASCII lines there are such split tokens, and the counts still add up.
  let partial = 0;
  for (let i = 0; i < e.tokens.length; i++) {
    if (utf8(t.decode([e.tokens[i]])).length !== e.bytes[i]) partial++;
  }
  assert.ok(partial > 10, `${partial} tokens hold part of a character`);
  for (const line of SAMPLE.split('\n\n')) checkBytes(line, t.encode(line));
  throwsMtc(() => t.decode([50257]), 'token 50257 is outside the gpt2 vocabulary (ids 0 to 50256)');
  throwsMtc(() => t.decode([-1]), 'token -1 is outside the gpt2 vocabulary (ids 0 to 50256)');
  assert.equal(t.decode([50256]), '<|endoftext|>');
});

test('encoding in segments between pre-tokenizer pieces equals encoding the whole text', () => {
  const t = getTokenizer('gpt2');
  const whole = [...t.encode(SAMPLE).tokens];
  for (const chunk of [1, 7, 100, 1 << 16]) {
    const segs = gpt2Segments(SAMPLE, MAX_PIECE, chunk);
    assert.equal(segs.join(''), SAMPLE);
    if (chunk === 1) assert.ok(segs.length > 300, `${segs.length} pieces`);
    const pieced = segs.flatMap((s) => [...t.encode(s).tokens]);
    assert.deepEqual(pieced, whole, `chunk ${chunk}`);
  }
});

/** Deterministic random strings over characters that exercise every pre-tokenizer rule. */
function randomTexts(count: number, seed: number): string[] {
  const alphabet = [' ', ' ', ' ', '\n', '\n', '\t', '\r', '\u00a0', '\u3000', 'a', 'b', 'Z', 'é', 's', 't', 'll', 've', '1', '2', '.', '!', '-', "'", '中', '😀', '\u0301'];
  let x = seed >>> 0;
  const next = () => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  return Array.from({ length: count }, () => {
    let s = '';
    const n = Math.floor(next() * 60);
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(next() * alphabet.length)];
    return s;
  });
}

const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const piecesOf = (s: string) => [...s.matchAll(GPT2_PATTERN)].map((m) => m[0]);

test('the segments pre-tokenize like the whole text (random texts)', () => {
  // the pattern here is the package's own
  const require = createRequire(import.meta.url);
  const consts = require('gpt-tokenizer/encodingParams/constants') as { R50K_TOKEN_SPLIT_REGEX: RegExp };
  assert.equal(consts.R50K_TOKEN_SPLIT_REGEX.source, GPT2_PATTERN.source);
  const t = getTokenizer('gpt2');
  const pkg = require('gpt-tokenizer/encoding/gpt2') as { encode(s: string): number[] };
  for (const [i, text] of randomTexts(400, 7).entries()) {
    const want = piecesOf(text);
    for (const chunk of [1, 2, 5, 1000]) {
      // No piece sliced: the segments' tokens are the whole text's.
      const segs = gpt2Segments(text, MAX_PIECE, chunk);
      assert.equal(segs.join(''), text);
      assert.deepEqual(segs.flatMap(piecesOf), want, `text ${i} ${JSON.stringify(text)} chunk ${chunk}`);
      if (chunk <= 2) assert.deepEqual(segs.flatMap((s) => [...t.encode(s).tokens]), pkg.encode(text), `text ${i} chunk ${chunk}`);
      // With tiny maxPiece: every piece is kept, or cut into slices that are pieces of their own.
      for (const maxPiece of [2, 3, 5]) {
        const got = gpt2Segments(text, maxPiece, chunk).flatMap(piecesOf);
        let g = 0;
        for (const p of want) {
          if (p.length <= maxPiece) {
            assert.equal(got[g++], p, `text ${i} ${JSON.stringify(text)} chunk ${chunk} maxPiece ${maxPiece}`);
            continue;
          }
          let joined = '';
          while (joined.length < p.length) {
            assert.ok(got[g].length <= maxPiece);
            joined += got[g++];
          }
          assert.equal(joined, p);
        }
        assert.equal(g, got.length);
      }
    }
    assert.deepEqual([...t.encode(text).tokens], pkg.encode(text));
    checkBytes(text, t.encode(text));
  }
});

test('a piece longer than MAX_PIECE is encoded in slices, with exact byte counts', () => {
  const t = getTokenizer('gpt2');
  // 5000 CJK letters without a break: one pre-tokenizer piece (the package alone is quadratic
  // in it, and overflows the stack at ~30k such letters).
  let cjk = '';
  for (let i = 0; i < 5000; i++) cjk += String.fromCharCode(0x4e00 + ((i * 7919) % 3000));
  // A leading space then 3000 emoji: a piece whose slices would end inside a surrogate pair.
  const emoji = ' ' + '😀'.repeat(3000);
  const text = `Before the run. ${cjk} between ${emoji} and after, with a long gap${' '.repeat(3000)}end.`;
  const segs = gpt2Segments(text);
  assert.equal(segs.join(''), text);
  for (const s of segs) {
    const c = s.charCodeAt(s.length - 1);
    assert.ok(!(c >= 0xd800 && c <= 0xdbff), 'no segment ends inside a surrogate pair');
  }
  assert.ok(segs.some((s) => s.length === MAX_PIECE) && segs.every((s) => s.length <= Math.max(MAX_PIECE, 1 << 16)));
  const e = t.encode(text);
  checkBytes(text, e);
  assert.equal(t.decode(e.tokens), text);
  // The text around the run is encoded as on its own.
  const head = [...t.encode('Before the run.').tokens];
  assert.deepEqual([...e.tokens.subarray(0, head.length)], head);

  // A long run without a break that is many short pieces (letters, digits, symbols) takes the
  // segmented path and is still exactly what the package gives for the whole text.
  const mixed = 'x = ' + 'ab12,;'.repeat(1000) + ' done';
  const require = createRequire(import.meta.url);
  const pkg = require('gpt-tokenizer/encoding/gpt2') as { encode(s: string): number[] };
  assert.ok(gpt2Segments(mixed, MAX_PIECE, 64).length > 10);
  assert.deepEqual([...t.encode(mixed).tokens], pkg.encode(mixed));
});

test('isSpaceCode is exactly JavaScript \\s on every UTF-16 code unit', () => {
  for (let c = 0; c <= 0xffff; c++) {
    assert.equal(isSpaceCode(c), /\s/u.test(String.fromCharCode(c)), `U+${c.toString(16)}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Vocab check and bits per byte

test('checkModelVocab: the logits need at least the tokenizer vocabulary', () => {
  checkModelVocab(256, 'bytes');
  checkModelVocab(50257, 'gpt2');
  checkModelVocab(50304, getTokenizer('gpt2')); // padded is fine
  throwsMtc(() => checkModelVocab(255, 'bytes'), "the model's logits have 255 classes, but byte tokens take 256 values: set vocab to at least 256");
  throwsMtc(() => checkModelVocab(256, 'gpt2'), "the model's logits have 256 classes, but gpt2 tokens take 50257 values: set vocab to at least 50257");
  throwsMtc(() => checkModelVocab(50257, 'bpe'), "unknown tokenizer 'bpe'; known: bytes, gpt2");
});

test('bitsPerByte = loss · tokens / bytes / ln 2', () => {
  assert.equal(bitsPerByte(Math.LN2, 10, 10), 1);
  assert.ok(Math.abs(bitsPerByte(2, 100, 400) - 0.5 / Math.LN2) < 1e-15);
  assert.ok(Math.abs(bitsPerByte(3.3, 1000, 3422) - (3.3 * 1000) / 3422 / Math.LN2) < 1e-15);
  // byte tokens: exactly loss / ln 2, bit for bit
  for (const loss of [0.1, 1.2345678, 5.5451774444795625]) assert.equal(bitsPerByte(loss, 12345, 12345), loss / Math.LN2);
  assert.throws(() => bitsPerByte(1, 10, 0));
  assert.throws(() => bitsPerByte(1, 0, 10));
});

// ---------------------------------------------------------------------------------------------
// The train section

const modelWith = (setting: string) => `hyper {
  vocab = 16
}
model M {
  param E: [vocab, 4] = normal(1)
  param W: [4, vocab] = normal(1)
  forward(tokens) {
    return gather(E, tokens) @ W
  }
}
train {
  ctx = 8
  batch = 2
  steps = 1
${setting}}
`;

function trainOf(src: string) {
  const unit = loadProgram(tempModel(src));
  return resolveTrain(unit, resolveHypers(unit, undefined, {}));
}

test('the train section takes tokenizer = "bytes" (the default) or "gpt2"', () => {
  assert.equal(trainOf(modelWith('')).tokenizer, 'bytes');
  assert.equal(trainOf(modelWith('  tokenizer = "bytes"\n')).tokenizer, 'bytes');
  assert.equal(trainOf(modelWith('  tokenizer = "gpt2"\n')).tokenizer, 'gpt2');
  assert.throws(
    () => trainOf(modelWith('  tokenizer = "bpe"\n')),
    (e: unknown) => {
      assert.ok(e instanceof MtcError);
      assert.equal(e.message, "unknown tokenizer 'bpe'; known: bytes, gpt2");
      const loc = e.diagnostics[0].loc!;
      assert.deepEqual([loc.line, loc.col], [15, 3]);
      return true;
    },
  );
});
