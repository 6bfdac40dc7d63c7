/**
 * 3-bit code storage for the 3-bit formats (int3-asym, fp3-razer): a row holds ceil(cols/g)·g codes (padded to
 * whole groups), element k of a row in bits 3k .. 3k+2 of the row read as one little-endian bit string (bit b
 * is bit b mod 8 of byte b/8), so 8 codes fill 3 bytes and a code may straddle two bytes. Groups are multiples
 * of 8, so every row is whole bytes.
 */
import { groupsPerRow } from "./format.js";

/** Bytes of 3-bit codes for [rows, cols] with groups of g (each row padded to whole groups). */
export function tribitBytes(rows: number, cols: number, g: number): number {
  return (rows * groupsPerRow(cols, g) * g * 3) / 8;
}

/** Throws unless g is a positive multiple of 8 (rows of whole bytes). */
export function checkTribitGroup(format: string, g: number): void {
  if (!Number.isInteger(g) || g <= 0 || g % 8 !== 0) throw new Error(`${format}: group size ${g} is not a positive multiple of 8`);
}

/** Code k of the bit string starting at byte `off`. */
export function getTribit(bytes: Uint8Array, off: number, k: number): number {
  const bit = 3 * k, i = off + (bit >> 3), sh = bit & 7;
  // bytes[i + 1] is only read when the code straddles it (sh > 5), so the row's last byte bounds the read
  return ((sh > 5 ? bytes[i]! | (bytes[i + 1]! << 8) : bytes[i]!) >> sh) & 7;
}

/** Writes code c (0..7) as code k of the bit string starting at byte `off`. */
export function setTribit(bytes: Uint8Array, off: number, k: number, c: number): void {
  const bit = 3 * k, i = off + (bit >> 3), sh = bit & 7;
  bytes[i] = (bytes[i]! & ~(7 << sh)) | ((c << sh) & 0xff);
  if (sh > 5) bytes[i + 1] = (bytes[i + 1]! & ~(7 >> (8 - sh))) | (c >> (8 - sh));
}

export class Tribits {
  readonly bytesPerRow: number;
  readonly bytes: Uint8Array;
  constructor(rows: number, cols: number, g: number, pad: number, bytes?: Uint8Array) {
    this.bytesPerRow = (groupsPerRow(cols, g) * g * 3) / 8;
    if (bytes) this.bytes = bytes;
    else {
      this.bytes = new Uint8Array(rows * this.bytesPerRow);
      if (pad !== 0) for (let r = 0; r < rows; r++) for (let k = 0; k < (this.bytesPerRow * 8) / 3; k++) this.set(r, k, pad);
    }
  }
  get(row: number, k: number): number {
    return getTribit(this.bytes, row * this.bytesPerRow, k);
  }
  set(row: number, k: number, c: number): void {
    setTribit(this.bytes, row * this.bytesPerRow, k, c);
  }
}
