// Folders mtc writes into (compiled programs, run folders, reports). Node's recursive mkdir
// never returns on some paths (/proc/x loops on ENOENT), so folders are made one level at a
// time, and a failure is a diagnostic that names the folder.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MtcError } from './diagnostics.ts';

/** Creates `dir` and the folders above it that are missing. */
export function makeDirs(dir: string): void {
  const missing: string[] = [];
  let at = path.resolve(dir);
  while (!fs.existsSync(at)) {
    missing.unshift(at);
    const up = path.dirname(at);
    if (up === at) break;
    at = up;
  }
  if (fs.existsSync(at) && !isDir(at)) throw new MtcError(`cannot create the folder '${dir}': '${at}' is a file`);
  for (const d of missing) {
    try {
      fs.mkdirSync(d);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && isDir(d)) continue;
      throw new MtcError(`cannot create the folder '${dir}' (${code ?? (e as Error).message} at '${d}')`);
    }
  }
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}
