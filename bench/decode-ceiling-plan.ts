/**
 * What a synthetic batch-1 decode step of bench/gpu-decode-ceiling.ts reads, and in which dispatches.
 * The memory is a q4_0 Llama's as the WebGPU engine holds it (weights.ts's "blocks" layout: a weight
 * group's quants, 16 bytes a 32-weight block, then its f16 scales, 2 bytes a block; the engine stacks
 * q/k/v and gate/up) and its f32 KV cache up to `kvDepth` positions. Three ways to read it:
 * - "engine": the dispatches the engine records for one pipelined q4_0 step, in its order, each named
 *   by the engine kernel it stands for (test/bench/decode-ceiling.test.ts compares the two sequences on
 *   a real model): a GEMV per weight group, the attention's KV reads, and a tiny dispatch for every
 *   kernel that reads no weights;
 * - "minimal": the fewest dependent dispatches a Llama step needs without a grid-wide barrier, five a
 *   layer (norm + q/k/v, RoPE + KV write + attention, o + residual, norm + gate/up + SwiGLU, down +
 *   residual), then norm + lm_head and argmax;
 * - "one-pass": every byte in one dispatch, the DRAM floor through a WebGPU kernel.
 * Pure bookkeeping, no GPU: the test checks the byte counts against its own sum of the shapes.
 */
import type { ModelConfig } from "../src/model/config.js";

export const CEILING_CONFIGS = ["engine", "minimal", "one-pass"] as const;
export type CeilingConfig = (typeof CEILING_CONFIGS)[number];

/** A stretch of memory a step reads once: a weight group's quants or scales, or a layer's K or V. */
export interface Region {
  readonly name: string;
  readonly bytes: number;
}

/** A q4_0 weight group as the engine uploads it: `rows` rows of `k` weights. */
export interface Matrix {
  readonly name: string;
  readonly rows: number;
  readonly k: number;
  readonly quants: Region;
  readonly scales: Region;
  /** Whether the engine's GEMV over it holds (gate, up) row pairs in a team (its rows per team differ). */
  readonly pairs: boolean;
}

export type Dispatch =
  /** Streams a weight group with a GEMV's grid and loads. */
  | { readonly kind: "gemv"; readonly role: string; readonly matrix: Matrix; readonly engineKernel?: string }
  /** Streams regions (a layer's K and V) flat. */
  | { readonly kind: "stream"; readonly role: string; readonly regions: readonly Region[]; readonly engineKernel?: string }
  /** One workgroup, one word: a dispatch's fixed cost and nothing else. */
  | { readonly kind: "tiny"; readonly role: string; readonly engineKernel?: string }
  /** Streams every region of the step. */
  | { readonly kind: "all"; readonly role: string };

export interface StepMemory {
  readonly layers: readonly { qkv: Matrix; o: Matrix; gateUp: Matrix; down: Matrix; k?: Region; v?: Region }[];
  readonly lmHead: Matrix;
  /** Every region, in the order they are laid out in memory. */
  readonly regions: readonly Region[];
}

/** q4_0 bytes of `rows` x `k` weights: 18 bytes a 32-weight block. */
export const q4Bytes = (rows: number, k: number) => (rows * k / 32) * 18;

function matrix(name: string, rows: number, k: number, pairs = false): Matrix {
  // the engine pads a row's scales to a multiple of 8 (weights.ts scaleStride): with 8 | blocks there is
  // no padding, so the bytes read are exactly the file's
  if (!(Number.isInteger(rows) && rows > 0 && k > 0 && k % 256 === 0)) {
    throw new Error(`${name}: ${rows} x ${k} is not whole rows of a multiple of 256 weights (8 q4_0 blocks), as the ceiling benchmark needs`);
  }
  const blocks = (rows * k) / 32;
  return { name, rows, k, quants: { name: `${name} quants`, bytes: blocks * 16 }, scales: { name: `${name} scales`, bytes: blocks * 2 }, pairs };
}

