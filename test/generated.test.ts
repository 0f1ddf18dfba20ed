// generated/ is the committed output of `mtc compile`: a test fails when it is stale.
// Refresh with `npm run compile:models`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compile } from '../compiler/pipeline.ts';
import { repoRoot } from './helpers/models.ts';

function listFiles(dir: string, prefix = ''): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listFiles(path.join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`],
  );
}

for (const model of ['matrix_thinker', 'vector_transformer', 'vector_collapse', 'matrix_product_attention']) {
  test(`generated/${model} is what mtc compile produces now`, () => {
    const cwd = process.cwd();
    // from another folder: provenance headers name sources relative to the project (the repo
    // root), not to where mtc ran, so the bytes are the same
    process.chdir(os.tmpdir());
    try {
      const c = compile(path.join(repoRoot, 'models', `${model}.mt`));
      const dir = path.join(repoRoot, 'generated', model);
      assert.ok(fs.existsSync(dir), `generated/${model} is missing: run npm run compile:models`);
      const onDisk = listFiles(dir).sort();
      assert.deepEqual(onDisk, [...c.files.keys()].sort(), 'the set of generated files differs: run npm run compile:models');
      for (const [rel, text] of c.files) {
        assert.equal(fs.readFileSync(path.join(dir, rel), 'utf8'), text, `generated/${model}/${rel} is stale: run npm run compile:models`);
      }
    } finally {
      process.chdir(cwd);
    }
  });
}

test('compiling twice gives the same bytes', () => {
  const cwd = process.cwd();
  process.chdir(repoRoot);
  try {
    const a = compile('models/matrix_thinker.mt', { preset: 'tiny', sets: { d: '4' } });
    const b = compile('models/matrix_thinker.mt', { preset: 'tiny', sets: { d: '4' } });
    assert.deepEqual([...a.files.entries()], [...b.files.entries()]);
  } finally {
    process.chdir(cwd);
  }
});
