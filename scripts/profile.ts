// Per-kernel timing of one training step: runs each dispatch in its own submit and waits,
// summing wall time per kernel name. A diagnostic, not a benchmark (waits add ~0.1 ms each).
import { acquireDevice } from '../runtime/device.ts';
import { Session } from '../runtime/session.ts';
import * as fs from 'node:fs';

const dir = process.argv[2] ?? '/tmp/run1/compiled';
const gpu = await acquireDevice();
const s = await Session.open(dir, gpu);
s.initialise(0);
const prog = s.prog as unknown as { run: Function; forward: Function; backward: Function; optimizer: Function };
const times = new Map<string, { n: number; ms: number }>();
const calls: Array<[string, unknown[]]> = [];
const origRun = prog.run.bind(prog);
prog.run = (_pass: unknown, kernel: string, ...rest: unknown[]) => calls.push([kernel, rest]);
prog.forward(null); prog.backward(null); prog.optimizer(null);
prog.run = origRun;
for (let rep = 0; rep < 2; rep++) {
  for (const [kernel, rest] of calls) {
    const t0 = performance.now();
    const enc = gpu.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    origRun(pass, kernel, ...rest);
    pass.end();
    gpu.device.queue.submit([enc.finish()]);
    await gpu.device.queue.onSubmittedWorkDone();
    const dt = performance.now() - t0;
    if (rep === 1) {
      const key = kernel.replace(/_\d.*$/, '') + ' ' + kernel;
      const e = times.get(kernel) ?? { n: 0, ms: 0 };
      e.n++; e.ms += dt; times.set(kernel, e);
    }
  }
}
const rows = [...times].sort((a, b) => b[1].ms - a[1].ms);
let total = 0; for (const [, e] of rows) total += e.ms;
console.log(`total ${total.toFixed(1)} ms over ${calls.length} dispatches`);
for (const [k, e] of rows.slice(0, 40)) console.log(`${e.ms.toFixed(1).padStart(8)} ms ${String(e.n).padStart(4)}x  ${k}`);
gpu.close();
process.exit(0);
