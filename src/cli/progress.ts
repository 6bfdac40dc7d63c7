/**
 * A one-line progress bar on stderr for downloads and loads: bytes done of total, rate, time left.
 * On a terminal it redraws in place; otherwise (logs, pipes) it prints only a final summary line,
 * so that captured output does not fill with carriage returns.
 */

/** Where the bar writes: process.stderr, or anything with the same two members (tests). */
export interface ProgressStream {
  readonly isTTY?: boolean;
  write(text: string): unknown;
  readonly columns?: number;
}

/** "1.5 MB"-style sizes in decimal units, as download tools show them. */
export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)} ${units[i]}`;
}

/** "m:ss" or "h:mm:ss". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--:--";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** Redraws are at most this often: a fast download reports thousands of chunks a second. */
const REDRAW_MS = 100;

/** The bar itself; pass `update` wherever an onProgress(what, done, total) callback is wanted. */
export class ProgressBar {
  private what = "";
  private start = 0;
  private lastDraw = 0;
  private finished = true;

  constructor(
    private readonly stream: ProgressStream = process.stderr,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Reports `done` of `total` bytes of `what`; a new `what`, or any report after completion, starts a new bar. Bound, so it can be passed as a callback. */
  readonly update = (what: string, done: number, total: number): void => {
    const t = this.now();
    if (what !== this.what || this.finished) {
      this.what = what;
      this.start = t;
      this.lastDraw = -Infinity;
      this.finished = false;
    }
    const complete = done >= total;
    if (complete) {
      this.finished = true;
      const seconds = (t - this.start) / 1000;
      const rate = seconds > 0 ? ` (${formatBytes(done / seconds)}/s)` : "";
      const clear = this.stream.isTTY ? "\r\x1b[K" : "";
      this.stream.write(`${clear}${what}: ${formatBytes(done)} in ${seconds.toFixed(1)} s${rate}\n`);
      return;
    }
    if (!this.stream.isTTY || t - this.lastDraw < REDRAW_MS) return;
    this.lastDraw = t;
    this.stream.write(`\r\x1b[K${this.line(what, done, total, (t - this.start) / 1000)}`);
  };

  private line(what: string, done: number, total: number, seconds: number): string {
    const rate = seconds > 0 ? done / seconds : 0;
    const eta = rate > 0 ? formatDuration((total - done) / rate) : "--:--";
    const stats = ` ${formatBytes(done)}/${formatBytes(total)} ${formatBytes(rate)}/s ETA ${eta}`;
    const room = Math.max(10, Math.min(40, (this.stream.columns ?? 80) - what.length - stats.length - 4));
    const filled = total > 0 ? Math.round((done / total) * room) : 0;
    return `${what} [${"#".repeat(filled)}${".".repeat(room - filled)}]${stats}`;
  }
}
