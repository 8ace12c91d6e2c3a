#!/usr/bin/env python3
"""
lm-evaluation-harness on the bundled mla-brown, two ways, on the same offline tasks, side by side:

  mla:          `mla serve` (this repository) through the harness' `local-completions` model: every request is
                POST /v1/completions with token ids, echo, logprobs 1 and max_tokens 1, as the harness sends them
  transformers: the same checkpoint through the harness' `hf` model (PyTorch, CPU, float32)

Tasks (scripts/lm-eval-tasks/*.yaml, data from scripts/lm-eval-data.ts; no network needed): brown_lastword
(LAMBADA-like), brown_choice (4 endings: the true one and 3 shuffles of its words), brown_ppl (wikitext-like
rolling perplexity), all from the Brown validation split that mla-brown did not train on.

transformers 5 refuses mla-brown's config as it is (n_shared_experts null, integer routed_scaling_factor: its
strict config classes), so the `hf` run reads a copy of the folder whose config.json says the same with values it
accepts (no layer is MoE: first_k_dense_replace = num_hidden_layers); the weights and tokenizer are links to the
originals. The harness' tokenizer for the API run is the same folder's tokenizer.json. Both runs set add_bos_token:
mla-brown's tokenizer puts <bos> first (tokenizer_config.json add_bos_token), which the `hf` model follows on its
own and the API model only when told; without it the two score different token sequences.

Needs: node + this checkout (npm ci), and a Python with lm_eval, transformers and torch (e.g. /tmp/gguf-venv).
Usage: python scripts/lm-eval.py [--docs 300] [--limit N] [--backend cpu] [--threads 1] [--concurrent 2] [--skip-hf]
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = ["brown_lastword", "brown_choice", "brown_ppl"]


def hf_copy(src: str, dst: str) -> None:
    """The checkpoint folder with a config.json transformers 5's strict config classes accept."""
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "config.json")) as f:
        c = json.load(f)
    for k in ("n_shared_experts", "n_routed_experts", "num_experts_per_tok"):
        if c.get(k) is None:
            c[k] = 1  # unused: every layer is dense (first_k_dense_replace = num_hidden_layers)
    assert c["first_k_dense_replace"] >= c["num_hidden_layers"], "the copy is only right for a dense model"
    for k in ("routed_scaling_factor", "rope_theta", "attention_dropout", "initializer_range", "rms_norm_eps"):
        if isinstance(c.get(k), int):
            c[k] = float(c[k])
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        link = os.path.join(dst, name)
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(os.path.join(src, name)), link)


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def start_server(port: int, backend: str, threads: int) -> subprocess.Popen:
    cmd = ["node", "--import", "tsx", "src/cli/main.ts", "serve", "--port", str(port), "--backend", backend, "--quiet"]
    if backend == "cpu":
        cmd += ["--threads", str(threads)]
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT)
    for _ in range(240):
        if proc.poll() is not None:
            sys.exit(f"mla serve exited with {proc.returncode}")
        try:
            get_json(f"http://127.0.0.1:{port}/health")
            return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    sys.exit("mla serve did not answer /health within 120 s")


def evaluate(model: str, model_args: str, limit, batch_size) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=os.path.join(ROOT, "scripts", "lm-eval-tasks"))
    t0 = time.time()
    out = lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=TASKS, limit=limit, batch_size=batch_size,
                                  device="cpu", task_manager=tm, log_samples=False, bootstrap_iters=1000)
    return {"seconds": time.time() - t0, "results": out["results"], "n": {t: out["n-samples"][t]["effective"] for t in TASKS}}


def metrics_of(res: dict) -> list:
    rows = []
    for task in TASKS:
        for key, v in res["results"][task].items():
            if key in ("alias", "sample_len") or "_stderr" in key or not isinstance(v, (int, float)):
                continue
            metric = key.split(",")[0]
            err = res["results"][task].get(key.replace(",", "_stderr,", 1))
            rows.append((task, metric, v, err if isinstance(err, (int, float)) else None))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=300, help="documents per task to generate (brown_ppl gets a third)")
    ap.add_argument("--limit", type=int, default=None, help="evaluate only the first N documents of each task")
    ap.add_argument("--port", type=int, default=18517)
    ap.add_argument("--backend", default="cpu", help="mla serve --backend (cpu, cpu-scalar, webgpu)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--concurrent", type=int, default=2, help="requests the harness keeps in flight (num_concurrent)")
    ap.add_argument("--out", default="bench-out/lm-eval")
    ap.add_argument("--skip-hf", action="store_true")
    a = ap.parse_args()
    os.chdir(ROOT)
    os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    # the task YAMLs read bench-out/lm-eval/data (relative to the repository root)
    subprocess.run(["node", "--import", "tsx", "scripts/lm-eval-data.ts", "bench-out/lm-eval/data", str(a.docs)], check=True)
    hf_dir = os.path.join(a.out, "hf-mla-brown")
    hf_copy("models/mla-brown", hf_dir)

    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "args": vars(a)}
    server = start_server(a.port, a.backend, a.threads)
    try:
        api_args = (f"base_url=http://127.0.0.1:{a.port}/v1/completions,model=mla-brown,tokenizer={hf_dir},"
                    f"tokenizer_backend=huggingface,add_bos_token=True,num_concurrent={a.concurrent},max_retries=1")
        print(f"lm_eval --model local-completions --model_args {api_args} --tasks {' '.join(TASKS)}", flush=True)
        report["mla"] = evaluate("local-completions", api_args, a.limit, 1)
        report["mla"]["model_args"] = api_args
        report["mla"]["server"] = get_json(f"http://127.0.0.1:{a.port}/health")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    if not a.skip_hf:
        hf_args = f"pretrained={hf_dir},dtype=float32,add_bos_token=True"
        print(f"lm_eval --model hf --model_args {hf_args} --tasks {' '.join(TASKS)} --device cpu --batch_size 16", flush=True)
        report["hf"] = evaluate("hf", hf_args, a.limit, 16)
        report["hf"]["model_args"] = hf_args

    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(report, f, indent=2, default=str)
    hf = {(t, m): (v, e) for t, m, v, e in metrics_of(report["hf"])} if "hf" in report else {}
    fmt = lambda v, e: f"{v:.4f}" + (f" ± {e:.4f}" if e is not None else "")
    print(f"\n| task | docs | metric | mla serve (local-completions) | transformers (hf) | difference |")
    print("|---|---|---|---|---|---|")
    for t, m, v, e in metrics_of(report["mla"]):
        h = hf.get((t, m))
        print(f"| {t} | {report['mla']['n'][t]} | {m} | {fmt(v, e)} | {fmt(*h) if h else '-'} | {f'{v - h[0]:+.2e}' if h else '-'} |")
    print(f"\ntime: mla serve {report['mla']['seconds']:.0f} s" + (f", transformers {report['hf']['seconds']:.0f} s" if "hf" in report else ""))
    print(f"written: {os.path.join(a.out, 'results.json')}")


if __name__ == "__main__":
    main()
