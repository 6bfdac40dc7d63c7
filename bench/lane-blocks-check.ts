/**
 * The lane-blocks prototypes (bench/lane-blocks.ts) against the f64 sum of their formula on random data,
 * run before any timing (bench/gpu-gemv-anatomy.ts, bench/gpu-razer-gemv.ts) and by
 * test/bench/lane-blocks.test.ts on SwiftShader. Each check throws on the first mismatching row.
 *
 * - q4_0: random nibbles and f16 block scales, random int8 x with power-of-two block scales: the output
 *   must equal Σ_b d_w · d_x · Σ_i (n_i − 8) q_i.
 * - RaZeR: weights quantized by the engine (src/quant/razer.ts, heavy tails so every special value is
 *   picked; one all-zero group), and the reference is the engine's CPU unpack of them, so what each code
 *   means comes from the format's own decoder: the output must equal Σ_k ŵ_k · q_k · d_x(k) for every
 *   decoder, and R/S/U set (team sums and split K included).
 * Tolerance: 1e-5 · Σ |terms| (the f32 sums of exact integer dot products; spec §8.1.4's bound).
 */
import { BufferUsage, COMPUTE_STAGE, MAP_READ_MODE } from "../src/backend/webgpu/device.js";
import { quantFormat } from "../src/quant/formats.js";
import { blockI8Kernel, laneBlocksRows, razerLaneKernel, razerRunsLayout, xPlanes, RAZER_LANE_VARIANTS, type RazerLaneVariant } from "./lane-blocks.js";

/** R, S, U sets every check covers (split K, several rows a team, blocks in flight, the tail loop). */
export const CHECK_VARIANTS: readonly (readonly [number, number, number])[] = [[2, 2, 2], [1, 1, 4], [4, 4, 1]];

