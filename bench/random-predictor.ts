/**
 * A TokenButler predictor with random weights for a model shape (the export format of
 * training/tokenbutler/train_tokenbutler.py that src/kv/tokenbutler/predictor.ts reads): speed benchmarks
 * of `--kv tokenbutler` on random-weight models, whose selection quality means nothing. Weights are
 * uniform in ±1/√fan_in so activations keep their scale through the layers; norms are 1, biases 0.
 */
import { writeFileSync } from "node:fs";
import { predictorParameters, predictorShapes, type PredictorConfig } from "../src/kv/tokenbutler/predictor.js";
import { Rng } from "../src/generate/sampler.js";

/** Writes the predictor for `config` to `file` (f32 safetensors with the tokenbutler JSON header). */
export function writeRandomPredictor(file: string, config: PredictorConfig, seed = 1): void {
  const rng = new Rng(seed);
  const tensors: [string, number[], Float32Array][] = [];
  for (const [name, shape] of predictorShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const t = new Float32Array(n);
    if (name.startsWith("norm")) t.fill(name.endsWith(".weight") ? 1 : 0);
    else if (!name.endsWith(".bias")) {
      const bound = 1 / Math.sqrt(shape[shape.length - 1]!);
      for (let i = 0; i < n; i++) t[i] = (rng.next() * 2 - 1) * bound;
    }
    tensors.push([name, shape, t]);
  }
  const meta = {
    E: config.hidden, N: config.layers, H: config.heads, rho: config.reduce, dprime: config.dPrime, intdim: config.intDim,
    rope_theta: config.ropeTheta, slot: "sigma = head * N + layer", training_keep: 0, parameters: predictorParameters(config), note: "random weights (bench/random-predictor.ts)",
  };
  const header: Record<string, unknown> = { __metadata__: { tokenbutler: JSON.stringify(meta) } };
  let offset = 0;
  for (const [name, shape, t] of tensors) {
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + t.byteLength] };
    offset += t.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.byteLength), true);
  out.set(head, 8);
  let p = 8 + head.byteLength;
  for (const [, , t] of tensors) {
    out.set(new Uint8Array(t.buffer, t.byteOffset, t.byteLength), p);
    p += t.byteLength;
  }
  writeFileSync(file, out);
}
