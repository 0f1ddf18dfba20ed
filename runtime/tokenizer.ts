// Tokenizers: text to token ids and back, with the exact number of UTF-8 bytes of the text each
// token covers (what bits per byte divides by).
//
//   bytes  token = one UTF-8 byte, vocabulary 256.
//   gpt2   GPT-2's byte-level BPE (OpenAI's r50k_base ranks, vocabulary 50257: 50256 merges and
//          <|endoftext|>), encoded by the gpt-tokenizer package. Every GPT-2 token is a byte
//          string (one can hold part of a multi-byte character), so a token's byte count comes
//          from its bytes in the package's rank table, never from decoding it to a JS string.
//          "<|endoftext|>" in the data is ordinary text: encode never emits the special token.
import { createRequire } from 'node:module';
import { MtcError } from '../compiler/diagnostics.ts';
import { TOKENIZERS, type TokenizerName } from '../compiler/config.ts';

export { TOKENIZERS, type TokenizerName };

/** A text as tokens. */
export interface Encoded {
  /** token ids */
  tokens: Int32Array;
  /** per token, the number of bytes of the text's UTF-8 it covers; they sum to the UTF-8 length */
  bytes: Uint8Array;
}

export interface Tokenizer {
  readonly name: TokenizerName;
  /** token ids are 0 .. vocab-1: the model's logits need at least this many classes */
  readonly vocab: number;
  encode(text: string): Encoded;
  /** Tokens back to text; byte sequences that are not valid UTF-8 become U+FFFD. */
  decode(tokens: ArrayLike<number>): string;
}

/** The tokenizer of a name (a train section's `tokenizer` setting). Tables load on first use. */
export function getTokenizer(name: string): Tokenizer {
  if (name === 'bytes') return bytesTokenizer;
  if (name === 'gpt2') return gpt2Tokenizer;
  throw new MtcError(`unknown tokenizer '${name}'; known: ${TOKENIZERS.join(', ')}`);
}

/**
 * Fails when the model's logits (their last dimension) have fewer classes than the tokenizer
 * has tokens. More classes are fine: the extra ones are never a target.
 */
export function checkModelVocab(logitsVocab: number, tokenizer: string | Tokenizer): void {
  const t = typeof tokenizer === 'string' ? getTokenizer(tokenizer) : tokenizer;
  if (logitsVocab >= t.vocab) return;
  const what = t.name === 'bytes' ? 'byte tokens take 256 values' : `${t.name} tokens take ${t.vocab} values`;
  throw new MtcError(`the model's logits have ${logitsVocab} classes, but ${what}: set vocab to at least ${t.vocab}`);
}

/**
 * Bits per byte of a mean loss: `lossNatsPerToken` nats over `tokens` predicted tokens that
 * cover `bytes` bytes of UTF-8 text is loss·tokens/bytes/ln 2 bits per byte. With byte tokens
 * (tokens = bytes) it is exactly loss / ln 2.
 */
export function bitsPerByte(lossNatsPerToken: number, tokens: number, bytes: number): number {
  if (!(bytes > 0) || !(tokens > 0)) throw new Error(`bitsPerByte needs positive token and byte counts, got ${tokens} tokens, ${bytes} bytes`);
  return (tokens === bytes ? lossNatsPerToken : (lossNatsPerToken * tokens) / bytes) / Math.LN2;
}

