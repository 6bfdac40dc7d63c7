/**
 * `--kv SPEC` strings: "name" or "name:key=value,key=value". Parsed strictly against the method's declared
 * parameters; every error names the spec, the method and the parameter.
 */
import { KV_METHODS } from "./methods.js";
import type { KvContext, KvMethod, KvStore } from "./store.js";

export interface ParsedKvSpec {
  readonly method: KvMethod;
  readonly params: Readonly<Record<string, number>>;
  /** The spec in canonical form (every parameter, defaults filled in, declaration order). */
  readonly canonical: string;
}

export function kvMethod(name: string): KvMethod {
  const m = KV_METHODS.find((x) => x.name === name);
  if (!m) throw new Error(`unknown KV method "${name}" (known: ${KV_METHODS.map((x) => x.name).join(", ")})`);
  return m;
}

export function parseKvSpec(spec: string): ParsedKvSpec {
  const text = spec.trim();
  if (text === "") throw new Error(`--kv: empty spec (known methods: ${KV_METHODS.map((x) => x.name).join(", ")})`);
  const colon = text.indexOf(":");
  const name = colon < 0 ? text : text.slice(0, colon);
  const method = kvMethod(name);
  const given = new Map<string, string>();
  if (colon >= 0) {
    const body = text.slice(colon + 1);
    if (body === "") throw new Error(`--kv ${spec}: nothing after "${name}:" (parameters are key=value, comma-separated)`);
    for (const part of body.split(",")) {
      const eq = part.indexOf("=");
      if (eq <= 0 || eq === part.length - 1) throw new Error(`--kv ${spec}: malformed parameter "${part}" (expected key=value)`);
      const key = part.slice(0, eq).trim();
      if (given.has(key)) throw new Error(`--kv ${spec}: parameter ${key} given twice`);
      given.set(key, part.slice(eq + 1).trim());
    }
  }
  const allowed = method.params.map((p) => p.name);
  for (const key of given.keys()) {
    if (!allowed.includes(key)) {
      throw new Error(`--kv ${spec}: unknown parameter "${key}" for ${name} (${allowed.length ? `allowed: ${allowed.join(", ")}` : "it takes none"})`);
    }
  }
  const params: Record<string, number> = {};
  for (const p of method.params) {
    const raw = given.get(p.name);
    if (raw === undefined) {
      if (p.default === undefined) throw new Error(`--kv ${spec}: ${name} needs ${p.name} (${p.summary})`);
      params[p.name] = p.default;
      continue;
    }
    const value = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(raw) ? Number(raw) : NaN;
    if (!Number.isFinite(value)) throw new Error(`--kv ${spec}: ${p.name}=${raw} is not a number`);
    if (p.kind === "fraction" && !(value > 0 && value <= 1)) throw new Error(`--kv ${spec}: ${p.name}=${raw} must be in (0, 1]`);
    if (p.kind === "share" && !(value >= 0 && value <= 1)) throw new Error(`--kv ${spec}: ${p.name}=${raw} must be in [0, 1]`);
    if (p.kind === "signed" && !(value >= -1 && value <= 1)) throw new Error(`--kv ${spec}: ${p.name}=${raw} must be in [-1, 1]`);
    if (p.kind === "int") {
      const min = p.min ?? 1;
      if (!Number.isInteger(value) || value < min) throw new Error(`--kv ${spec}: ${p.name}=${raw} must be an integer >= ${min}`);
    }
    params[p.name] = value;
  }
  const canonical = method.params.length ? `${name}:${method.params.map((p) => `${p.name}=${params[p.name]}`).join(",")}` : name;
  return { method, params, canonical };
}

/** The store factory for a spec (parse errors thrown here, before any model work). */
export function kvStoreFactory(spec: string): (ctx: KvContext) => KvStore {
  const parsed = parseKvSpec(spec);
  return parsed.method.create(parsed.params, parsed.canonical);
}

/** Lines describing every method and its parameters, for --help. */
export function kvMethodsHelp(): string[] {
  return KV_METHODS.map((m) => {
    const ps = m.params.map((p) => `${p.name}${p.default === undefined ? "" : `=${p.default}`}`).join(",");
    return `  ${ps ? `${m.name}:${ps}` : m.name}  ${m.summary}`;
  });
}
