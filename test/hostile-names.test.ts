// Generated-code safety: .mt names may be TypeScript, JavaScript or WGSL keywords and
// prototype properties (`function`, `constructor`, `__proto__`, `let`, `loop`, `f32`, ...), and
// strings and file names may hold quotes, backslashes, `*/`, `${`, newlines and non-ASCII. None of
// that may change the code mtc emits: the same model with benign names must give the same
// kernels byte for byte, and the same program.ts token for token once comments and string
// contents are set aside; the names must come back intact from the emitted data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { compile, type Compiled } from '../compiler/pipeline.ts';

/** Every name of the model template, hostile and benign. */
const HOSTILE = {
  L1: 'function', // layer
  L2: 'constructor', // layer
  FN: 'valueOf', // fn
  A1: 'new', // layer argument
  A2: 'delete', // layer argument
  P1: 'toString', // params
  P2: 'var',
  P3: 'let',
  P4: 'this',
  P5: 'f32',
  X: 'arguments', // forward and fn argument
  LOC1: 'loop', // locals
  LOC2: 'await',
  LOC3: 'yield',
  LOC4: 'eval',
  LOOPV: 'struct', // loop variable
  M1: '__proto__', // sub-layers
  M2: 'prototype',
  M3: 'hasOwnProperty',
  MODEL: 'Object',
  H_D: 'constructor', // hyperparameters
  H_V: '__defineGetter__',
  H_T: 'workgroup',
  H_S: 'main',
  PRESET: 'prototype',
  OBS: 'toString',
};
type Names = typeof HOSTILE;
const BENIGN: Names = Object.fromEntries(Object.keys(HOSTILE).map((k, i) => [k, `name_${String.fromCharCode(97 + i)}`])) as Names;

/** A string with every character that could end a string, a comment or a line, or start a template. */
const HOSTILE_DATA = 'we"ird */ ${x} ` \\ é\n</script> \u2028 //';
/** The same string in .mt syntax (only \" \\ \n \t are escapes). */
const mtString = (s: string): string => `"${s.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')}"`;

const libSource = (n: Names): string => `
layer ${n.L1}(${n.A1}, ${n.A2}) {
  param ${n.P1}: [${n.A1}, ${n.A1}] = eye + normal(0.02)
  param ${n.P2}: [${n.A1}] = ones
  forward(${n.X}) {
    ${n.LOC1} = ${n.X} @ ${n.P1}
    ${n.LOC2} = silu(${n.LOC1}) * ${n.P2}
    return ${n.LOC2} * ${n.A2}
  }
}

fn ${n.FN}(${n.X}) {
  return ${n.X} + ${n.X}
}
`;

const mainSource = (n: Names, libPath: string, data: string): string => `# ${data.replaceAll('\n', ' ')}
import ${mtString(libPath)}

hyper {
  ${n.H_D} = 8
  ${n.H_V} = 16
  ${n.H_T} = 2
  ${n.H_S} = 1
}

preset ${n.PRESET} {
  ${n.H_T} = 1
}

layer ${n.L2}(${n.A1}) {
  ${n.M1} = ${n.L1}(${n.A1}, 0.5)
  ${n.M2} = [${n.L1}(${n.A1}, 2); 2]
  param ${n.P3}: [${n.A1}] = zeros
  forward(${n.X}) {
    ${n.LOC3} = ${n.M1}(${n.X})
    for ${n.LOOPV} in ${n.M2} {
      ${n.LOC3} = ${n.LOOPV}(${n.LOC3})
    }
    return ${n.FN}(${n.LOC3}) + ${n.P3}
  }
}

model ${n.MODEL} {
  param ${n.P4}: [${n.H_V}, ${n.H_D}] = normal(1)
  param ${n.P5}: [${n.H_D}, ${n.H_V}] = normal(1)
  ${n.M3} = ${n.L2}(${n.H_D})
  forward(${n.X}) {
    ${n.LOC4} = gather(${n.P4}, ${n.X})
    repeat ${n.H_T} {
      ${n.LOC4} = ${n.M3}(${n.LOC4})
      observe ${n.OBS} = ${n.LOC4}
    }
    return ${n.LOC4} @ ${n.P5} * ${n.H_S}
  }
}

train {
  data = ${mtString(data)}
  ctx = 8
  batch = 2
  steps = 1
  loss = cross_entropy
  optimizer = adamw(lr = 1e-3)
}
`;

interface Built {
  compiled: Compiled;
  dir: string;
}

/**
 * Writes the two files and compiles. Paths may hold anything a Linux path can (a `/` in a name
 * makes a folder); the main file imports the other by its relative path.
 */
