/**
 * One shape's synthetic decode step on the device (bench/gpu-decode-ceiling.ts): its weights and KV cache
 * in a few "arenas" filled with fillKernel's words, and each configuration's dispatches
 * (decode-ceiling-plan.ts) ready to record through the engine's recorder, with the sum each must give
 * when it runs as a check (decode-ceiling-kernels.ts).
 */
import type { WebGpuBackend } from "../src/backend/webgpu/webgpu-backend.js";
import type { Buf } from "../src/backend/webgpu/buffers.js";
import { grid, type Kernel } from "../src/backend/webgpu/kernel.js";
import { GEMV_BLOCKS_QUANT } from "../src/backend/webgpu/kernels/gemv-blocks.js";
import { swigluRowsPerTeam } from "../src/backend/webgpu/kernels/gemv-fused.js";
import { CEILING_CONFIGS, type CeilingConfig, type Dispatch, type Region, type StepMemory, planBytes, stepPlan } from "./decode-ceiling-plan.js";
import { fillKernel, loadsGemvKernel, loadsGemvRows, streamKernel, streamParams, tinyKernel } from "./decode-ceiling-kernels.js";
import { rangeSums, type SumRange } from "./decode-ceiling-sums.js";

/** A sum a read never equals in a timed run (a match would only cost a store). */
export const MAGIC = 0x9e3779b9;

/** The host's sums of each region's words and of the gaps between regions. */
interface Sums {
  regions: Map<Region, number>;
  gaps: number;
}

export interface StepOptions {
  /** Bytes an arena may hold (a multiple of 256, within the device's binding and buffer limits). */
  cap: number;
  /** Lanes of a GEMV team (kernels/matmul.ts gemvTeam). */
  team: number;
  /** Compute the host's sums that check() compares with (a few seconds of host time at 8B). */
  check: boolean;
}

/** Regions packed into arenas of at most `cap` bytes, each at a 256-byte aligned offset. */
export function layout(regions: readonly Region[], cap: number): { at: Map<Region, { arena: number; offset: number }>; used: number[] } {
  const at = new Map<Region, { arena: number; offset: number }>();
  const used: number[] = [];
  for (const r of regions) {
    if (r.bytes % 16 !== 0) throw new Error(`${r.name}: ${r.bytes} bytes is not whole vec4s`);
    if (r.bytes > cap) throw new Error(`${r.name}: ${r.bytes} bytes exceed an arena of ${cap} (--arena-mib, or the device's binding limit)`);
    let i = used.length - 1;
    let offset = i >= 0 ? Math.ceil(used[i]! / 256) * 256 : 0;
    if (i < 0 || offset + r.bytes > cap) {
      used.push(0);
      i++;
      offset = 0;
    }
    at.set(r, { arena: i, offset });
    used[i] = offset + r.bytes;
  }
  return { at, used };
}

const seedOf = (arena: number) => Math.imul(arena + 1, 0x9e3779b9) >>> 0;

/** One dispatch ready to record: the timed and the checking kernel, its parameter words, buffers and grid. */
export interface Op {
  role: string;
  kernel: Kernel;
  checkKernel: Kernel;
  params: number[];
  bufs: Buf[];
  groups: [number, number];
  /** The sum its check must give. */
  expect: number;
}

/** The memory of one shape on the device, and the ops of each configuration over it. */
export class Step {
  readonly arenas: Buf[];
  readonly sink: Buf;
  readonly ops: Map<CeilingConfig, Op[]>;
  readonly bytes: Map<CeilingConfig, number>;

  /** Lays out and fills `mem` on `b`'s device; with `o.check`, first sums on the host what check() expects. */
  static async create(b: WebGpuBackend, mem: StepMemory, o: StepOptions): Promise<Step> {
    const placed = layout(mem.regions, o.cap);
    const { at, used } = placed;
    const most = b.gpu.device.limits.maxStorageBuffersPerShaderStage;
    if (used.length + 1 > most) throw new Error(`${used.length} arenas and the sink need more storage bindings than the device's ${most} for one-pass: raise --arena-mib`);
    let sums: Sums | undefined;
    if (o.check) {
      // every region's words, and the gaps between regions, which one-pass reads too
      const gaps: SumRange[] = [];
      const end = used.map(() => 0);
      for (const r of mem.regions) {
        const p = at.get(r)!;
        if (p.offset > end[p.arena]!) gaps.push({ seed: seedOf(p.arena), from: end[p.arena]! / 4, to: p.offset / 4 });
        end[p.arena] = p.offset + r.bytes;
      }
      const regionRanges = mem.regions.map((r) => { const p = at.get(r)!; return { seed: seedOf(p.arena), from: p.offset / 4, to: (p.offset + r.bytes) / 4 }; });
      const all = await rangeSums([...regionRanges, ...gaps]);
      sums = { regions: new Map(mem.regions.map((r, i) => [r, all[i]!])), gaps: all.slice(mem.regions.length).reduce((x, y) => (x + y) | 0, 0) };
    }
    return new Step(b, mem, o.team, placed, sums);
  }

