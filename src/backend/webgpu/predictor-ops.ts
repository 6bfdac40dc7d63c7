/**
 * The WebGPU side of `DevicePredictorOps` (src/backend/backend.ts): the few predictor ops of TokenButler
 * that the model's op set lacks, as dispatches of kernels/tokenbutler.ts recorded into the step's one
 * submission. src/kv/tokenbutler/device-predictor.ts runs the rest of the predictor with backend ops.
 */
import type { DevicePredictorOps, SelectState, Tensor, Weight } from "../backend.js";
import type { Buf } from "./buffers.js";
import { f32bits, grid, type Kernel } from "./kernel.js";
import { POINTWISE_GROUP, SCORES_GROUP, butlerScoresKernel, geluKernel, layerNormKernel, siluKernel, writeRowsKernel } from "./kernels/tokenbutler.js";
import type { GpuSelectState } from "./select-ops.js";
import type { GpuTensor } from "./webgpu-backend.js";
import type { GpuWeight } from "./weights.js";

type Run = (k: Kernel, params: ArrayLike<number>, bufs: readonly Buf[], groups: readonly [number, number]) => void;

export class GpuPredictorOps implements DevicePredictorOps {
  constructor(private readonly run: Run) {}

  layerNorm(out: Tensor, x: Tensor, weight: Weight, bias: Weight, eps: number): void {
    const o = out as GpuTensor, xt = x as GpuTensor, w = weight as GpuWeight, b = bias as GpuWeight;
    for (const v of [w, b]) {
      if (v.outFeatures !== 1 || v.inFeatures !== xt.cols) throw new Error(`layerNorm ${v.name}: [${v.shape.join(", ")}] does not fit rows of ${xt.cols}`);
    }
    if (o.cols !== xt.cols || o.rows < xt.rows || o.buf === xt.buf) throw new Error(`layerNorm: out [${o.rows}, ${o.cols}] must be a distinct tensor of x's shape [${xt.rows}, ${xt.cols}]`);
    this.run(layerNormKernel(), [xt.rows, xt.cols, f32bits(eps)], [o.buf, xt.buf, w.parts[0]!.data, b.parts[0]!.data], grid(xt.rows));
  }

  gelu(x: Tensor): void {
    this.pointwise(geluKernel(), x as GpuTensor);
  }

  silu(x: Tensor): void {
    this.pointwise(siluKernel(), x as GpuTensor);
  }

  writeRows(dst: Tensor, src: Tensor, row0: number): void {
    const d = dst as GpuTensor, s = src as GpuTensor;
    if (s.cols !== d.cols || row0 < 0 || row0 + s.rows > d.rows) throw new Error(`writeRows: [${s.rows}, ${s.cols}] at row ${row0} does not fit [${d.rows}, ${d.cols}]`);
    const n = s.rows * s.cols;
    this.run(writeRowsKernel(), [n, row0 * d.cols], [d.buf, s.buf], grid(Math.ceil(n / POINTWISE_GROUP)));
  }

  scores(state: SelectState, q: Tensor, keys: Tensor, layer: number, layers: number, n: number, dPrime: number, pinLo = 0, pinHi = n): void {
    const st = state as GpuSelectState, qt = q as GpuTensor, kt = keys as GpuTensor;
    const width = st.heads * layers * dPrime;
    if (qt.rows !== 1 || qt.cols !== width || kt.cols !== width) throw new Error(`TokenButler scores: q̃ [${qt.rows}, ${qt.cols}] and K̃ rows of ${kt.cols}, expected one row and rows of ${st.heads} heads x ${layers} layers x ${dPrime}`);
    if (!(layer >= 0 && layer < layers) || n < 1 || n > kt.rows || n > st.capacity) throw new Error(`TokenButler scores: layer ${layer} of ${layers}, ${n} positions (keys hold ${kt.rows}, lists ${st.capacity})`);
    if (!(Number.isInteger(pinLo) && Number.isInteger(pinHi) && pinLo >= 0 && pinLo <= pinHi && pinHi <= n)) throw new Error(`TokenButler scores: pinned ranges [0, ${pinLo}) and [${pinHi}, ${n}) are not 0 <= lo <= hi <= n`);
    const tiles = Math.ceil(n / SCORES_GROUP);
    this.run(butlerScoresKernel(), [n, st.heads, layers, layer, dPrime, width, st.capacity, f32bits(1 / Math.sqrt(dPrime)), tiles, pinLo, pinHi], [st.keys, qt.buf, kt.buf], grid(st.heads * tiles));
  }

  private pointwise(k: Kernel, x: GpuTensor): void {
    const n = x.rows * x.cols;
    this.run(k, [n], [x.buf], grid(Math.ceil(n / POINTWISE_GROUP)));
  }
}
