// Loading a .mt program: the file and its imports (resolved relative to the importing file,
// each file once), merged into one table of declarations with duplicate names reported.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseFile } from '../grammar/index.ts';
import type { Decl, Entry, Program } from '../grammar/ast.ts';
import { MtcError, type Diagnostic, type SrcLoc } from './diagnostics.ts';

type LayerDecl = Extract<Decl, { kind: 'layer' }>;
type FnDecl = Extract<Decl, { kind: 'fn' }>;
type PresetDecl = Extract<Decl, { kind: 'preset' }>;

export interface Unit {
  /** The main file (as given). */
  file: string;
  layers: Map<string, LayerDecl>;
  fns: Map<string, FnDecl>;
  /** hyper entries of the main file, in order */
  hyper: Entry[];
  presets: Map<string, PresetDecl>;
  model?: LayerDecl;
  train?: Entry[];
  /** where the train section starts (for settings it lacks) */
  trainLoc?: SrcLoc;
  files: string[];
}

export function loadProgram(file: string): Unit {
  const unit: Unit = { file, layers: new Map(), fns: new Map(), hyper: [], presets: new Map(), files: [] };
  const errors: Diagnostic[] = [];
  const seen = new Set<string>();
  const visit = (f: string, isMain: boolean): void => {
    const abs = path.resolve(f);
    if (seen.has(abs)) return;
    seen.add(abs);
    unit.files.push(f);
    let prog: Program;
    try {
      prog = parseFile(f);
    } catch (e) {
      if (e instanceof MtcError) {
        errors.push(...e.diagnostics);
        return;
      }
      throw e;
    }
    for (const d of prog.decls) {
      if (d.kind === 'import') {
        const target = path.resolve(path.dirname(f), d.path);
        if (!fs.existsSync(target) || !fs.statSync(target).isFile()) {
          errors.push({ loc: d.loc, message: `cannot import "${d.path}": no such file (looked for ${target})` });
          continue;
        }
        visit(target, false);
        continue;
      }
      if (d.kind === 'layer') {
        const prev = unit.layers.get(d.name) ?? unit.fns.get(d.name);
        if (prev) errors.push({ loc: d.loc, message: `'${d.name}' is already defined at ${prev.loc.file}:${prev.loc.line}:${prev.loc.col}` });
        unit.layers.set(d.name, d);
        if (d.isModel) {
          if (!isMain) errors.push({ loc: d.loc, message: `a model may only be declared in the main file, not in an imported one` });
          else if (unit.model) errors.push({ loc: d.loc, message: `a file holds one model; '${unit.model.name}' is already declared` });
          else unit.model = d;
        }
      } else if (d.kind === 'fn') {
        const prev = unit.layers.get(d.name) ?? unit.fns.get(d.name);
        if (prev) errors.push({ loc: d.loc, message: `'${d.name}' is already defined at ${prev.loc.file}:${prev.loc.line}:${prev.loc.col}` });
        unit.fns.set(d.name, d);
      } else if (!isMain) {
        errors.push({ loc: d.loc, message: `an imported file may only declare layers and functions, not a ${d.kind} section` });
      } else if (d.kind === 'hyper') {
        unit.hyper.push(...d.entries);
      } else if (d.kind === 'preset') {
        if (unit.presets.has(d.name)) errors.push({ loc: d.loc, message: `preset '${d.name}' is declared twice` });
        unit.presets.set(d.name, d);
      } else if (d.kind === 'train') {
        if (unit.train) errors.push({ loc: d.loc, message: `a file holds one train section` });
        unit.train = d.entries;
        unit.trainLoc = d.loc;
      }
    }
  };
  visit(file, true);
  if (!errors.length && !unit.model)
    errors.push({ message: 'this file declares no model (write `model Name { ... }`)', loc: { file, line: 1, col: 1, length: 1 } });
  if (errors.length) throw new MtcError(errors);
  return unit;
}
