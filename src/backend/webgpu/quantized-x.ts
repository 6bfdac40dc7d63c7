/**
 * The int8 copy of a batch-1 matmul's x (kernels/gemv-i8.ts) in two scratch buffers. Several matmuls in
 * a row often read the same x (q, k, v; gate, up; every part of a split weight), so x is quantized again
 * only when it may have changed: another x, another tile order, or anything else dispatched or submitted
 * since (a write to x can only come from one of those).
 */
import type { Buf, BufferPool } from "./buffers.js";
import type { Kernel } from "./kernel.js";
import { grid } from "./kernel.js";
import { QUANT_X_BLOCKS, TILE_BLOCKS, quantXBytes, quantXKernel, type BlockFormat } from "./kernels/gemv-i8.js";
import { QUANT_X_PLANES_BLOCKS, quantXPlanesKernel } from "./kernels/lane-blocks.js";

/** The layouts of the int8 x: a block format's tile order (kernels/gemv-i8.ts), or natural-order planes (kernels/lane-blocks.ts). */
export type QuantXLayout = BlockFormat | "planes";

/** How batch-1 q8_0/q4_0 matmuls treat activations (as the CPU backend's option of the same name). */
export type ActivationPath = "f32" | "int8";

type Run = (k: Kernel, params: ArrayLike<number>, bufs: readonly Buf[], groups: readonly [number, number]) => void;

export class QuantizedX {
  private quants?: Buf;
  private scales?: Buf;
  /** What the scratch holds and the dispatch count / submission after which it is still valid. */
  private held?: { buf: number; offset: number; K: number; format: QuantXLayout; dispatches: number; submissions: number };

  constructor(private readonly pool: BufferPool, private readonly run: Run) {}

  /** The quantized x (quants, scales), quantizing it first unless the scratch already holds it. */
  of(x: Buf, K: number, format: QuantXLayout, dispatches: number, submissions: number): [Buf, Buf] {
    if (K % 32 !== 0) throw new Error(`int8 activations: x of ${K} elements is not whole 32-element blocks`);
    const h = this.held;
    const fresh = h && h.buf === x.id && h.offset === (x.offset ?? 0) && h.K === K && h.format === format &&
      h.dispatches === dispatches && h.submissions === submissions;
    // planes: a (scale, sum) pair a block
    const need = format === "planes" ? { quants: K, scales: (K / 32) * 8 } : quantXBytes(K);
    if (!this.quants || this.quants.size < need.quants) {
      if (this.quants) this.pool.destroy(this.quants);
      this.quants = this.pool.storage(Math.max(need.quants, 1 << 14), "int8 x quants");
      this.held = undefined;
    }
    if (!this.scales || this.scales.size < need.scales) {
      if (this.scales) this.pool.destroy(this.scales);
      this.scales = this.pool.storage(Math.max(need.scales, 1 << 11), "int8 x scales");
      this.held = undefined;
    }
    if (!fresh || !this.held) {
      const blocks = K / 32;
      if (format === "planes") this.run(quantXPlanesKernel(), [blocks], [x, this.quants, this.scales], grid(Math.ceil(blocks / QUANT_X_PLANES_BLOCKS)));
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
