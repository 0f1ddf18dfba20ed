// The learning-rate schedule of the study: linear warmup from 0, then cosine decay to 0.

export interface LrSchedule {
  /** Highest learning rate, reached at step `warmup`. */
  peak: number;
  /** Steps of linear warmup; 0 for none. */
  warmup: number;
  /** Step at which the cosine reaches 0. */
  total: number;
}

/**
 * Learning rate for a 0-based step. As in the study's code, step 0 has lr 0 (warmup starts at
 * 0): lr = peak·step/warmup before `warmup`, then 0.5·peak·(1 + cos(π·(step−warmup)/(total−warmup))),
 * and 0 from `total` on.
 */
export function lrAt(step: number, o: LrSchedule): number {
  if (step < o.warmup) return (o.peak * step) / o.warmup;
  if (step >= o.total) return 0;
  return 0.5 * o.peak * (1 + Math.cos((Math.PI * (step - o.warmup)) / (o.total - o.warmup)));
}
