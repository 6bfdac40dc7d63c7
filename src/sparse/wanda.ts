/**
 * Wanda calibration (spec sparamx §2): run calibration tokens through the model block by block; for
 * block ℓ, accumulate ‖X_j‖₂ of every linear's inputs (f64) with blocks < ℓ already pruned, prune the
 * block's linears with S_ij = |W_ij|·‖X_j‖₂, and go on. Runs on the CPU backend, whose weights live in
 * the arena: pruning rewrites their bytes in place, so the next pass already sees the pruned block.
 */
import { CpuBackend, CpuTensor, CpuWeight, type CpuMatmul } from "../backend/cpu/cpu-backend.js";
import { createCpuBackend } from "../backend/cpu/cpu-backend.js";
import { assembleModel } from "../model/assemble.js";
import type { LoadedSource } from "../io/source.js";
import type { TensorMap } from "../tensor/raw.js";
import { isPrunableLinear, pruneTensor } from "./prune.js";
import { encodeLines } from "./tokens.js";

export interface CalibrationOptions {
  /** Tokens per calibration sequence (default 128, capped at the model's context). */
  seqLen?: number;
  /** Sequences (default 16; the paper uses 128 of 2048 tokens). */
  sequences?: number;
  threads?: number;
  /** Called after each block with (blocks done, total). */
  onProgress?: (done: number, total: number) => void;
}

/** Records Σ x_j² of the inputs of the weights named in `want`, then runs the wrapped engine. */
class NormRecorder implements CpuMatmul {
  readonly sums = new Map<string, Float64Array>();
  want = new Set<string>();
  constructor(private readonly inner: CpuMatmul) {}
  matmul(w: CpuWeight, x: CpuTensor, out: CpuTensor, rows: number): void {
    if (this.want.has(w.name)) {
      const k = w.inFeatures;
      let s = this.sums.get(w.name);
      if (!s) this.sums.set(w.name, (s = new Float64Array(k)));
      for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) s[j]! += x.data[r * k + j]! ** 2;
    }
    this.inner.matmul(w, x, out, rows);
  }
  attention = (...a: Parameters<NonNullable<CpuMatmul["attention"]>>) => this.inner.attention?.(...a) ?? false;
  rmsnorm = (...a: Parameters<NonNullable<CpuMatmul["rmsnorm"]>>) => this.inner.rmsnorm?.(...a) ?? false;
  swiglu = (...a: Parameters<NonNullable<CpuMatmul["swiglu"]>>) => this.inner.swiglu?.(...a) ?? false;
  dispose(): void {
    this.inner.dispose();
  }
}

/**
 * The source's linear weights pruned by Wanda to `sparsity` using `calibText` (other tensors are the
 * source's own). Returns only the pruned tensors, under their names.
 */
export async function wandaPrune(loaded: LoadedSource, sparsity: number, calibText: string, options: CalibrationOptions = {}): Promise<TensorMap> {
  const seqLen = Math.min(options.seqLen ?? 128, loaded.config.maxPositions);
  const ids = encodeLines(loaded.tokenizer, calibText, (options.sequences ?? 16) * seqLen);
  const sequences = Math.min(options.sequences ?? 16, Math.floor(ids.length / seqLen));
  if (sequences < 1) throw new Error(`calibration text has ${ids.length} tokens: fewer than one sequence of ${seqLen}`);
  const backend: CpuBackend = await createCpuBackend({ threads: options.threads, activations: "f32" });
  const recorder = new NormRecorder(backend.matmulEngine);
  backend.setMatmul(recorder);
  // assembleModel empties the map it is given; the caller keeps its own
  const model = assembleModel({ ...loaded, tensors: new Map(loaded.tensors) }, backend, seqLen);
  const pruned: TensorMap = new Map();
  try {
    const layers = model.network.weights.layers;
    for (let l = 0; l < layers.length; l++) {
      const lw = layers[l]!;
      const block = [lw.q, lw.k, lw.v, lw.o, lw.gate, lw.up, lw.down] as CpuWeight[];
      recorder.want = new Set(block.map((w) => w.name));
      recorder.sums.clear();
      // only the linears' inputs matter: plain forwards (the logits of the last row are computed and dropped)
      const cache = model.network.newCache(seqLen);
      for (let q = 0; q < sequences; q++) model.network.forward(Int32Array.from(ids.slice(q * seqLen, (q + 1) * seqLen)), 0, cache);
      for (const w of block) {
        if (!isPrunableLinear(w.name)) continue;
        const sums = recorder.sums.get(w.name);
        if (!sums) throw new Error(`calibration never reached ${w.name}`);
        const norms = sums.map(Math.sqrt);
        const t = pruneTensor({ name: w.name, dtype: w.dtype, shape: w.shape, data: w.bytes }, sparsity, norms);
        w.bytes.set(t.data);
        pruned.set(w.name, t);
      }
      options.onProgress?.(l + 1, layers.length);
    }
  } finally {
    model.dispose();
  }
  return pruned;
}
