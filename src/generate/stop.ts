/**
 * Holds back streamed text that might be the start of a stop string, so a stop string never reaches the
 * caller, even when it arrives split over several tokens.
 */
export class StopMatcher {
  private pending = "";
  stopped = false;

  constructor(private readonly stops: readonly string[]) {}

  /** Feeds new text; returns what can be released now. Sets `stopped` when a stop string appears. */
  push(text: string): string {
    if (this.stopped) return "";
    this.pending += text;
    let cut = -1;
    for (const s of this.stops) {
      const i = this.pending.indexOf(s);
      if (s.length > 0 && i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.stopped = true;
      const out = this.pending.slice(0, cut);
      this.pending = "";
      return out;
    }
    let keep = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.pending.length); n > keep; n--) {
        if (this.pending.endsWith(s.slice(0, n))) {
          keep = n;
          break;
        }
      }
    }
    const out = this.pending.slice(0, this.pending.length - keep);
    this.pending = this.pending.slice(this.pending.length - keep);
    return out;
  }

  /** Whatever was held back, at the end of generation. */
  flush(): string {
    const out = this.stopped ? "" : this.pending;
    this.pending = "";
    return out;
  }
}