  private constructor(private readonly b: WebGpuBackend, readonly mem: StepMemory, team: number, placed: ReturnType<typeof layout>, private readonly sums?: Sums) {
    const { at, used } = placed;
    const pool = b.pool;
    this.arenas = used.map((u, i) => pool.storage(u, `ceiling arena ${i}`));
    for (const [i, arena] of this.arenas.entries()) b.recorder.dispatch(fillKernel(), [arena.size / 16, seedOf(i)], [arena], grid(Math.ceil(arena.size / 16 / 256)));
    const plans = CEILING_CONFIGS.map((c) => [c, stepPlan(c, mem)] as const);
    this.sink = pool.storage(Math.max(...plans.map(([, p]) => p.length), 4) * 4, "ceiling sink");
    const buf = (r: Region) => {
      const p = at.get(r)!;
      return pool.subrange(this.arenas[p.arena]!, p.offset, r.bytes);
    };
    const sumOf = (rs: readonly Region[]) => rs.reduce((s, r) => (s + (sums?.regions.get(r) ?? 0)) | 0, 0) >>> 0;
    const R = GEMV_BLOCKS_QUANT.rowsPerTeam;
    const U = GEMV_BLOCKS_QUANT.unroll;
    const op = (d: Dispatch, slot: number): Op => {
      switch (d.kind) {
        case "gemv": {
          const m = d.matrix;
          const rpt = m.pairs ? swigluRowsPerTeam(R) : R;
          return {
            role: d.role, kernel: loadsGemvKernel(team, rpt, U, false), checkKernel: loadsGemvKernel(team, rpt, U, true),
            params: [m.rows, m.k / 32, slot, MAGIC], bufs: [buf(m.quants), buf(m.scales), this.sink],
            groups: grid(Math.ceil(m.rows / loadsGemvRows(team, rpt))), expect: sumOf([m.quants, m.scales]),
          };
        }
        case "stream":
        case "all": {
          const regions = d.kind === "stream" ? d.regions : undefined;
          const bufs = regions ? regions.map(buf) : this.arenas.map((ar, i) => pool.subrange(ar, 0, used[i]!));
          const { words, groups } = streamParams(slot, MAGIC, bufs.map((x) => x.size / 16));
          return {
            role: d.role, kernel: streamKernel(bufs.length, false), checkKernel: streamKernel(bufs.length, true),
            params: words, bufs: [...bufs, this.sink], groups: grid(groups), expect: regions ? sumOf(regions) : (sumOf(mem.regions) + (sums?.gaps ?? 0)) >>> 0,
          };
        }
        case "tiny":
          return { role: d.role, kernel: tinyKernel(), checkKernel: tinyKernel(), params: [slot], bufs: [this.sink], groups: [1, 1], expect: 1 };
      }
    };
    this.ops = new Map(plans.map(([c, p]) => [c, p.map(op)]));
    this.bytes = new Map(plans.map(([c, p]) => [c, c === "one-pass" ? used.reduce((s, u) => s + u, 0) : planBytes(p, mem)]));
  }

  /** Records one step through the engine's recorder and submits it with a 4-byte readback, as pickAhead does. */
  record(config: CeilingConfig, check = false): Promise<ArrayBuffer> {
    const rec = this.b.recorder;
    for (const o of this.ops.get(config)!) rec.dispatch(check ? o.checkKernel : o.kernel, o.params, o.bufs, o.groups);
    return rec.read(this.sink.buffer, 0, check ? 4 * this.ops.get(config)!.length : 4);
  }

  /** Runs one checking step of `config` and compares every dispatch's sum with the host's. */
  async check(config: CeilingConfig): Promise<void> {
    if (!this.sums) throw new Error("this step was made without the host's sums (StepOptions.check)");
    const ops = this.ops.get(config)!;
    this.b.gpu.device.queue.writeBuffer(this.sink.buffer, 0, new Uint32Array(this.sink.size / 4));
    const got = new Uint32Array(await this.record(config, true));
    for (const [i, o] of ops.entries()) {
      if (got[i] !== o.expect) throw new Error(`check ${config}: dispatch ${i} (${o.role}) added ${got[i]}, the bytes it should read sum to ${o.expect}`);
    }
  }

  destroy(): void {
    for (const ar of this.arenas) this.b.pool.destroy(ar);
    this.b.pool.destroy(this.sink);
  }
}
