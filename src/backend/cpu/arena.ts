/**
 * All CPU tensors (weights, activations, KV cache) live in one shared WebAssembly memory, so that the
 * WebAssembly kernels and the worker threads see the same bytes without copies. A bump allocator is
 * enough: a model allocates once at load and frees everything at dispose.
 */
import { SPARSE_TABLE_BYTES } from "../../sparse/cpu-table.js";

const PAGE = 65536;
const ALIGN = 64;
/**
 * Where the sparse kernels' swizzle patterns live in every arena (src/sparse/cpu-table.ts; written by
 * wasm-matmul.ts): kernels.wat has this address as a constant load offset, one add less per 8 weights
 * than a table pointer. Changing it means changing kernels.wat's offsets 64 and 4160.
 */
export const SPARSE_TABLE_AT = 64;

export class Arena {
  readonly memory: WebAssembly.Memory;
  // offset 0 is kept unused so that 0 can mean "none" to the kernels; then the sparse pattern table
  private top = SPARSE_TABLE_AT + Math.ceil(SPARSE_TABLE_BYTES / ALIGN) * ALIGN;

  constructor(initialBytes = 16 * PAGE) {
    this.memory = new WebAssembly.Memory({
      initial: Math.ceil(initialBytes / PAGE),
      maximum: 65536,
      shared: true,
    });
  }

  get buffer(): ArrayBufferLike {
    return this.memory.buffer;
  }

  /** Reserves `bytes` (64-byte aligned) and returns the byte offset. */
  alloc(bytes: number): number {
    const offset = this.top;
    const end = offset + Math.ceil(bytes / ALIGN) * ALIGN;
    if (end > 4 * 1024 ** 3 - PAGE) {
      throw new Error(`CPU backend: ${(end / 1024 ** 3).toFixed(2)} GiB exceeds the 4 GiB WebAssembly memory limit`);
    }
    const have = this.memory.buffer.byteLength;
    if (end > have) this.memory.grow(Math.ceil((end - have) / PAGE));
    this.top = end;
    return offset;
  }

  get used(): number {
    return this.top;
  }
}
