// Checkpoints in safetensors: an 8-byte little-endian header length, a JSON header naming each
// tensor (its dotted .mt path, dtype F32, row-major shape, byte offsets), then the data.
// The resolved hyperparameters go into __metadata__ as JSON. Written to a temporary file and
// renamed, so a crash never leaves a half-written checkpoint in place of a good one.
import * as fs from 'node:fs';
import type { Session } from './session.ts';

export function writeCheckpoint(file: string, s: Session, arena: Float32Array, meta: Record<string, unknown>): void {
  const header: Record<string, unknown> = {
    __metadata__: {
      format: 'mtc',
      model: s.mod.model.name,
      hypers: JSON.stringify(s.mod.model.hypers),
      ...Object.fromEntries(Object.entries(meta).map(([k, v]) => [k, String(v)])),
    },
  };
  let offset = 0;
  const chunks: Uint8Array[] = [];
  for (const p of s.mod.params) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const data = arena.slice(p.offset, p.offset + n);
    header[p.path] = { dtype: 'F32', shape: p.shape, data_offsets: [offset, offset + n * 4] };
    chunks.push(new Uint8Array(data.buffer));
    offset += n * 4;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  fs.writeSync(fd, head);
  fs.writeSync(fd, Buffer.from(json));
  for (const c of chunks) fs.writeSync(fd, c);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}
