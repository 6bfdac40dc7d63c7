/**
 * What packed-kernels.wat needs to know about src/quant's formats: a format id, the per-row byte counts of
 * codes and scales, and a per-format table block in the arena (a 256-entry f32 table for byte scales, then
 * 16-entry f32 level tables, "LUTs", stored as four byte planes for i8x16.swizzle). The LUTs are built from
 * the formats' own reference decoders, so the kernels cannot drift from unpack().
 */
import type { Arena } from "./arena.js";
import type { PackedDType } from "../../tensor/dtype.js";
import { quantFormat } from "../../quant/formats.js";
import { groupsPerRow } from "../../quant/format.js";
import { e2m1Value, e3m3Value, e4m3Value } from "../../quant/minifloat.js";
import { NF4_LEVELS } from "../../quant/nf4.js";
import { razerCodeValue } from "../../quant/razer.js";
import { nvfp4RazerSpecialValue } from "../../quant/nvfp4-razer.js";

/** Format ids of packed-kernels.wat. */
export const PACKED_FMT: Record<PackedDType, number> = {
  fp4: 1, nf4: 2, "int4-asym": 3, razer: 4, nvfp4: 5, "nvfp4-razer": 6, int8: 7,
};

/** A packed weight's shape as the kernels see it. */
export interface PackedShape {
  fmt: number;
  /** Weights per group (the row length for int8). */
  group: number;
  /** Row length padded to whole groups: activation rows are laid out with this stride. */
  paddedCols: number;
  codeBytesPerRow: number;
  scaleBytesPerRow: number;
  /** Byte offset of the scales (and, 4 bytes after them, the f32 tensor scale) from the weight's start. */
  scalesAt: number;
}

export function packedShape(dtype: PackedDType, rows: number, cols: number): PackedShape {
  const f = quantFormat(dtype);
  const one = f.layout(1, cols);
  const all = f.layout(rows, cols);
  const group = f.groupSize || cols;
  if (dtype !== "int8" && group % 16 !== 0) throw new Error(`${dtype}: the kernels need groups of a multiple of 16, not ${group}`);
  return {
    fmt: PACKED_FMT[dtype],
    group,
    paddedCols: dtype === "int8" ? cols : groupsPerRow(cols, group) * group,
    codeBytesPerRow: one.codeBytes,
    scaleBytesPerRow: one.scaleBytes,
    scalesAt: all.codeBytes,
  };
}

/** Level value of `code` in LUT variant `v` of a format. */
function level(dtype: PackedDType, v: number, code: number): number {
  switch (dtype) {
    case "fp4": case "nvfp4": return e2m1Value(code);
    case "nf4": return NF4_LEVELS[code]!;
    case "int4-asym": return code - v; // v = the zero point
    case "razer": return razerCodeValue(v << 14, code);
    case "nvfp4-razer": return code === 0 ? nvfp4RazerSpecialValue(v << 6, 8) : code === 8 ? 0 : e2m1Value(code);
    case "int8": return 0;
  }
}

const VARIANTS: Record<PackedDType, number> = { fp4: 1, nvfp4: 1, nf4: 1, "int4-asym": 16, razer: 4, "nvfp4-razer": 4, int8: 0 };

/** The table block of a format: 1024 bytes of byte-scale values, then 64 bytes per LUT variant. */
export function packedTables(dtype: PackedDType): Uint8Array {
  const n = VARIANTS[dtype];
  const bytes = new Uint8Array(1024 + 64 * Math.max(1, n));
  const scales = new Float32Array(bytes.buffer, 0, 256);
  for (let b = 0; b < 256; b++) scales[b] = dtype === "nvfp4" ? e4m3Value(b) : dtype === "nvfp4-razer" ? e3m3Value(b & 63) : 0;
  const one = new Float32Array(1);
  const oneBytes = new Uint8Array(one.buffer);
  for (let v = 0; v < n; v++) {
    for (let c = 0; c < 16; c++) {
      one[0] = level(dtype, v, c);
      for (let j = 0; j < 4; j++) bytes[1024 + 64 * v + 16 * j + c] = oneBytes[j]!;
    }
  }
  return bytes;
}

const inArena = new WeakMap<Arena, Map<PackedDType, number>>();

/** The arena offset of a format's table block (written once per arena). */
export function packedTablesIn(arena: Arena, dtype: PackedDType): number {
  let m = inArena.get(arena);
  if (!m) inArena.set(arena, (m = new Map()));
  let at = m.get(dtype);
  if (at === undefined) {
    const t = packedTables(dtype);
    at = arena.alloc(t.byteLength);
    new Uint8Array(arena.memory.buffer, at, t.byteLength).set(t);
    m.set(dtype, at);
  }
  return at;
}

let compiled: Promise<WebAssembly.Module | undefined> | undefined;

/** The compiled packed-format kernels, or undefined where WebAssembly SIMD or the file is missing (a web page that does not ship it). */
export function packedKernelModule(): Promise<WebAssembly.Module | undefined> {
  compiled ??= (async () => {
    const url = new URL("./packed-kernels.wasm", import.meta.url);
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      if (typeof process !== "undefined" && process.versions?.node) {
        const { readFile } = await import("node:fs/promises");
        const { fileURLToPath } = await import("node:url");
        bytes = new Uint8Array(await readFile(fileURLToPath(url)));
      } else {
        const res = await fetch(url);
        if (!res.ok) return undefined;
        bytes = new Uint8Array(await res.arrayBuffer());
      }
    } catch {
      return undefined;
    }
    if (!WebAssembly.validate(bytes)) return undefined;
    return WebAssembly.compile(bytes);
  })();
  return compiled;
}
