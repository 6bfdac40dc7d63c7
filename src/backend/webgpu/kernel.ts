/**
 * A compute kernel as the recorder sees it: WGSL source, the kinds of its storage bindings, and a cache
 * key naming the variant. Binding 0 is always the per-dispatch parameter block, bound with a dynamic
 * offset into the upload ring so that one bind group serves every call with the same buffers.
 */
export type BindingKind = "read" | "write";

export interface Kernel {
  /** Name used in profiles, e.g. "matmul.gemv.q4_0". */
  readonly name: string;
  /** Unique per distinct WGSL source. */
  readonly key: string;
  readonly code: string;
  /** Storage bindings 1..n in order. */
  readonly bindings: readonly BindingKind[];
  /** "uniform" (default) or "storage" for parameter blocks that carry arrays (token ids). */
  readonly params?: "uniform" | "storage";
  /** Bytes of the parameter binding; defaults to PARAM_BYTES. */
  readonly paramBytes?: number;
}

/** Size of a uniform parameter block: 16 scalars. */
export const PARAM_BYTES = 64;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** The bits of a float, for parameter blocks that mix u32 and f32 fields. */
export function f32bits(v: number): number {
  f32[0] = v;
  return u32[0]!;
}

/** Workgroups for `count` groups as a 2-D grid (each dimension is limited to 65535). */
export function grid(count: number): [number, number] {
  if (count <= 65535) return [Math.max(count, 1), 1];
  const y = Math.ceil(count / 65535);
  return [Math.ceil(count / y), y];
}

/** WGSL for the linear workgroup index under `grid`. */
export const GROUP_INDEX = "(wid.y * nwg.x + wid.x)";

const made = new Map<string, Kernel>();
/** The kernel for `key`, built once: WGSL strings are made per variant, not per dispatch. */
export function memoKernel(key: string, build: () => Omit<Kernel, "key">): Kernel {
  let k = made.get(key);
  if (!k) {
    k = { ...build(), key };
    made.set(key, k);
  }
  return k;
}

/** Common WGSL builtins of every entry point. */
export const ENTRY_ARGS =
  "@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32";