function build(n: Names, files: { dir: string; main: string; lib: string }, data: string): Built {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-hostile-'));
  const main = path.join(dir, files.dir, files.main);
  const lib = path.join(dir, files.dir, files.lib);
  for (const f of [main, lib]) fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), '{}\n'); // the project root: sources are named from it, folder included
  fs.writeFileSync(lib, libSource(n));
  fs.writeFileSync(main, mainSource(n, path.relative(path.dirname(main), lib), data));
  const compiled = compile(main, { preset: n.PRESET, sets: { [n.H_D]: '4' } });
  return { compiled, dir };
}

const ODD_FILES = { dir: 'sub "*/ ${dir}` \\ é', main: 'we"ird */ name\n.mt', lib: "lib '\"*/ ${x} \\ é\u2028.mt" };
const PLAIN_FILES = { dir: 'sub', main: 'model.mt', lib: 'lib.mt' };

const hostile = build(HOSTILE, ODD_FILES, HOSTILE_DATA);
const benign = build(BENIGN, PLAIN_FILES, 'plain');
test.after(() => {
  for (const b of [hostile, benign]) fs.rmSync(b.dir, { recursive: true, force: true });
});

/** program.ts as tokens, comments dropped and the text of every string literal replaced by "S". */
function codeTokens(code: string): string[] {
  const scanner = ts.createScanner(ts.ScriptTarget.ES2022, /* skipTrivia */ true, ts.LanguageVariant.Standard, code);
  const out: string[] = [];
  for (let kind = scanner.scan(); kind !== ts.SyntaxKind.EndOfFileToken; kind = scanner.scan()) {
    if (kind === ts.SyntaxKind.StringLiteral || kind === ts.SyntaxKind.NoSubstitutionTemplateLiteral) out.push('"S"');
    else out.push(scanner.getTokenText());
  }
  return out;
}

/** The code's string literals and comments: [start, end) ranges. */
function stringAndCommentRanges(code: string): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  const scanner = ts.createScanner(ts.ScriptTarget.ES2022, /* skipTrivia */ false, ts.LanguageVariant.Standard, code);
  for (let kind = scanner.scan(); kind !== ts.SyntaxKind.EndOfFileToken; kind = scanner.scan()) {
    if (
      kind === ts.SyntaxKind.StringLiteral ||
      kind === ts.SyntaxKind.SingleLineCommentTrivia ||
      kind === ts.SyntaxKind.MultiLineCommentTrivia
    )
      ranges.push([scanner.getTokenFullStart(), scanner.getTokenEnd()]);
  }
  return ranges;
}

/** The provenance lines a generated file starts with (they name the sources); returns [header, rest]. */
const PROVENANCE = /^\/\/ (Generated by mtc |preset: |source sha256: |Do not edit)/;
function splitHeader(text: string): [string[], string] {
  const lines = text.split('\n');
  let i = 0;
  while (i < lines.length && PROVENANCE.test(lines[i])) i++;
  return [lines.slice(0, i), lines.slice(i).join('\n')];
}

test('hostile names: the model compiles and names every parameter by its .mt path', () => {
  const paths = hostile.compiled.graph.params.map((p) => p.path);
  assert.deepEqual(paths, [
    'this',
    'f32',
    'hasOwnProperty.__proto__.toString',
    'hasOwnProperty.__proto__.var',
    'hasOwnProperty.prototype.0.toString',
    'hasOwnProperty.prototype.0.var',
    'hasOwnProperty.prototype.1.toString',
    'hasOwnProperty.prototype.1.var',
    'hasOwnProperty.let',
  ]);
  assert.equal(hostile.compiled.hypers.constructor, 4); // set with --set constructor=4
  assert.equal(hostile.compiled.hypers.workgroup, 1); // from preset prototype
  assert.equal(hostile.compiled.graph.observations.toString.length, 1);
  assert.equal(hostile.compiled.train.data, HOSTILE_DATA);
});

test('hostile names: program.ts has no syntax errors', () => {
  for (const b of [hostile, benign]) {
    const out = ts.transpileModule(b.compiled.files.get('program.ts')!, {
      reportDiagnostics: true,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    });
    assert.deepEqual(
      (out.diagnostics ?? []).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')),
      [],
    );
  }
});

test('hostile names: the same kernels, byte for byte, below the provenance header', () => {
  const h = hostile.compiled.files;
  const p = benign.compiled.files;
  const kernels = (m: Map<string, string>) => [...m.keys()].filter((k) => k.startsWith('kernels/')).sort();
  assert.deepEqual(kernels(h), kernels(p));
  assert.ok(kernels(h).length > 5);
  for (const k of kernels(h)) {
    const [hh, hb] = splitHeader(h.get(k)!);
    const [ph, pb] = splitHeader(p.get(k)!);
    assert.ok(hh.length >= 1 && hh.length === ph.length, `${k}: a provenance header`);
    for (const line of hh) assert.match(line, /^\/\/ [\x20-\x7e]*$/, `${k}: a header line holds printable ASCII only`);
    assert.equal(hb, pb, `${k} differs below its header`);
  }
});

