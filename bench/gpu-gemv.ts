/**
 * WebGPU GEMV against the device's own copy bandwidth: a streaming copy kernel gives the achievable
 * GB/s (bytes read + written), then one-row matmuls of each weight format and shape report the weight
 * bytes read per second and their fraction of it. Times come from timestamp queries (each dispatch in
 * its own timed pass) when the adapter has them, and from wall time over many dispatches in one
 * submission otherwise (both are printed). Weights are cycled through enough copies (>= 192 MiB) that
 * each call reads DRAM, not the L2 cache, as a decode step over a whole model does.
 *
 *   node dist/bench/gpu-gemv.js [--quick] [--iters N] [--formats f16,q4_0] [--shapes 8192x8192,4096x14336]
 *                               [--rows-per-team 1,2,4]   (compare GEMV variants: weight rows per thread team)
 */
import { createWebGpuBackend, type GpuTensor } from "../src/backend/webgpu/webgpu-backend.js";
import type { GpuWeight } from "../src/backend/webgpu/weights.js";
import { copyBandwidth, measure } from "./gpu-timing.js";
import { byteSize, type BlockDType as DType } from "../src/tensor/dtype.js";

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const quick = args.includes("--quick");
const ITERS = Number(opt("--iters") ?? (quick ? 5 : 50));
const FORMATS = (opt("--formats") ?? "f32,f16,bf16,q8_0,q4_0").split(",") as DType[];
const SHAPES = (opt("--shapes") ?? (quick ? "256x512" : "8192x8192,4096x14336,14336x4096"))
  .split(",")
  .map((s) => s.split("x").map(Number) as [number, number]);
/** Rows per GEMV team to compare (default: the backend's choice only). */
const ROWS_PER_TEAM = opt("--rows-per-team")?.split(",").map(Number);
const COLD_BYTES = quick ? 4 << 20 : 192 << 20;
const COPY_BYTES = quick ? 4 << 20 : 512 << 20;

/** Random but finite weight bytes, made fast enough for 256 MiB tensors. */
function randomWeight(dtype: DType, outF: number, inF: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(byteSize(dtype, outF * inF));
  let s = (seed * 2654435761) >>> 0 || 1;
  const next = () => ((s ^= s << 13), (s ^= s >>> 17), (s ^= s << 5), s >>> 0);
  if (dtype === "f32") {
    const u = new Uint32Array(bytes.buffer);
    for (let i = 0; i < u.length; i++) { const r = next(); u[i] = (r & 0x8000_0000) | 0x3e00_0000 | (r & 0x007f_ffff); }
  } else if (dtype === "f16" || dtype === "bf16") {
    const u = new Uint32Array(bytes.buffer);
    const m = dtype === "f16" ? 0x33ff_33ff : 0x3e7f_3e7f;
    for (let i = 0; i < u.length; i++) u[i] = next() & (0x8000_8000 | m);
  } else {
    const u = new Uint32Array(bytes.buffer, 0, bytes.length >> 2);
    for (let i = 0; i < u.length; i++) u[i] = next();
    const bb = dtype === "q8_0" ? 34 : 18;
    for (let p = 0; p + 1 < bytes.length; p += bb) { bytes[p] = 0x00; bytes[p + 1] = 0x20; }
  }
  return bytes;
}

/** Bytes the GEMV actually reads from a weight in its GPU layout. */
function gpuBytes(w: GpuWeight): number {
  return w.parts.reduce((a, p) => a + p.data.size + (p.scales?.size ?? 0), 0);
}

const b = await createWebGpuBackend({ profile: true });
const dev = b.description;
console.log(`WebGPU GEMV on ${dev} (subgroups ${b.gpu.subgroups ? `min ${b.gpu.subgroupMinSize}` : "off"}, timestamps ${b.gpu.timestamps})`);

const { ms: copyMs, gbs: copyGBs } = await copyBandwidth(b, COPY_BYTES, ITERS);
console.log(`copy ${COPY_BYTES >> 20} MiB: ${(copyMs * 1e3).toFixed(1)} us, ${copyGBs.toPrecision(3)} GB/s (read + write)`);

interface Row { out: number; in: number; format: DType; rowsPerTeam: number; mib: number; gpuUs: number; wallUs: number; gbs: number; ofCopy: number }
const rows: Row[] = [];
console.log("out x in      format  R    MiB     GPU us   wall us   GB/s   of copy");
for (const [outF, inF] of SHAPES) {
  for (const format of FORMATS) {
    const one = randomWeight(format, outF, inF, 1);
    const copies = Math.max(1, Math.ceil(COLD_BYTES / one.length));
    const ws: GpuWeight[] = [];
    for (let c = 0; c < copies; c++) ws.push(b.upload({ name: `w${c}`, dtype: format, shape: [outF, inF], data: c === 0 ? one : randomWeight(format, outF, inF, c + 1) }));
    const x = b.activation(1, inF) as GpuTensor;
    b.gpu.device.queue.writeBuffer(x.buf.buffer, 0, new Float32Array(inF).fill(0.01));
    const out = b.activation(1, outF);
    const fallback = b.gemvRowsPerTeam[format];
    for (const R of ROWS_PER_TEAM ?? [fallback]) {
      b.gemvRowsPerTeam[format] = R;
      const t = await measure(b, `matmul.gemv.${format}`, ITERS, (i) => b.matmul(out, x, ws[i % copies]!));
      const ms = Number.isFinite(t.gpu) ? t.gpu : t.wall;
      const bytes = gpuBytes(ws[0]!) + (inF + outF) * 4;
      const gbs = bytes / ms / 1e6;
      const row = { out: outF, in: inF, format, rowsPerTeam: R, mib: bytes / 2 ** 20, gpuUs: t.gpu * 1e3, wallUs: t.wall * 1e3, gbs, ofCopy: gbs / copyGBs };
      rows.push(row);
      console.log(
        `${`${outF}x${inF}`.padEnd(13)} ${format.padEnd(6)} ${String(R).padStart(2)} ${row.mib.toFixed(1).padStart(6)} ${row.gpuUs.toFixed(1).padStart(9)} ${row.wallUs.toFixed(1).padStart(9)} ${gbs.toPrecision(3).padStart(6)} ${(row.ofCopy * 100).toFixed(0).padStart(7)}%`,
      );
    }
    b.gemvRowsPerTeam[format] = fallback;
    for (const w of ws) for (const p of w.parts) { b.pool.destroy(p.data); if (p.scales) b.pool.destroy(p.scales); }
  }
}
console.log(JSON.stringify({ bench: "gpu-gemv", device: dev, copyGBs, rows }));
b.dispose();
