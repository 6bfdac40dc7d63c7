import type { Backend } from "./backend.js";

/** Per-op wall time of a backend whose ops run synchronously (the CPU backend). */
export interface OpTimes {
  /** op name -> { calls, total milliseconds } */
  readonly ops: Map<string, { calls: number; ms: number }>;
  /** A table sorted by time, for stderr. */
  report(): string;
  reset(): void;
}

const TIMED = ["embed", "matmul", "addBias", "rmsnorm", "rmsnormRow", "rope", "kvWrite", "attention", "add", "swiglu", "argmax", "read"];

/**
 * Wraps a backend so that each op's wall time is added up by name (matmul is split by weight format).
 * Only meaningful where ops complete before they return, as on the CPU; GPU backends use timestamp
 * queries instead.
 */
export function timeOps<B extends Backend>(backend: B): { backend: B; times: OpTimes } {
  const ops = new Map<string, { calls: number; ms: number }>();
  const add = (name: string, ms: number) => {
    const e = ops.get(name) ?? { calls: 0, ms: 0 };
    e.calls++;
    e.ms += ms;
    ops.set(name, e);
  };
  const wrapped = new Proxy(backend, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof prop !== "string" || !TIMED.includes(prop) || typeof value !== "function") return value;
      return (...args: unknown[]) => {
        const name = prop === "matmul" ? `matmul ${(args[2] as { dtype: string }).dtype}` : prop;
        const t0 = performance.now();
        const out = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (out instanceof Promise) return out.finally(() => add(name, performance.now() - t0));
        add(name, performance.now() - t0);
        return out;
      };
    },
  });
  const times: OpTimes = {
    ops,
    reset: () => ops.clear(),
    report() {
      const total = [...ops.values()].reduce((a, e) => a + e.ms, 0);
      return [...ops]
        .sort((a, b) => b[1].ms - a[1].ms)
        .map(([name, e]) => `${name.padEnd(14)} ${e.ms.toFixed(1).padStart(9)} ms ${((100 * e.ms) / total).toFixed(1).padStart(5)}%  ${e.calls} calls`)
        .join("\n");
    },
  };
  return { backend: wrapped, times };
}
