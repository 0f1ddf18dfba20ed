// Loading a .mt program: the file and its imports (resolved relative to the importing file,
// each file once), merged into one table of declarations with duplicate names reported.
//
// Layers and functions of every file share one namespace. The hyper, preset and train sections
// are layered: an imported file supplies defaults and the importing file overrides them by
// name. Files are applied in the order their loading finishes (every file after the files it
// imports, imports in source order), each over the ones before, so an importing file always
// wins over what it imports, and of two imports that set the same name the later one wins.
//   - hyper: an entry replaces the entry of the same name in place (its evaluation order is
//     that of the first definition, so inherited entries such as `pos_rows = ctx` see the
//     overridden value); new names are appended.
//   - preset P: merged entry by entry over the inherited preset P; new presets are added.
//   - train: settings replace inherited settings of the same name; new settings are added.
// Exactly one model is compiled: the main file's. The models of imported files are skipped
// (they are not layers of the unit); an imported model with no model in the main file is an
// error, as is a main file with no model.
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
  /** hyper entries, one per name, merged over the imports, in evaluation order */
  hyper: Entry[];
  /** presets merged over the imports (entries of each merged by name; loc: the nearest declaration) */
  presets: Map<string, PresetDecl>;
  model?: LayerDecl;
  /** train settings merged over the imports; absent when no file has a train section */
  train?: Entry[];
  /** where the nearest train section starts (for settings it lacks) */
  trainLoc?: SrcLoc;
  files: string[];
}

/** The hyper, preset and train sections of one file. */
interface Sections {
  hyper: Entry[];
  presets: PresetDecl[];
  train?: { entries: Entry[]; loc: SrcLoc };
}

export function loadProgram(file: string): Unit {
  const unit: Unit = { file, layers: new Map(), fns: new Map(), hyper: [], presets: new Map(), files: [] };
  const errors: Diagnostic[] = [];
  const seen = new Set<string>();
  /** Sections of each file, importing files after the files they import. */
  const sections: Sections[] = [];
  const importedModels: LayerDecl[] = [];
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
    const own: Sections = { hyper: [], presets: [] };
    const hyperNames = new Set<string>();
    const presetNames = new Set<string>();
    for (const d of prog.decls) {
      if (d.kind === 'import') {
        const target = path.resolve(path.dirname(f), d.path);
        if (!fs.existsSync(target) || !fs.statSync(target).isFile()) {
          errors.push({ loc: d.loc, message: `cannot import "${d.path}": no such file (looked for ${target})` });
          continue;
        }
        // named as the user would type it: relative to the working folder when under it
        const shown = path.relative(process.cwd(), target);
        visit(shown && !shown.startsWith('..') && !path.isAbsolute(shown) ? shown : target, false);
        continue;
      }
      if (d.kind === 'layer') {
        if (d.isModel && !isMain) {
          importedModels.push(d);
          continue;
        }
        const prev = unit.layers.get(d.name) ?? unit.fns.get(d.name);
        if (prev) errors.push({ loc: d.loc, message: `'${d.name}' is already defined at ${prev.loc.file}:${prev.loc.line}:${prev.loc.col}` });
        unit.layers.set(d.name, d);
        if (d.isModel) {
          if (unit.model) errors.push({ loc: d.loc, message: `a file holds one model; '${unit.model.name}' is already declared` });
          else unit.model = d;
        }
      } else if (d.kind === 'fn') {
        const prev = unit.layers.get(d.name) ?? unit.fns.get(d.name);
        if (prev) errors.push({ loc: d.loc, message: `'${d.name}' is already defined at ${prev.loc.file}:${prev.loc.line}:${prev.loc.col}` });
        unit.fns.set(d.name, d);
      } else if (d.kind === 'hyper') {
        for (const e of d.entries) {
          if (hyperNames.has(e.name)) errors.push({ loc: e.loc, message: `hyperparameter '${e.name}' is defined twice` });
          hyperNames.add(e.name);
          own.hyper.push(e);
        }
      } else if (d.kind === 'preset') {
        if (presetNames.has(d.name)) errors.push({ loc: d.loc, message: `preset '${d.name}' is declared twice` });
        presetNames.add(d.name);
        own.presets.push(d);
      } else if (d.kind === 'train') {
        if (own.train) {
          errors.push({ loc: d.loc, message: `a file holds one train section` });
          continue;
        }
        const names = new Set<string>();
        for (const e of d.entries) {
          if (names.has(e.name)) errors.push({ loc: e.loc, message: `train setting '${e.name}' is given twice` });
          names.add(e.name);
        }
        own.train = { entries: d.entries, loc: d.loc };
      }
    }
    sections.push(own);
  };
  visit(file, true);

  // Apply the sections, each file over the ones before it (see the header).
  const hyper = new Map<string, Entry>();
  const presets = new Map<string, { decl: PresetDecl; entries: Map<string, Entry> }>();
  let train: Map<string, Entry> | undefined;
  for (const s of sections) {
    for (const e of s.hyper) hyper.set(e.name, e); // an existing name keeps its position
    for (const p of s.presets) {
      const prev = presets.get(p.name);
      const entries = prev?.entries ?? new Map<string, Entry>();
      for (const e of p.entries) entries.set(e.name, e);
      presets.set(p.name, { decl: p, entries });
    }
    if (s.train) {
      train ??= new Map();
      for (const e of s.train.entries) train.set(e.name, e);
      unit.trainLoc = s.train.loc;
    }
  }
  unit.hyper = [...hyper.values()];
  for (const [name, { decl, entries }] of presets) unit.presets.set(name, { ...decl, entries: [...entries.values()] });
  if (train) unit.train = [...train.values()];

  if (!unit.model)
    for (const d of importedModels) errors.push({ loc: d.loc, message: `a model may only be declared in the main file, not in an imported one` });
  if (!errors.length && !unit.model)
    errors.push({ message: 'this file declares no model (write `model Name { ... }`)', loc: { file, line: 1, col: 1, length: 1 } });
  if (errors.length) throw new MtcError(errors);
  return unit;
}
