import type { LoadedSource } from "../io/source.js";
import type { DType } from "../tensor/dtype.js";
import { blockElems } from "../quant/packed-raw.js";
import { elementCount } from "../tensor/raw.js";

function human(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) {
    bytes /= 1024;
    i++;
  }
  return `${bytes.toFixed(i === 0 ? 0 : 2)} ${units[i]}`;
}

/** A readable summary of a model source: architecture, sizes, formats and a memory estimate. */
export function describeModel(s: LoadedSource): string {
  const c = s.config;
  let params = 0;
  let weightBytes = 0;
  const formats = new Map<string, number>();
  for (const t of s.tensors.values()) {
    const n = elementCount(t.shape);
    params += n;
    weightBytes += t.data.byteLength;
    formats.set(t.dtype, (formats.get(t.dtype) ?? 0) + 1);
  }
  // f32 keys and values for every layer at the full context
  const kvBytes = 2 * c.numLayers * c.numKvHeads * c.headDim * c.maxPositions * 4;
  const bitsPerWeight = (weightBytes * 8) / Math.max(1, params);
  const lines = [
    `source        ${s.source} (${s.format})`,
    `architecture  ${c.architecture}`,
    `parameters    ${params.toLocaleString("en-US")} (${(params / 1e6).toFixed(2)} M)`,
    `layers        ${c.numLayers}, hidden ${c.hiddenSize}, feed-forward ${c.intermediateSize}`,
    `attention     ${c.numHeads} heads, ${c.numKvHeads} key/value heads, head dim ${c.headDim}` +
      `${c.attentionBias ? ", q/k/v bias" : ""}${c.qkNorm ? ", q/k norm" : ""}`,
    `rope          theta ${c.rope.theta}${c.rope.scaling ? `, ${c.rope.scaling.type} scaling x${c.rope.scaling.factor}` : ""}`,
    `context       ${c.maxPositions} positions`,
    `vocabulary    ${c.vocabSize} (tokenizer ${s.tokenizer.vocabSize})${c.tieEmbeddings ? ", tied embeddings" : ""}`,
    `formats       ${[...formats].map(([f, n]) => `${f} x${n}`).join(", ")} (${bitsPerWeight.toFixed(2)} bits/weight; ` +
      `block sizes ${[...formats.keys()].map((f) => `${f}:${blockElems(f as DType)}`).join(" ")})`,
    `memory        weights ${human(weightBytes)} + f32 KV cache at full context ${human(kvBytes)} = ${human(weightBytes + kvBytes)}`,
    `chat template ${s.tokenizer.chatTemplate ? "yes" : "none (the default template is used)"}`,
  ];
  return lines.join("\n");
}
