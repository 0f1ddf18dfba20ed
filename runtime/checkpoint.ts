// Checkpoints in safetensors (the format PyTorch and the Hugging Face ecosystem read): an
// 8-byte little-endian header length, a JSON header naming each tensor (dtype F32, row-major
// shape, byte offsets into the data), then the data. Model weights are named by their dotted
// .mt path (`blocks.0.attn.q.A`); the AdamW moments go alongside in a second file as
// `m.<path>` and `v.<path>`. __metadata__ holds the model name, the resolved hyperparameters
// (JSON), the step, the seed and a SHA-256 of the data, verified on load.
// Files are written to a temporary name, fsynced and renamed: a crash never leaves a
// half-written checkpoint in place of a good one. The last KEEP steps are kept.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MtcError } from '../compiler/diagnostics.ts';

export const KEEP = 3;

export interface TensorTable {
  names: string[];
  shapes: number[][];
  /** values of each tensor, row-major */
  data: Float32Array[];
}

export function writeSafetensors(file: string, t: TensorTable, meta: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  let offset = 0;
  const hash = createHash('sha256');
  t.names.forEach((name, i) => {
    const bytes = t.data[i].byteLength;
    header[name] = { dtype: 'F32', shape: t.shapes[i], data_offsets: [offset, offset + bytes] };
    hash.update(new Uint8Array(t.data[i].buffer, t.data[i].byteOffset, bytes));
    offset += bytes;
  });
  header.__metadata__ = { ...meta, sha256: hash.digest('hex') };
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, head);
    fs.writeSync(fd, Buffer.from(json));
    for (const d of t.data) fs.writeSync(fd, new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

export interface Loaded {
  meta: Record<string, string>;
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

export function readSafetensors(file: string): Loaded {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch {
    throw new MtcError(`cannot read checkpoint ${file}`);
  }
  const bad = (why: string): never => {
    throw new MtcError(`checkpoint ${file} is damaged: ${why}; an earlier checkpoint of the run (if any) is untouched`);
  };
  if (buf.length < 8) bad('it is shorter than its 8-byte header');
  const n = Number(buf.readBigUInt64LE(0));
  if (n <= 0 || 8 + n > buf.length) bad('the header length is out of range (truncated file?)');
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> & { __metadata__?: Record<string, string> };
  try {
    header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  } catch {
    return bad('its header is not JSON');
  }
  const meta = header.__metadata__ ?? {};
  const data = buf.subarray(8 + n);
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  const hash = createHash('sha256');
  const entries = Object.entries(header).filter(([k]) => k !== '__metadata__') as Array<[string, { dtype: string; shape: number[]; data_offsets: [number, number] }]>;
  entries.sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  for (const [name, t] of entries) {
    const [a, b] = t.data_offsets;
    if (t.dtype !== 'F32') bad(`tensor ${name} has dtype ${t.dtype}, not F32`);
    if (!(a >= 0 && b >= a && b <= data.length)) bad(`tensor ${name} lies outside the file (truncated?)`);
    const bytes = data.subarray(a, b);
    hash.update(bytes);
    const copy = new Uint8Array(bytes.length);
    copy.set(bytes);
    tensors.set(name, { shape: t.shape, data: new Float32Array(copy.buffer) });
  }
  if (meta.sha256 && hash.digest('hex') !== meta.sha256) bad('its checksum does not match its data');
  return { meta, tensors };
}

/** step-000300.safetensors and step-000300.optimizer.safetensors under <run>/checkpoints */
export const checkpointPaths = (runDir: string, step: number): { model: string; optimizer: string } => {
  const base = path.join(runDir, 'checkpoints', `step-${String(step).padStart(6, '0')}`);
  return { model: `${base}.safetensors`, optimizer: `${base}.optimizer.safetensors` };
};

/** Steps with a checkpoint in a run folder, newest first. */
export function listCheckpoints(runDir: string): number[] {
  const dir = path.join(runDir, 'checkpoints');
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .map((f) => /^step-(\d+)\.safetensors$/.exec(f))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => b - a);
}

/** Removes all but the newest KEEP checkpoints. */
export function pruneCheckpoints(runDir: string): void {
  for (const step of listCheckpoints(runDir).slice(KEEP)) {
    const p = checkpointPaths(runDir, step);
    fs.rmSync(p.model, { force: true });
    fs.rmSync(p.optimizer, { force: true });
  }
}
