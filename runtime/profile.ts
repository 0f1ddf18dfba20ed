// Where a step's device time goes: the per-dispatch times of Session.profileStep summed by
// kernel family. `npm run bench` prints them beside each mtc measurement.

/** The family of a kernel, from its name (the emitters in compiler/wgsl/ name kernels by what they compute). */
export function kernelFamily(kernel: string): string {
  if (kernel.startsWith('fused_')) return 'fused regions';
  const att = /^attention_([a-z]+)_/.exec(kernel);
  if (att) return `attention ${att[1]}`;
  const [a, b] = kernel.split('_');
  return (a === 'unary' || a === 'binary') && b ? `${a} ${b}` : a;
}

export interface Profile {
  /** the sum of the dispatches' device times, ms */
  device_ms: number;
  /** largest first */
  families: Array<{ family: string; dispatches: number; ms: number }>;
}

export function byFamily(times: ReadonlyArray<{ kernel: string; ms: number }>): Profile {
  const fam = new Map<string, { dispatches: number; ms: number }>();
  for (const d of times) {
    const k = kernelFamily(d.kernel);
    const f = fam.get(k) ?? { dispatches: 0, ms: 0 };
    f.dispatches++;
    f.ms += d.ms;
    fam.set(k, f);
  }
  return {
    device_ms: times.reduce((a, d) => a + d.ms, 0),
    families: [...fam].map(([family, f]) => ({ family, ...f })).sort((x, y) => y.ms - x.ms || (x.family < y.family ? -1 : 1)),
  };
}
