/**
 * Converters between our RaZeR code convention (standard E2M1, 0x0 = special value, 0x8 = zero, SV sign only in
 * the scale word) and the two reference-code conventions of spec §5, for parity runs against those codebases:
 *
 * - v1 kernel (`RaZeR-kernel`, quirk 1): code = (magnitude index << 1) | sign over the magnitude table
 *   [0.5, ZERO, 1, 1.5, 2, 3, 4, 6]; code 2 (+ZERO) is the zero and code 3 (−ZERO) the special value.
 * - v2 g128 packer (quirk 3): a negative-SV group stores a negated scale and has bit 3 of every non-zero,
 *   non-sentinel code flipped, so that scale × code value is unchanged and the sentinel decodes to |sv| × scale.
 */

/** Our code → the v1 kernel's code (a fixed permutation of 0..15). */
export function razerToV1(code: number): number {
  if (code === 0x0) return 3;
  if (code === 0x8) return 2;
  const m3 = code & 7;
  return ((m3 === 1 ? 0 : m3) << 1) | (code >> 3);
}

/** The v1 kernel's code → our code (inverse of razerToV1). */
export function razerFromV1(v1: number): number {
  const index = v1 >> 1, sign = v1 & 1;
  if (index === 1) return sign ? 0x0 : 0x8;
  return (sign << 3) | (index === 0 ? 1 : index);
}

/** Our code in a group whose SV is negative (`negativeSv`) → the v2 g128 packer's code. Self-inverse. */
export function razerToV2(code: number, negativeSv: boolean): number {
  return negativeSv && code !== 0x0 && code !== 0x8 ? code ^ 8 : code;
}

/** The v2 packer's code → ours (the same flip). */
export const razerFromV2 = razerToV2;
