/** The server's counters, written out in Prometheus' text exposition format for GET /metrics. */

const TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Tokens/s is the rate over this trailing window of decode ticks. */
const RATE_WINDOW_MS = 10_000;

export class Metrics {
  private readonly requests = new Map<string, number>();
  promptTokens = 0;
  generatedTokens = 0;
  private readonly ttftCounts = new Array<number>(TTFT_BUCKETS.length).fill(0);
  private ttftSum = 0;
  private ttftCount = 0;
  private ticks: { at: number; tokens: number; ms: number }[] = [];

  /** Counts one answered request. */
  request(endpoint: string, status: number): void {
    const key = `endpoint="${endpoint}",status="${status}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  /** Records one time to first token, in milliseconds. */
  timeToFirstToken(ms: number): void {
    const s = ms / 1000;
    TTFT_BUCKETS.forEach((b, i) => {
      if (s <= b) this.ttftCounts[i]!++;
    });
    this.ttftSum += s;
    this.ttftCount++;
  }

  /** Records one scheduler tick. */
  tick(tokens: number, ms: number): void {
    const now = performance.now();
    this.ticks.push({ at: now, tokens, ms });
    while (this.ticks.length > 0 && this.ticks[0]!.at < now - RATE_WINDOW_MS) this.ticks.shift();
  }

  /** Generated tokens per second of decoding over the last ticks (0 when idle). */
  tokensPerSecond(): number {
    const now = performance.now();
    const recent = this.ticks.filter((t) => t.at >= now - RATE_WINDOW_MS);
    const ms = recent.reduce((a, t) => a + t.ms, 0);
    return ms > 0 ? (recent.reduce((a, t) => a + t.tokens, 0) / ms) * 1000 : 0;
  }

  /** The exposition text; `gauges` are sampled by the caller at scrape time. */
  render(gauges: { queueDepth: number; activeSequences: number; maxBatch: number; maxQueue: number; freeKvSlots?: number }): string {
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string) => lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    metric("frugal_requests_total", "counter", "HTTP requests answered, by endpoint and status.");
    for (const [labels, n] of [...this.requests].sort()) lines.push(`frugal_requests_total{${labels}} ${n}`);
    metric("frugal_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.");
    lines.push(`frugal_prompt_tokens_total ${this.promptTokens}`);
    metric("frugal_generated_tokens_total", "counter", "Tokens generated.");
    lines.push(`frugal_generated_tokens_total ${this.generatedTokens}`);
    metric("frugal_queue_depth", "gauge", "Requests waiting for a decode slot.");
    lines.push(`frugal_queue_depth ${gauges.queueDepth}`);
    metric("frugal_active_sequences", "gauge", "Sequences being decoded.");
    lines.push(`frugal_active_sequences ${gauges.activeSequences}`);
    metric("frugal_max_batch", "gauge", "Most sequences decoded together (--max-batch).");
    lines.push(`frugal_max_batch ${gauges.maxBatch}`);
    metric("frugal_max_queue", "gauge", "Most requests waiting (--max-queue).");
    lines.push(`frugal_max_queue ${gauges.maxQueue}`);
    if (gauges.freeKvSlots !== undefined) {
      // present only once the scheduler decodes from a KV slot pool (batched RoPE/KV write/attention)
      metric("frugal_kv_slots_free", "gauge", "Slots of the KV slot pool not held by a sequence.");
      lines.push(`frugal_kv_slots_free ${gauges.freeKvSlots}`);
    }
    metric("frugal_decode_tokens_per_second", "gauge", `Tokens generated per second of scheduler time over the last ${RATE_WINDOW_MS / 1000} s.`);
    lines.push(`frugal_decode_tokens_per_second ${this.tokensPerSecond().toFixed(3)}`);
    metric("frugal_time_to_first_token_seconds", "histogram", "From a request's arrival to its first generated token.");
    TTFT_BUCKETS.forEach((b, i) => lines.push(`frugal_time_to_first_token_seconds_bucket{le="${b}"} ${this.ttftCounts[i]}`));
    lines.push(`frugal_time_to_first_token_seconds_bucket{le="+Inf"} ${this.ttftCount}`);
    lines.push(`frugal_time_to_first_token_seconds_sum ${this.ttftSum.toFixed(6)}`);
    lines.push(`frugal_time_to_first_token_seconds_count ${this.ttftCount}`);
    metric("frugal_resident_memory_bytes", "gauge", "Resident set size of the server process.");
    lines.push(`frugal_resident_memory_bytes ${process.memoryUsage.rss()}`);
    return lines.join("\n") + "\n";
  }
}