test('hostile names: program.ts is the same code, token for token, outside comments and strings', () => {
  const h = hostile.compiled.files.get('program.ts')!;
  const p = benign.compiled.files.get('program.ts')!;
  assert.deepEqual(codeTokens(h), codeTokens(p));
  // Every line comment holds printable ASCII only, so nothing can end it early.
  for (const [s, e] of stringAndCommentRanges(h)) {
    const text = h.slice(s, e).trim();
    if (text.startsWith('//')) assert.match(text, /^\/\/[\x20-\x7e]*$/, text);
  }
});

test('hostile names: param paths and other source text appear only in strings and comments', () => {
  /** Where `needle` occurs in `code` outside string literals and comments. */
  const inCode = (code: string, needle: string): number[] => {
    const ranges = stringAndCommentRanges(code);
    const at: number[] = [];
    for (let i = code.indexOf(needle); i >= 0; i = code.indexOf(needle, i + 1)) {
      if (!ranges.some(([s, e]) => i >= s && i + needle.length <= e)) at.push(i);
    }
    return at;
  };
  const h = hostile.compiled.files.get('program.ts')!;
  const p = benign.compiled.files.get('program.ts')!;
  const needles = [...hostile.compiled.graph.params.map((x) => x.path), ...Object.values(HOSTILE), '${', '*/', 'é'];
  for (const needle of needles) {
    // A word such as `this` is also part of the host code itself: exactly as often as with benign names.
    const [hAt, pAt] = [inCode(h, needle), inCode(p, needle)];
    assert.equal(hAt.length, pAt.length, `'${needle}' outside strings and comments: ${hAt.map((i) => JSON.stringify(h.slice(i - 30, i + 30))).join(', ')}`);
  }
  for (const path of hostile.compiled.graph.params.map((x) => x.path).filter((x) => x.includes('.'))) assert.equal(inCode(h, path).length, 0, path);
});

test('hostile names: the emitted data round-trips (params, sources, train data, observations)', async () => {
  const code = hostile.compiled.files.get('program.ts')!;
  const js = ts.transpileModule(code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
  const file = path.join(hostile.dir, 'program.mjs');
  fs.writeFileSync(file, js);
  const mod = (await import(pathToFileURL(file).href)) as {
    model: { name: string; sources: string[]; preset: string; sets: Record<string, string>; hypers: Record<string, number>; train: { data: string } };
    params: Array<{ path: string; shape: number[] }>;
  };
  assert.deepEqual(
    mod.params.map((p) => p.path),
    hostile.compiled.graph.params.map((p) => p.path),
  );
  assert.equal(mod.model.name, 'Object');
  assert.equal(mod.model.preset, 'prototype');
  assert.deepEqual(Object.entries(mod.model.sets), [['constructor', '4']]);
  assert.deepEqual(Object.entries(mod.model.hypers), Object.entries(hostile.compiled.hypers));
  assert.equal(mod.model.train.data, HOSTILE_DATA);
  assert.equal(mod.model.sources.length, 2);
  assert.deepEqual(mod.model.sources, [`${ODD_FILES.dir}/${ODD_FILES.main}`, `${ODD_FILES.dir}/${ODD_FILES.lib}`]);
  // The observation named toString is an own property of the outputs table the constructor builds.
  assert.match(code, /observations: \{ \["toString"\]: \[/);
});

test(
  "a hyperparameter named __proto__ survives program.ts's model table",
  async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mtc-proto-'));
    try {
      const file = path.join(dir, 'model.mt');
      fs.writeFileSync(file, mainSource({ ...BENIGN, H_S: '__proto__' }, 'lib.mt', 'plain'));
      fs.writeFileSync(path.join(dir, 'lib.mt'), libSource(BENIGN));
      const c = compile(file, { sets: { ['__proto__']: '1' } });
      assert.equal(c.hypers['__proto__'], 1);
      const js = ts.transpileModule(c.files.get('program.ts')!, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
      fs.writeFileSync(path.join(dir, 'program.mjs'), js);
      const mod = (await import(pathToFileURL(path.join(dir, 'program.mjs')).href)) as { model: { hypers: object; sets: object } };
      assert.ok(Object.hasOwn(mod.model.hypers, '__proto__'), 'model.hypers lost __proto__');
      assert.ok(Object.hasOwn(mod.model.sets, '__proto__'), 'model.sets lost __proto__');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);
