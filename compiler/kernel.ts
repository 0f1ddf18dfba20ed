// The kernel ABI shared by the WGSL emitters (compiler/wgsl/), the host code generator and
// the runtime. A kernel computes one node of the graph.
//
// Bindings, all in @group(0):
//   0 .. n-1   the node's inputs, in order, `var<storage, read>` (array<f32> or array<i32>)
//   n          the output, `var<storage, read_write>`
//   n + 1      (only when usesStep) `var<uniform> step: StepParams`, the per-step uniform:
//              struct StepParams { seed: u32, step: u32, training: u32, zero: u32 } (zero is always 0)
//   n + 2      (only with dropout `keys`) `var<uniform> dropout_keys: DropoutKeys`, the keys of
//              the dropout sites this dispatch draws for, in `keys` order (dropoutKeysDecl below):
//              bound per dispatch, so that sites alike (every block's attention) share one kernel
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
  /** The dropout keys of this emission, bound at run time (after the step uniform, which it needs). */
  keys?: number[];
}

export const STEP_UNIFORM_BYTES = 16;

/** Bytes of the dropout-key uniform of a dispatch drawing for `n` sites (a vec4<u32> per 4 keys). */
export const keysUniformBytes = (n: number): number => 16 * Math.ceil(n / 4);

/** The WGSL declaration of the dropout-key uniform at `binding`, for `n` keys. */
export const dropoutKeysDecl = (binding: number, n: number): string =>
  `struct DropoutKeys {\n  keys: array<vec4<u32>, ${Math.ceil(n / 4)}>, // the dropout key of each site, bound per dispatch\n}\n@group(0) @binding(${binding}) var<uniform> dropout_keys: DropoutKeys;`;

/** The WGSL expression of the i-th dropout key of a kernel. */
export const dropoutKey = (i: number): string => `dropout_keys.keys[${i >> 2}u].${'xyzw'[i & 3]}`;