/** The weights (q4_0) and f32 KV cache at `kvDepth` positions one decode step of `c` reads. */
export function stepMemory(c: ModelConfig, kvDepth: number): StepMemory {
  if (!(Number.isInteger(kvDepth) && kvDepth >= 0)) throw new Error(`KV depth must be a non-negative integer, got ${kvDepth}`);
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const regions: Region[] = [];
  const layers = Array.from({ length: c.numLayers }, (_, l) => {
    const kv = (which: string): Region | undefined => (kvDepth > 0 ? { name: `layer ${l} ${which}`, bytes: kvDepth * kvDim * 4 } : undefined);
    const layer = {
      qkv: matrix(`layer ${l} q/k/v`, qDim + 2 * kvDim, c.hiddenSize),
      o: matrix(`layer ${l} o`, c.hiddenSize, qDim),
      gateUp: matrix(`layer ${l} gate/up`, 2 * c.intermediateSize, c.hiddenSize, true),
      down: matrix(`layer ${l} down`, c.hiddenSize, c.intermediateSize),
      k: kv("K"),
      v: kv("V"),
    };
    for (const m of [layer.qkv, layer.o, layer.gateUp, layer.down]) regions.push(m.quants, m.scales);
    if (layer.k && layer.v) regions.push(layer.k, layer.v);
    return layer;
  });
  const lmHead = matrix("lm_head", c.vocabSize, c.hiddenSize);
  regions.push(lmHead.quants, lmHead.scales);
  return { layers, lmHead, regions };
}

/** The dispatches of one step of `config`, in recording order. */
export function stepPlan(config: CeilingConfig, m: StepMemory): Dispatch[] {
  const gemv = (role: string, matrix: Matrix, engineKernel?: string): Dispatch => ({ kind: "gemv", role, matrix, ...(engineKernel ? { engineKernel } : {}) });
  const attention = (l: StepMemory["layers"][number], role: string, engineKernel?: string): Dispatch =>
    l.k && l.v ? { kind: "stream", role, regions: [l.k, l.v], ...(engineKernel ? { engineKernel } : {}) } : { kind: "tiny", role, ...(engineKernel ? { engineKernel } : {}) };
  const tiny = (role: string, engineKernel?: string): Dispatch => ({ kind: "tiny", role, ...(engineKernel ? { engineKernel } : {}) });
  switch (config) {
    case "engine":
      // the kernel names of webgpu-backend.ts's q4_0 int8 path (self-quantizing GEMVs with fused norms)
      return [
        tiny("embed", "embed.q4_0.picked.blocks"),
        ...m.layers.flatMap((l) => [
          gemv("norm + q/k/v + rope + kv write", l.qkv, "matmul.gemvq.q4_0.blocks.norm.qkvrope"),
          attention(l, "attention", "attention.partial"),
          tiny("attention combine", "attention.combine"),
          gemv("o + residual", l.o, "matmul.gemvq.q4_0.blocks.add"),
          gemv("norm + gate/up + swiglu", l.gateUp, "matmul.gemvq.q4_0.blocks.norm.swiglu"),
          gemv("down + residual", l.down, "matmul.gemvq.q4_0.blocks.add"),
        ]),
        tiny("final norm", "rmsnorm"),
        gemv("lm_head", m.lmHead, "matmul.gemvq.q4_0.blocks"),
        tiny("argmax parts", "argmax"),
        tiny("argmax final", "argmax"),
      ];
    case "minimal":
      // the embedding row is read by layer 0's first dispatch, the final norm by lm_head's
      return [
        ...m.layers.flatMap((l) => [
          gemv("norm + q/k/v", l.qkv),
          attention(l, "rope + kv write + attention"),
          gemv("o + residual", l.o),
          gemv("norm + gate/up + swiglu", l.gateUp),
          gemv("down + residual", l.down),
        ]),
        gemv("norm + lm_head", m.lmHead),
        tiny("argmax"),
      ];
    case "one-pass":
      return [{ kind: "all", role: "every weight and the KV cache" }];
  }
}

/** The regions a dispatch reads. */
export function dispatchRegions(d: Dispatch, m: StepMemory): readonly Region[] {
  switch (d.kind) {
    case "gemv":
      return [d.matrix.quants, d.matrix.scales];
    case "stream":
      return d.regions;
    case "tiny":
      return [];
    case "all":
      return m.regions;
  }
}

/** Bytes a step of `plan` reads. */
export function planBytes(plan: readonly Dispatch[], m: StepMemory): number {
  return plan.reduce((s, d) => s + dispatchRegions(d, m).reduce((t, r) => t + r.bytes, 0), 0);
}
