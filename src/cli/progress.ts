import cliProgress from "cli-progress";
import { fmtBytes } from "./format.js";

/**
 * A loading progress bar on stderr, shown only on a terminal (logs and pipes stay clean).
 * Returns the callback to pass as onProgress and a function to close the bar.
 */
export function loadingBar(label: string): { onProgress: (done: number, total: number) => void; stop: () => void } {
  if (!process.stderr.isTTY) return { onProgress: () => {}, stop: () => {} };
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% | {done} / {all}`, stream: process.stderr, hideCursor: true, clearOnComplete: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    onProgress(done, total) {
      if (!started) {
        bar.start(total, 0, { done: fmtBytes(0), all: fmtBytes(total) });
        started = true;
      }
      bar.update(done, { done: fmtBytes(done), all: fmtBytes(total) });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
