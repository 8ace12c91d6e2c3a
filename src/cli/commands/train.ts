import cliProgress from "cli-progress";
import { MlaError } from "../../errors.js";
import { parseFloatArg, parseInt10 } from "../args.js";
import { fmtCount } from "../format.js";
import { runTraining, type TrainBackend, type TrainSettings } from "../../train/trainer.js";

/** Flags as commander gives them (strings; undefined when not given, so --resume can tell what was set). */
export interface TrainFlags {
  out: string;
  corpus?: string;
  text?: string;
  tokenizer?: string;
  vocab?: string;
  layers?: string;
  hidden?: string;
  heads?: string;
  attention?: string;
  kvHeads?: string;
  headDim?: string;
  kvLoraRank?: string;
  qLoraRank?: string;
  nope?: string;
  rope?: string;
  v?: string;
  intermediate?: string;
  steps?: string;
  batch?: string;
  seq?: string;
  lr?: string;
  minLr?: string;
  warmup?: string;
  accum?: string;
  clip?: string;
  wd?: string;
  seed?: string;
  evalWindows?: string;
  saveEvery?: string;
  evalEvery?: string;
  stopAt?: string;
  resume?: boolean;
  json?: boolean;
  /** cpu (WebAssembly SIMD matmuls on worker threads, the default) or cpu-scalar (the scalar reference). */
  backend?: string;
  /** Threads of the cpu backend. */
  threads?: string;
}

function fmtDuration(sec: number): string {
  if (!Number.isFinite(sec)) return "?";
  const s = Math.round(sec);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m` : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

export function parseTrainFlags(o: TrainFlags): Partial<TrainSettings> {
  if (o.corpus !== undefined && o.text !== undefined) throw new MlaError("use either --corpus or --text, not both");
  if (o.corpus !== undefined && o.corpus !== "brown") throw new MlaError(`--corpus must be brown, got "${o.corpus}"`);
  if (o.tokenizer !== undefined && o.vocab !== undefined) throw new MlaError("use either --tokenizer or --vocab, not both");
  const int = (v: string | undefined, flag: string, min: number) => (v === undefined ? undefined : parseInt10(v, flag, min));
  const num = (v: string | undefined, flag: string) => (v === undefined ? undefined : parseFloatArg(v, flag));
  return {
    corpus: o.text ?? o.corpus,
    tokenizer: o.tokenizer,
    vocab: int(o.vocab, "--vocab", 258),
    layers: int(o.layers, "--layers", 1),
    hidden: int(o.hidden, "--hidden", 1),
    heads: int(o.heads, "--heads", 1),
    attention: o.attention as TrainSettings["attention"] | undefined,
    kvHeads: int(o.kvHeads, "--kv-heads", 1),
    headDim: int(o.headDim, "--head-dim", 1),
    kvLoraRank: int(o.kvLoraRank, "--kv-lora-rank", 1),
    qLoraRank: int(o.qLoraRank, "--q-lora-rank", 0),
    nope: int(o.nope, "--nope", 1),
    rope: int(o.rope, "--rope", 2),
    v: int(o.v, "--v", 1),
    intermediate: int(o.intermediate, "--intermediate", 1),
    steps: int(o.steps, "--steps", 1),
    batch: int(o.batch, "--batch", 1),
    seq: int(o.seq, "--seq", 1),
    lr: num(o.lr, "--lr"),
    minLr: num(o.minLr, "--min-lr"),
    warmup: int(o.warmup, "--warmup", 0),
    accum: int(o.accum, "--accum", 1),
    clip: num(o.clip, "--clip"),
    wd: num(o.wd, "--wd"),
    seed: int(o.seed, "--seed", 0),
    evalWindows: int(o.evalWindows, "--eval-windows", 1),
  };
}

export async function trainCommand(o: TrainFlags): Promise<void> {
  const settings = parseTrainFlags(o);
  const saveEvery = parseInt10(o.saveEvery ?? "50", "--save-every", 1);
  const evalEvery = parseInt10(o.evalEvery ?? "50", "--eval-every", 1);
  const stopAt = o.stopAt === undefined ? undefined : parseInt10(o.stopAt, "--stop-at", 1);
  const backend = o.backend ?? "cpu";
  if (backend !== "cpu" && backend !== "cpu-scalar" && backend !== "webgpu") throw new MlaError(`--backend must be cpu, cpu-scalar or webgpu, got "${backend}"`);
  const threads = o.threads === undefined ? undefined : parseInt10(o.threads, "--threads", 1);
  const tty = !!process.stderr.isTTY;
  const bar = tty
    ? new cliProgress.SingleBar(
      { format: "train [{bar}] step {value}/{total} | loss {loss} | {tps} tok/s | ETA {etaText}", stream: process.stderr, hideCursor: true, clearOnComplete: true },
      cliProgress.Presets.shades_classic,
    )
    : null;
  let started = false;
  try {
    const r = await runTraining({
      out: o.out, settings, saveEvery, evalEvery, resume: o.resume, stopAt, backend: backend as TrainBackend, threads,
      onStart: (i) => {
        if (!o.json) {
          process.stderr.write(`${i.startStep ? `resuming at step ${i.startStep}` : "training"}: ${fmtCount(i.numParams)} parameters, vocab ${i.vocabSize}, ` +
            `${fmtCount(i.trainTokens)} train / ${fmtCount(i.valTokens)} held-out tokens\n`);
        }
        bar?.start(i.steps, i.startStep, { loss: "-", tps: "-", etaText: "?" });
        started = true;
      },
      onStep: (i) => bar?.update(i.step, { loss: i.loss.toFixed(4), tps: Math.round(i.tokensPerSecond), etaText: fmtDuration(i.etaSeconds) }),
    });
    bar?.stop();
    started = false;
    if (o.json) {
      process.stdout.write(JSON.stringify(r) + "\n");
    } else {
      const stopped = r.endStep < r.steps ? ` (stopped at step ${r.endStep} of ${r.steps}; continue with --resume)` : "";
      process.stdout.write(
        `trained steps ${r.startStep + 1}-${r.endStep} in ${r.seconds.toFixed(1)} s: loss ${r.firstLoss.toFixed(4)} -> ${r.lastLoss.toFixed(4)}` +
        `${Number.isFinite(r.valLoss) ? `, validation loss ${r.valLoss.toFixed(4)} (perplexity ${r.valPerplexity.toFixed(2)})` : ""}` +
        `, ${Math.round(r.tokensPerSecond)} tokens/s; saved to ${r.out}${stopped}\n`,
      );
    }
  } finally {
    if (started) bar?.stop();
  }
}
