/**
 * What `loadModel` does for sparsity: prune on the fly (`--sparsity F`) and/or put the pruned linear
 * weights into the sparse-bitmap layout so the sparse kernels run them.
 */
import type { LoadedSource } from "../io/source.js";
import { prunedTensors, sparsify, withTensors } from "./source.js";
import type { PruneMethod } from "./prune.js";
import type { CalibrationOptions } from "./wanda.js";

export interface SparseLoadOptions extends Pick<CalibrationOptions, "sequences" | "seqLen"> {
  /** Prune every linear weight to this fraction per output row at load (0..1). */
  sparsity?: number;
  /** Defaults to "magnitude" (Wanda needs `calibText`). */
  method?: PruneMethod;
  calibText?: string;
  /**
   * Store pruned linears in the sparse-bitmap layout and run the sparse kernels (default true when the
   * model is pruned: at load or a pruned folder); false runs the same zeros through the dense kernels.
   */
  kernels?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export async function applySparse(loaded: LoadedSource, options: SparseLoadOptions | undefined, prunedFolder: boolean): Promise<LoadedSource> {
  if (!options && !prunedFolder) return loaded;
  let out = loaded;
  if (options?.sparsity !== undefined) {
    const pruned = await prunedTensors(loaded, { method: options.method ?? "magnitude", sparsity: options.sparsity, calibText: options.calibText, onProgress: options.onProgress, sequences: options.sequences, seqLen: options.seqLen });
    out = withTensors(loaded, pruned);
  }
  const pruned = prunedFolder || options?.sparsity !== undefined;
  return (options?.kernels ?? pruned) ? sparsify(out) : out;
}
