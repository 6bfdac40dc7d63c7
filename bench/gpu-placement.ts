/**
 * Why does one GEMV kernel on one shape run at two speeds? (docs/performance.md: on an H200, f16
 * 4096 x 14336 took ~36 us on some weight buffers and ~90 us on others.) This times the same f16 GEMV
 * over each of --buffers freshly allocated weights of the same shape, one buffer at a time (GPU
 * timestamps, --iters calls each), and prints every buffer's time, so a placement effect shows as a
 * spread between buffers, not between runs. Run it once per Dawn feature set to test a hypothesis:
 *
 *   node dist/bench/gpu-placement.js [--shape 4096x14336] [--buffers 12] [--iters 50] [--cycle] [--dawn enable-dawn-features=disable_resource_suballocation]
 *
 * --cycle times calls that go round the buffers (call i reads buffer i mod N) instead of one at a time.
 *
 * Prints one JSON line at the end (per-buffer us, min, max, the device, the flags).
 */
import { parseArgs } from "node:util";
import { createWebGpuBackend, type GpuTensor } from "../src/backend/webgpu/webgpu-backend.js";
import type { RawTensor } from "../src/tensor/raw.js";
import { measure } from "./gpu-timing.js";

const { values: a } = parseArgs({
  options: {
    shape: { type: "string", default: "4096x14336" },
    buffers: { type: "string", default: "12" },
    iters: { type: "string", default: "50" },
    dawn: { type: "string", multiple: true, default: [] },
    cycle: { type: "boolean", default: false },
  },
});
const [outF, inF] = a.shape!.split("x").map(Number) as [number, number];
const count = Number(a.buffers);
const iters = Number(a.iters);
if (!(outF > 0 && inF > 0 && count > 0 && iters > 0)) throw new Error("--shape OUTxIN, --buffers N and --iters N must be positive");

const b = await createWebGpuBackend({ profile: true, dawnFlags: a.dawn! });
// random f16 in [-1, 1): exponent bits kept small so no value is NaN or infinite
const bits = new Uint16Array(outF * inF);
let s = 1;
for (let i = 0; i < bits.length; i++) bits[i] = ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 16) & 0xbbff;
const raw: RawTensor = { name: "w", dtype: "f16", shape: [outF, inF], data: new Uint8Array(bits.buffer) };
const weights = Array.from({ length: count }, (_, i) => b.upload({ ...raw, name: `w${i}` }));
const x = b.activation(1, inF) as GpuTensor;
b.gpu.device.queue.writeBuffer(x.buf.buffer, 0, new Float32Array(inF).fill(0.01));
const out = b.activation(1, outF);
const us: number[] = [];
if (a.cycle) {
  // call i reads buffer i mod N, as a decode step reads each weight once: nothing stays warm
  const t = await measure(b, "matmul.gemv.f16", iters * count, (i) => b.matmul(out, x, weights[i % count]!));
  const ms = Number.isFinite(t.gpu) ? t.gpu : t.wall;
  us.push(ms * 1e3);
  console.log(`cycling ${count} buffers: ${(ms * 1e3).toFixed(1)} us a call, ${((outF * inF * 2) / ms / 1e6).toFixed(0)} GB/s of weights`);
}
for (const [i, w] of a.cycle ? [] : weights.entries()) {
  const t = await measure(b, "matmul.gemv.f16", iters, () => b.matmul(out, x, w));
  const ms = Number.isFinite(t.gpu) ? t.gpu : t.wall;
  us.push(ms * 1e3);
  console.log(`buffer ${String(i).padStart(2)}: ${(ms * 1e3).toFixed(1)} us, ${((outF * inF * 2) / ms / 1e6).toFixed(0)} GB/s of weights`);
}
console.log(JSON.stringify({ bench: "gpu-placement", device: b.description, flags: a.dawn, shape: a.shape, us, min: Math.min(...us), max: Math.max(...us) }));
b.dispose();
