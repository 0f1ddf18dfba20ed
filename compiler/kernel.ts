// The kernel ABI shared by the WGSL emitters (compiler/wgsl/), the host code generator and
// the runtime. A kernel computes one node of the graph.
//
// Bindings, all in @group(0):
//   0 .. n-1   the node's inputs, in order, `var<storage, read>` (array<f32> or array<i32>)
//   n          the output, `var<storage, read_write>`
//   n + 1      (only when usesStep) `var<uniform> step: StepParams`, the per-step uniform:
//              struct StepParams { seed: u32, step: u32, training: u32, zero: u32 } (zero is always 0)
// Every binding is indexed from element 0; shapes and strides are baked in as constants.

export interface Kernel {
  /** Stable name from the op and its shapes only, e.g. "matmul_b256_8x8x8". Same name, same code. */
  name: string;
  /** WGSL source. */
  code: string;
  usesStep: boolean;
  /** Workgroups to dispatch; each ≤ 65535. */
  workgroups: [number, number, number];
  /** One line saying what it computes, for the generated code's comments. */
  summary: string;
}

export const STEP_UNIFORM_BYTES = 16;
