/**
 * The registry of weight number formats (CPU reference codecs). A format plugs in with its own file and one
 * line here. Names are unique; `quantFormat` looks one up.
 */
import type { QuantFormat } from "./format.js";
import { fp4Format } from "./fp4.js";
import { int4AsymFormat } from "./int4-asym.js";
import { int8Format } from "./int8.js";
import { nf4Format } from "./nf4.js";
import { nvfp4Format } from "./nvfp4.js";
import { nvfp4RazerFormat } from "./nvfp4-razer.js";
import { razerFormat } from "./razer.js";

/** Every registered format, in the order tables list them. */
export const QUANT_FORMATS: readonly QuantFormat[] = [
  int8Format,
  int4AsymFormat(128),
  fp4Format(128),
  nf4Format(64),
  razerFormat(128),
  nvfp4Format,
  nvfp4RazerFormat(8),
];

/** The registered format called `name`; throws with the list of names when there is none. */
export function quantFormat(name: string): QuantFormat {
  const f = QUANT_FORMATS.find((q) => q.name === name);
  if (!f) throw new Error(`unknown quantization format "${name}" (known: ${QUANT_FORMATS.map((q) => q.name).join(", ")})`);
  return f;
}
