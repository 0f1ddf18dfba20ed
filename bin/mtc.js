#!/usr/bin/env node
// The mtc command: registers tsx so the TypeScript sources (and the generated host code
// that `mtc run` imports) load directly, then runs the CLI and exits with its code.
// It exits explicitly (Dawn's binding can keep the process alive) once stdout has drained.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../runtime/cli.ts');
const code = await main(process.argv.slice(2));
process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
