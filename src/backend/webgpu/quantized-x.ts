/**
 * The int8 copy of a batch-1 matmul's x (kernels/gemv-i8.ts) in two scratch buffers. Several matmuls in
 * a row often read the same x (q, k, v; gate, up; every part of a split weight), so x is quantized again
 * only when it may have changed: another x, another order (q8_0 or q4_0 tiles; "planes", the natural
 * order of kernels/gemv-blocks.ts and kernels/lane-blocks.ts), or anything else dispatched or submitted
 * since (a write to x can only come from one of those).
 */
import type { Buf, BufferPool } from "./buffers.js";
import type { Kernel } from "./kernel.js";
import { grid } from "./kernel.js";
import { QUANT_X_BLOCKS, TILE_BLOCKS, quantXBytes, quantXKernel, type BlockFormat } from "./kernels/gemv-i8.js";
import { quantXBlocksBytes, quantXBlocksKernel } from "./kernels/gemv-blocks.js";

/** The layouts of the int8 x: a block format's tile order (kernels/gemv-i8.ts), or natural-order planes. */
export type QuantXLayout = BlockFormat | "planes";

/**
 * How batch-1 q8_0/q4_0 matmuls treat activations (as the CPU backend's option of the same name); "auto":
 * int8 for q4_0, f32 for q8_0 (WebGpuOptions.activations).
 */
export type ActivationPath = "f32" | "int8" | "auto";

type Run = (k: Kernel, params: ArrayLike<number>, bufs: readonly Buf[], groups: readonly [number, number]) => void;

export class QuantizedX {
  private quants?: Buf;
  private scales?: Buf;
  /** What the scratch holds and the dispatch count / submission after which it is still valid. */
  private held?: { buf: number; offset: number; K: number; format: QuantXLayout; dispatches: number; submissions: number };

  constructor(private readonly pool: BufferPool, private readonly run: Run) {}

  /** The quantized x (quants, scales) in `format`'s layout, quantizing it first unless the scratch already holds it. */
  of(x: Buf, K: number, format: QuantXLayout, dispatches: number, submissions: number): [Buf, Buf] {
    if (K % 32 !== 0) throw new Error(`int8 activations: x of ${K} elements is not whole 32-element blocks`);
    const h = this.held;
    const fresh = h && h.buf === x.id && h.offset === (x.offset ?? 0) && h.K === K && h.format === format &&
      h.dispatches === dispatches && h.submissions === submissions;
    const need = format === "planes" ? quantXBlocksBytes(K) : quantXBytes(K);
    // an outgrown buffer is not destroyed: commands recorded but not yet submitted may still bind it
    // (the pool frees it with the backend)
    if (!this.quants || this.quants.size < need.quants) {
      this.quants = this.pool.storage(Math.max(need.quants, 1 << 14), "int8 x quants");
      this.held = undefined;
    }
    if (!this.scales || this.scales.size < need.scales) {
      this.scales = this.pool.storage(Math.max(need.scales, 1 << 11), "int8 x scales");
      this.held = undefined;
    }
    if (!fresh || !this.held) {
      const blocks = K / 32;
      if (format === "planes") this.run(quantXBlocksKernel(), [blocks], [x, this.quants, this.scales], grid(Math.ceil(blocks / QUANT_X_BLOCKS)));
      else this.run(quantXKernel(format), [blocks, Math.floor(blocks / TILE_BLOCKS[format])], [x, this.quants, this.scales], grid(Math.ceil(blocks / QUANT_X_BLOCKS)));
      this.held = { buf: x.id, offset: x.offset ?? 0, K, format, dispatches: dispatches + 1, submissions };
    }
    return [this.quants, this.scales];
  }

  /** Marks the scratch valid after the GEMV that read it (dispatch count `dispatches`). */
  keep(dispatches: number): void {
    if (this.held) this.held.dispatches = dispatches;
  }
}