function checkIds(tokens: ArrayLike<number>, t: Tokenizer): void {
  for (let i = 0; i < tokens.length; i++) {
    const id = tokens[i];
    if (!(Number.isInteger(id) && id >= 0 && id < t.vocab)) {
      throw new MtcError(`token ${id} is outside the ${t.name} vocabulary (ids 0 to ${t.vocab - 1})`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Bytes

export const BYTE_VOCAB = 256;

export function encodeBytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** Tokens back to text; bytes that do not form valid UTF-8 become U+FFFD. */
export function decodeBytes(tokens: ArrayLike<number>): string {
  return new TextDecoder('utf-8').decode(Uint8Array.from(tokens));
}

const bytesTokenizer: Tokenizer = {
  name: 'bytes',
  vocab: BYTE_VOCAB,
  encode(text) {
    const b = encodeBytes(text);
    const tokens = new Int32Array(b.length);
    tokens.set(b);
    return { tokens, bytes: new Uint8Array(b.length).fill(1) };
  },
  decode(tokens) {
    checkIds(tokens, bytesTokenizer);
    return decodeBytes(tokens);
  },
};

// ---------------------------------------------------------------------------------------------
// GPT-2 BPE

export const GPT2_VOCAB = 50257;
const END_OF_TEXT = '<|endoftext|>';

/**
 * Pieces of the GPT-2 pre-tokenizer longer than this many UTF-16 code units are encoded in
 * slices of this length. The package's BPE merge is quadratic in a piece's length and its
 * encode overflows the stack on a piece of ~100k tokens; natural text has no piece anywhere
 * near this long (the longest in the 10.8 MB default corpus is 23), so the result is exact
 * GPT-2 BPE for every text without a run of 2048+ letters, digits, symbols or spaces.
 */
export const MAX_PIECE = 2048;
/** Text with a long run is encoded in chunks of about this many code units, cut between pieces. */
const CHUNK = 1 << 16;

/** GPT-2's pre-tokenizer (the pattern of OpenAI's gpt2/r50k_base encodings). */
const GPT2_PIECE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

type Gpt2Encoding = typeof import('gpt-tokenizer/encoding/gpt2');
interface Gpt2Tables {
  encode: (text: string) => number[];
  /** the bytes of all tokens, token id order: token t is flat[offsets[t] .. offsets[t+1]) */
  flat: Uint8Array;
  offsets: Uint32Array;
  /** per token id, its byte count */
  lengths: Uint8Array;
}
let gpt2Tables: Gpt2Tables | undefined;

/** Loads gpt-tokenizer (~0.15 s) and the byte strings of its 50257 tokens, once. */
function gpt2(): Gpt2Tables {
  if (gpt2Tables) return gpt2Tables;
  const require = createRequire(import.meta.url);
  let enc: Gpt2Encoding;
  let ranks: (string | number[])[];
  try {
    enc = require('gpt-tokenizer/encoding/gpt2') as Gpt2Encoding;
    ranks = (require('gpt-tokenizer/bpeRanks/r50k_base') as { default: (string | number[])[] }).default;
  } catch (e) {
    throw new MtcError(`the gpt2 tokenizer needs the gpt-tokenizer package (npm install): ${(e as Error).message}`);
  }
  if (enc.vocabularySize !== GPT2_VOCAB || ranks.length !== GPT2_VOCAB - 1) {
    throw new MtcError(`the installed gpt-tokenizer has ${enc.vocabularySize} gpt2 tokens (${ranks.length} merges), not GPT-2's ${GPT2_VOCAB}`);
  }
  const te = new TextEncoder();
  const tokenBytes = new Array<Uint8Array>(GPT2_VOCAB);
  const lengths = new Uint8Array(GPT2_VOCAB);
  const offsets = new Uint32Array(GPT2_VOCAB + 1);
  for (let id = 0; id < GPT2_VOCAB; id++) {
    const r = id === GPT2_VOCAB - 1 ? END_OF_TEXT : ranks[id];
    if (r === undefined) throw new MtcError(`the installed gpt-tokenizer has no bytes for gpt2 token ${id}`);
    const b = typeof r === 'string' ? te.encode(r) : Uint8Array.from(r);
    if (b.length === 0 || b.length > 255) throw new MtcError(`gpt2 token ${id} has ${b.length} bytes`);
    tokenBytes[id] = b;
    lengths[id] = b.length;
    offsets[id + 1] = offsets[id] + b.length;
  }
  const flat = new Uint8Array(offsets[GPT2_VOCAB]);
  tokenBytes.forEach((b, id) => flat.set(b, offsets[id]));
  // No special tokens: "<|endoftext|>" inside the data is encoded as the text it is.
  const noSpecial = { disallowedSpecial: new Set<string>() };
  gpt2Tables = { encode: (text) => enc.encode(text, noSpecial), flat, offsets, lengths };
  return gpt2Tables;
}

/** JavaScript's `\s` (what the pre-tokenizer's \s and \S mean), on one UTF-16 code unit. */
export function isSpaceCode(c: number): boolean {
  return (
    (c >= 0x09 && c <= 0x0d) || c === 0x20 || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff
  );
}

/**
 * Whether the text has a run of `max` code units that are all whitespace or all not: only then
 * can a pre-tokenizer piece be longer than `max` (a piece is one such run, plus maybe a space).
 */
function hasLongRun(text: string, max: number): boolean {
  let run = 0;
  let prev = false;
  for (let i = 0; i < text.length; i++) {
    const sp = isSpaceCode(text.charCodeAt(i));
    run = sp === prev ? run + 1 : 1;
    prev = sp;
    if (run >= max) return true;
  }
  return false;
}

/**
 * The text cut into segments whose GPT-2 encodings, concatenated, are the encoding of the text:
 * runs of whole pre-tokenizer pieces of about `chunk` code units, except that a piece longer
 * than `maxPiece` is cut into slices of at most `maxPiece` (never inside a surrogate pair),
 * which is where the result can differ from unbounded BPE.
 *
 * BPE never merges across pieces, and a segment pre-tokenizes into the same pieces as the
 * whole text when it ends after a piece whose last character is not whitespace: only
 * `\s+(?!\S)` looks past a piece, and only a run of whitespace reaching the segment's end
 * can match differently there ("   \n\n\n" + "\n" before "many" would become one piece).
 * A single whitespace piece on its own is also itself.
 */
export function gpt2Segments(text: string, maxPiece = MAX_PIECE, chunk = CHUNK): string[] {
  if (!(Number.isInteger(maxPiece) && maxPiece >= 2)) throw new Error(`gpt2Segments: maxPiece must be an integer >= 2, got ${maxPiece}`);
  const out: string[] = [];
  let start = 0; // start of the pending segment
  let safe = 0; // the last safe cut at or after start: after a piece that ends in non-whitespace
  const spaceEnds: number[] = []; // ends of the whitespace pieces after `safe`
  const re = new RegExp(GPT2_PIECE.source, GPT2_PIECE.flags);
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const end = m.index + m[0].length;
    if (m[0].length > maxPiece) {
      // The pending text up to the last safe cut, then each whitespace piece after it alone.
      if (safe > start) out.push(text.slice(start, safe));
      let at = safe;
      for (const e of spaceEnds) {
        out.push(text.slice(at, e));
        at = e;
      }
      for (let a = m.index; a < end; ) {
        let b = Math.min(a + maxPiece, end);
        const c = text.charCodeAt(b - 1);
        if (b < end && c >= 0xd800 && c <= 0xdbff) b--; // keep a surrogate pair together
        out.push(text.slice(a, b));
        a = b;
      }
      start = safe = end;
      spaceEnds.length = 0;
    } else if (isSpaceCode(text.charCodeAt(end - 1))) {
      spaceEnds.push(end);
    } else {
      safe = end;
      spaceEnds.length = 0;
      if (end - start >= chunk) {
        out.push(text.slice(start, end));
        start = end;
      }
    }
  }
  if (start < text.length) out.push(text.slice(start)); // ends where the text ends: safe
  return out;
}

function encodeGpt2(text: string): Encoded {
  const g = gpt2();
  let ids: number[];
  if (!hasLongRun(text, MAX_PIECE)) ids = g.encode(text);
  else {
    ids = [];
    for (const seg of gpt2Segments(text)) for (const id of g.encode(seg)) ids.push(id);
  }
  const tokens = new Int32Array(ids);
  const bytes = new Uint8Array(tokens.length);
  let sum = 0;
  for (let i = 0; i < tokens.length; i++) sum += bytes[i] = g.lengths[tokens[i]];
  const utf8 = Buffer.byteLength(text, 'utf8');
  if (sum !== utf8) throw new Error(`gpt2: the tokens of a text cover ${sum} bytes, but it has ${utf8} (a gpt-tokenizer mismatch)`);
  return { tokens, bytes };
}

/** The bytes of gpt2 tokens, concatenated: the UTF-8 of the text they encode. */
export function gpt2Bytes(tokens: ArrayLike<number>): Uint8Array {
  checkIds(tokens, gpt2Tokenizer);
  const { flat, offsets, lengths } = gpt2();
  let n = 0;
  for (let i = 0; i < tokens.length; i++) n += lengths[tokens[i]];
  const buf = new Uint8Array(n);
  for (let i = 0, o = 0; i < tokens.length; i++) {
    for (let j = offsets[tokens[i]], end = offsets[tokens[i] + 1]; j < end; j++) buf[o++] = flat[j];
  }
  return buf;
}

const gpt2Tokenizer: Tokenizer = {
  name: 'gpt2',
  vocab: GPT2_VOCAB,
  encode: encodeGpt2,
  decode(tokens) {
    return new TextDecoder('utf-8').decode(gpt2Bytes(tokens));
  },
};
