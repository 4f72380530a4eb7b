"""Record real vLLM ``/metrics`` samples for the fixture-based tests (run by hand, not collected by pytest).

    python tests/vllm_record.py [--out tests/fixtures/vllm]

Starts the test server of ``vllm_fixture`` (CPU build, tiny random Llama), replays a load sweep
(phases of different rates, prompt and output lengths, so that the batch and the prefill size vary)
and scrapes ``/metrics`` every ``--scrape-s`` seconds. Writes:

- ``metrics-full.txt``: one complete exposition, taken under load (every series the server exports);
- ``sweep.jsonl.gz``: ``{"t": unix s, "text": exposition}`` per scrape, only the ``vllm:`` families
  the ``vllm`` preset and the calibration query (samples ``*_created`` dropped);
- ``sweep.json``: the server settings, the phases and what the client measured in each.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vllm_fixture import LoadGenerator, RequestSpec, vllm_servers

SERVER = {"served_model_name": "tiny", "max_num_seqs": 8, "max_num_batched_tokens": 512, "num_gpu_blocks": 64}
# (seconds, requests/s, prompt tokens, output tokens); each phase is followed by GAP_S without arrivals.
# Below saturation except the last phase (about 2x what 8 sequences decode), which fills the queue.
PHASES = [
    (30, 0.5, 32, 32),
    (30, 1.0, 64, 48),
    (30, 2.0, 64, 48),
    (30, 3.0, 48, 64),
    (30, 0.5, 400, 16),
    (30, 0.7, 900, 16),
    (30, 1.5, 200, 48),
    (20, 8.0, 64, 64),
]
GAP_S = 10.0


def used_families() -> set[str]:
    from faro.optimizer.metrics.presets import VLLM
    from faro.optimizer.metrics.vllm import CALIBRATION_SERIES

    text = " ".join([*VLLM.templates.values(), *CALIBRATION_SERIES.values(), "vllm:cache_config_info"])
    names = set(re.findall(r"vllm:[a-z_:]+", text))
    return {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in names}


def keep(text: str, families: set[str]) -> str:
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            parts = line.split()
            if len(parts) > 2 and re.sub(r"_(bucket|sum|count|total)$", "", parts[2]) in families:
                out.append(line)
            continue
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        if name.endswith("_created"):
            continue
        if re.sub(r"_(bucket|sum|count|total)$", "", name) in families:
            out.append(line)
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "fixtures" / "vllm")
    parser.add_argument("--scrape-s", type=float, default=2.0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    families = used_families()
    requests, at = [], 0.0
    for duration, rate, prompt, output in PHASES:
        n = int(duration * rate)
        requests += [RequestSpec(at + (i + 0.5) / rate, prompt, output) for i in range(n)]
        at += duration + GAP_S
    with vllm_servers(SERVER) as (server,):
        scrapes: list[dict] = []
        full = ""
        stop = threading.Event()

        def scrape() -> None:
            nonlocal full
            while not stop.is_set():
                now = time.time()
                text = server.metrics_text()
                scrapes.append({"t": round(now, 3), "text": keep(text, families)})
                if not full and len(scrapes) > 30:
                    full = text
                stop.wait(args.scrape_s)

        scraper = threading.Thread(target=scrape, daemon=True)
        started = time.time()
        scraper.start()
        load = LoadGenerator(server.url, SERVER["served_model_name"], requests, max_in_flight=64)
        results = load.run()
        time.sleep(2 * args.scrape_s)
        stop.set()
        scraper.join()
    phases, at = [], 0.0
    for duration, rate, prompt, output in PHASES:
        mine = [r for r in results if at <= r.spec.at_s < at + duration and r.ok]
        itl = [x for r in mine for x in r.itl_s]
        phases.append({"start_s": at, "duration_s": duration, "rate_rps": rate, "prompt_tokens": prompt,
                       "output_tokens": output, "requests_ok": len(mine),
                       "ttft_p50_ms": 1000 * statistics.median(r.ttft_s for r in mine) if mine else None,
                       "itl_p50_ms": 1000 * statistics.median(itl) if itl else None})
        at += duration + GAP_S
    (args.out / "metrics-full.txt").write_text(full)
    with gzip.open(args.out / "sweep.jsonl.gz", "wt") as f:
        for item in scrapes:
            f.write(json.dumps(item) + "\n")
    (args.out / "sweep.json").write_text(json.dumps(
        {"server": SERVER, "started_s": round(started, 3), "phases": phases,
         "errors": sum(1 for r in results if not r.ok)}, indent=1) + "\n")
    print(json.dumps(phases, indent=1))


if __name__ == "__main__":
    main()
