// Helpers for tests that compile .mt sources: temp files next to a copy of the stdlib path.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const modelsDir = path.join(repoRoot, 'models');
export const stdlibPath = path.join(modelsDir, 'stdlib.mt');

/** Writes a .mt source to a fresh temp folder and returns its path. */
export function tempModel(source: string, name = 'model.mt'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-test-'));
  const file = path.join(dir, name);
  fs.writeFileSync(file, source);
  return file;
}

/** A train section for small test models. */
export const smallTrain = (ctx: number, batch: number): string => `
train {
  ctx = ${ctx}
  batch = ${batch}
  steps = 1
  loss = cross_entropy
  optimizer = adamw(lr = 1e-3)
  seed = 0
}
`;
