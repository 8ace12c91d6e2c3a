import cliProgress from "cli-progress";
import { fmtBytes } from "./format.js";

/**
 * A loading progress bar on stderr, shown only on a terminal (logs and pipes stay clean).
 * Returns the callback to pass as onProgress and a function to close the bar.
 */
export function loadingBar(label: string): { onProgress: (done: number, total: number) => void; stop: () => void } {
  if (!process.stderr.isTTY) return { onProgress: () => {}, stop: () => {} };
  const bar = new cliProgress.SingleBar(
    // cli-progress estimates the ETA from the recent rate (eta_formatted); the rate itself is ours, in bytes
    { format: `${label} [{bar}] {percentage}% | {done} / {all} | {rate}/s | ETA {eta_formatted}`, stream: process.stderr, hideCursor: true, clearOnComplete: true, etaBuffer: 20 },
    cliProgress.Presets.shades_classic,
  );
  let started = false, t0 = 0;
  return {
    onProgress(done, total) {
      if (!started) {
        t0 = performance.now();
        bar.start(total, 0, { done: fmtBytes(0), all: fmtBytes(total), rate: "-" });
        started = true;
      }
      const s = (performance.now() - t0) / 1000;
      bar.update(done, { done: fmtBytes(done), all: fmtBytes(total), rate: s > 0 ? fmtBytes(done / s) : "-" });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
