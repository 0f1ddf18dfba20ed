// Speed of runtime/rank.ts: singularValues / erank (Golub–Kahan–Reinsch) and svd (one-sided
// Jacobi) on random Gaussian matrices stored as float32, like the token matrices the rank
// trajectory reads back from the device. Prints ms per matrix.
//   node --import tsx scripts/rank_bench.ts [count=10000] [sizes=8,16,32]
import { erank, singularValues, svd } from '../runtime/rank.ts';

const count = Number(process.argv[2] ?? 10_000);
const sizes = (process.argv[3] ?? '8,16,32').split(',').map(Number);

let seed = 1;
function uniform(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return (seed + 0.5) / 4294967296;
}
const gauss = (): number => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());

let sink = 0;
function time(label: string, n: number, d: number, matrices: number, f: (offset: number) => number): void {
  const size = d * d;
  for (let i = 0; i < Math.min(200, matrices); i++) sink += f((i % n) * size); // warm-up
  const t0 = performance.now();
  for (let i = 0; i < matrices; i++) sink += f((i % n) * size);
  const ms = performance.now() - t0;
  console.log(`${label.padEnd(16)} ${String(d).padStart(2)}×${String(d).padEnd(2)}  ${(ms / matrices).toFixed(4)} ms/matrix  (${matrices} in ${ms.toFixed(0)} ms)`);
}

for (const d of sizes) {
  const n = Math.min(count, 1000); // distinct matrices, cycled
  const data = Float32Array.from({ length: n * d * d }, gauss);
  time('singularValues', n, d, count, (o) => singularValues(data, d, d, o)[0]);
  time('erank', n, d, count, (o) => erank(data, d, d, o));
  time('svd', n, d, Math.max(1, Math.floor(count / 5)), (o) => svd(data, d, d, o).S[0]);
}
if (Number.isNaN(sink)) console.log('NaN');
