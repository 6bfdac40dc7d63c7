/**
 * Weights stacked in one buffer: q, k, v (or gate, up) uploaded one after another, rows contiguous, so
 * a fused GEMV (kernels/gemv-fused.ts) reads them as one matrix through one binding. Each member is still
 * an ordinary GpuWeight whose part is a sub-range of the stack, so every other op (GEMM, embed) reads it
 * unchanged and the weights are resident once.
 */
import type { RawTensor } from "../../tensor/raw.js";
import type { Buf, BufferPool } from "./buffers.js";
import { GpuWeight, uploadWeight, type Q4Layout, type WeightPart } from "./weights.js";

export interface WeightStack {
  /** The members in stacking order; member i owns rows [sum of earlier rows, + its rows). */
  readonly members: readonly GpuWeight[];
  readonly data: Buf;
  readonly scales?: Buf;
}

/**
 * Uploads `raws` (2-D, one format, one row length) as a stack when they fit one binding and each
 * member's bytes end at a multiple of `align` (a sub-range must start there); otherwise one by one, as
 * `uploadWeight` does. `stack` is undefined in that case.
 */
export function uploadStacked(raws: readonly RawTensor[], pool: BufferPool, maxBinding: number, align: number, q4Layout: Q4Layout = "tiles"): { weights: GpuWeight[]; stack?: WeightStack } {
  // repack each tensor as uploadWeight does, keeping the bytes on the host until we know where they go
  const bytes = new Map<Buf, Uint8Array>();
  const capture = {
    upload(data: Uint8Array): Buf {
      const b: Buf = { id: -1, buffer: undefined as unknown as GPUBuffer, size: data.byteLength };
      bytes.set(b, data);
      return b;
    },
  } as unknown as BufferPool;
  const staged = raws.map((r) => uploadWeight(r, capture, maxBinding, q4Layout));
  const first = staged[0]!;
  const parts = staged.map((w) => w.parts);
  const stackable =
    staged.length >= 2 &&
    raws.every((r) => r.shape.length === 2 && r.dtype === raws[0]!.dtype) &&
    staged.every((w) => w.format === first.format && w.stride === first.stride && w.blocks === first.blocks && w.inFeatures === first.inFeatures && w.parts.length === 1) &&
    fits(parts.map((p) => bytes.get(p[0]!.data)!), maxBinding, align) &&
    (first.parts[0]!.scales === undefined || fits(parts.map((p) => bytes.get(p[0]!.scales!)!), maxBinding, align));
  if (!stackable) {
    const real = (b: Buf | undefined, label: string) => (b ? pool.upload(bytes.get(b)!, label) : undefined);
    const weights = staged.map((w) => rebuild(w, w.parts.map((p) => ({ ...p, data: real(p.data, w.name)!, scales: real(p.scales, `${w.name} scales`) }))));
    return { weights };
  }
  const label = `stack ${raws.map((r) => r.name).join(" + ")}`;
  const join = (pick: (p: WeightPart) => Buf | undefined, what: string): { buf: Buf; ranges: Buf[] } | undefined => {
    const arrays = parts.map((p) => pick(p[0]!)).map((b) => (b ? bytes.get(b)! : undefined));
    if (arrays.some((a) => !a)) return undefined;
    const all = new Uint8Array(arrays.reduce((s, a) => s + a!.byteLength, 0));
    let at = 0;
    const offsets = arrays.map((a) => {
      all.set(a!, at);
      at += a!.byteLength;
      return at - a!.byteLength;
    });
    const buf = pool.upload(all, `${label}${what}`);
    // the last member's range may end at the 16-byte padding of the buffer (vec4 views)
    const ranges = arrays.map((a, i) => pool.subrange(buf, offsets[i]!, Math.min(Math.ceil(a!.byteLength / 16) * 16, buf.size - offsets[i]!)));
    return { buf, ranges };
  };
  const data = join((p) => p.data, "")!;
  const scales = join((p) => p.scales, " scales");
  const weights = staged.map((w, i) => rebuild(w, [{ rowStart: 0, rows: w.outFeatures, data: data.ranges[i]!, scales: scales?.ranges[i] }]));
  return { weights, stack: { members: weights, data: data.buf, scales: scales?.buf } };
}

/** Whether byte arrays, one after another, fit one binding with every start at a multiple of `align`. */
function fits(arrays: readonly Uint8Array[], maxBinding: number, align: number): boolean {
  const total = arrays.reduce((s, a) => s + a.byteLength, 0);
  return total <= maxBinding && arrays.slice(0, -1).every((a) => a.byteLength % align === 0);
}

function rebuild(w: GpuWeight, parts: WeightPart[]): GpuWeight {
  return new GpuWeight(w.name, w.dtype, w.shape, w.format, w.stride, w.blocks, parts, w.mul, w.tiled, w.runs);
}