/** A small deterministic generator (the checks must not depend on Math.random). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/** Runs `code` (bindings: uniform P, xq, xs, w, sc, out) over n rows and reads the output back. */
async function runKernel(device: GPUDevice, code: string, params: ArrayBuffer, data: ArrayBufferView[], n: number, rowsPerGroup: number): Promise<Float32Array> {
  const kinds = ["uniform", "read-only-storage", "read-only-storage", "read-only-storage", "read-only-storage", "storage"] as const;
  const layout = device.createBindGroupLayout({ entries: kinds.map((type, binding) => ({ binding, visibility: COMPUTE_STAGE, buffer: { type } })) });
  const upload = (v: ArrayBufferView) => {
    const buf = device.createBuffer({ size: Math.max(16, Math.ceil(v.byteLength / 16) * 16), usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
    device.queue.writeBuffer(buf, 0, v.buffer as ArrayBuffer, v.byteOffset, v.byteLength);
    return buf;
  };
  const p = device.createBuffer({ size: Math.ceil(params.byteLength / 16) * 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
  device.queue.writeBuffer(p, 0, params);
  const out = device.createBuffer({ size: n * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
  const read = device.createBuffer({ size: n * 4, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  const bufs = [p, ...data.map(upload), out];
  try {
    device.pushErrorScope("validation");
    const pipe = device.createComputePipeline({ layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module: device.createShaderModule({ code }), entryPoint: "main" } });
    const err = await device.popErrorScope();
    if (err) throw new Error(`lane-blocks kernel does not compile: ${err.message}`);
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipe);
    pass.setBindGroup(0, device.createBindGroup({ layout, entries: bufs.map((buffer, binding) => ({ binding, resource: { buffer } })) }));
    pass.dispatchWorkgroups(Math.ceil(n / rowsPerGroup));
    pass.end();
    enc.copyBufferToBuffer(out, 0, read, 0, n * 4);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(MAP_READ_MODE);
    const got = new Float32Array(read.getMappedRange().slice(0));
    read.unmap();
    return got;
  } finally {
    for (const b of [...bufs, read]) b.destroy();
  }
}

/** Random int8 x quants and power-of-two block scales. */
function randomX(K: number, rnd: () => number): { q: Int8Array; d: Float32Array } {
  const q = new Int8Array(K).map(() => Math.floor(rnd() * 255) - 127);
  const d = Float32Array.from({ length: K / 32 }, () => 2 ** -Math.floor(2 + rnd() * 4));
  return { q, d };
}

function compare(what: string, got: Float32Array, want: Float64Array, bound: Float64Array): void {
  for (let r = 0; r < want.length; r++) {
    if (!(Math.abs(got[r]! - want[r]!) <= 1e-5 * bound[r]! + 1e-30)) throw new Error(`${what}: row ${r} gave ${got[r]}, want ${want[r]} (bound ${bound[r]})`);
  }
}

/** q4_0 blocks-i8 on n × K random data (K a multiple of 32). */
export async function checkBlocksQ4(device: GPUDevice, subgroups: boolean, n: number, K: number): Promise<string> {
  const blocks = K / 32;
  const rnd = lcg(12345);
  const wq = new Uint8Array(n * blocks * 16).map(() => Math.floor(rnd() * 256));
  const f16 = (v: number) => { const e = Math.floor(Math.log2(v)); return ((e + 15) << 10) | Math.round((v / 2 ** e - 1) * 1024); };
  const wd = Float64Array.from({ length: n * blocks }, () => 2 ** -Math.floor(1 + rnd() * 6) * 1.5);
  const scWords = new Uint16Array(n * blocks).map((_, i) => f16(wd[i]!));
  const x = randomX(K, rnd);
  const { planes, xs } = xPlanes(x.q, x.d);
  const want = new Float64Array(n);
  const bound = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < blocks; b++) {
      let dot = 0;
      for (let i = 0; i < 32; i++) {
        const byte = wq[(r * blocks + b) * 16 + (i % 16)]!;
        dot += ((i < 16 ? byte & 15 : byte >> 4) - 8) * x.q[32 * b + i]!;
      }
      want[r] += wd[r * blocks + b]! * x.d[b]! * dot;
      bound[r] += Math.abs(wd[r * blocks + b]! * x.d[b]! * dot);
    }
  }
  const params = new Uint32Array([n, K, 0, blocks]).buffer;
  for (const [R, S, U] of CHECK_VARIANTS) {
    const got = await runKernel(device, blockI8Kernel(R, S, U, subgroups), params, [planes, xs, wq, scWords], n, laneBlocksRows(R, S));
    compare(`blocks-i8 q4_0 R${R} S${S} U${U}`, got, want, bound);
  }
  return `blocks-i8 q4_0: ${n} rows x ${K} match the f64 sum of their formula (${CHECK_VARIANTS.map((v) => `R${v[0]} S${v[1]} U${v[2]}`).join(", ")})`;
}

/** Random weights with heavy tails (every special value gets picked) and one all-zero group, packed as RaZeR g128. */
export function randomRazer(n: number, K: number, seed = 777): { codes: Uint8Array; scales: Uint8Array; tensorScale: number; w: Float32Array } {
  const rnd = lcg(seed);
  const f = Float32Array.from({ length: n * K }, () => {
    const r = rnd();
    return (rnd() * 2 - 1) * (r < 0.02 ? 8 : r < 0.1 ? 3 : 1) * 0.05;
  });
  f.fill(0, 0, 128);
  const fmt = quantFormat("razer");
  const p = fmt.pack(f, n, K);
  return { codes: p.codes, scales: p.scales, tensorScale: p.tensorScale, w: fmt.unpack(p) };
}

/**
 * Every RaZeR runs decoder (or those in `variants`) on n × K weights (K a multiple of 128). `mutate`
 * rewrites the WGSL before it runs (the test's proof that a wrong decoder fails the check).
 */
export async function checkRazerLanes(device: GPUDevice, subgroups: boolean, n: number, K: number, variants: readonly RazerLaneVariant[] = RAZER_LANE_VARIANTS, mutate: (code: string) => string = (c) => c): Promise<string> {
  const wt = randomRazer(n, K);
  const svs = new Set<number>();
  for (let i = 1; i < wt.scales.length; i += 2) if (wt.scales[i - 1]! | wt.scales[i]!) svs.add(wt.scales[i]! >> 6);
  if (svs.size !== 4) throw new Error(`razer check: the random weights use special values ${[...svs].join(", ")} only`);
  const x = randomX(K, lcg(4242));
  const { planes, xs } = xPlanes(x.q, x.d);
  const want = new Float64Array(n);
  const bound = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    for (let k = 0; k < K; k++) {
      const t = wt.w[r * K + k]! * x.q[k]! * x.d[k >> 5]!;
      want[r] += t;
      bound[r] += Math.abs(t);
    }
  }
  for (const v of variants) {
    const { w, sc, srow } = razerRunsLayout(v, n, K, wt.codes, wt.scales);
    const params = new ArrayBuffer(32);
    new Uint32Array(params).set([n, K, 0, K / 32, srow]);
    new Float32Array(params)[5] = wt.tensorScale;
    for (const [R, S, U] of CHECK_VARIANTS) {
      const got = await runKernel(device, mutate(razerLaneKernel(v, R, S, U, subgroups)), params, [planes, xs, w, sc], n, laneBlocksRows(R, S));
      compare(`razer ${v} R${R} S${S} U${U}`, got, want, bound);
    }
  }
  return `razer runs (${variants.join(", ")}): ${n} rows x ${K} match the f64 sum over the engine's unpacked weights (${CHECK_VARIANTS.map((v) => `R${v[0]} S${v[1]} U${v[2]}`).join(", ")})`;
}
