"""One LLM replica as vLLM's V1 engine runs it: iteration-level continuous batching, token by token.

Called by the cluster simulator (``cluster.py``: one ``Replica`` per ready pod, requests routed to it by
the load balancer) and, through ``simulate_replica``, by the LLM latency model's agreement tests and
benchmarks. Pure: time is an integer count of microseconds carried in the state, nothing reads a clock.

Notes
-----
The schedule follows ``Scheduler.schedule`` of vLLM's V1 engine (``vllm/v1/core/sched/scheduler.py`` at
commit 00024d31, with ``KVCacheManager.allocate_slots`` of ``vllm/v1/core/kv_cache_manager.py``; FCFS
policy, no prefix caching, no speculative decoding, ``long_prefill_token_threshold`` 0, KV watermark 0):

1. A token budget of ``max_num_batched_tokens``. Running requests, in admission order, each get
   ``min(num_tokens − num_computed_tokens, budget)`` tokens — one for a decoding request, the rest of its
   prompt (a chunk) for one still prefilling. Each needs KV blocks for ``num_computed_tokens + new``
   tokens; when the free blocks do not suffice, the most recently admitted running request is preempted
   (recompute: its blocks are freed, ``num_computed_tokens`` = 0, it goes back to the *head* of the
   waiting queue), repeatedly; if the request itself is the one preempted, scheduling of running
   requests stops.
2. Only if nothing was preempted in this step: waiting requests, first come first served, while the
   budget lasts and fewer than ``max_num_seqs`` run — each gets ``min(num_tokens, budget)`` tokens
   (chunked prefill; a preempted request recomputes its prompt *and* the tokens it had generated) if
   blocks for them are free, else admission stops (the head blocks the queue).
3. The step takes ``EngineProfile.step_ms(decode_seqs, prefill_tokens, context_tokens)``, rounded to the
   microsecond: ``decode_seqs`` = requests that emit their next output token from one new token,
   ``prefill_tokens`` = every other scheduled token, ``context_tokens`` = Σ over scheduled requests of
   their computed tokens after the step (the KV positions the step attends over).
4. At the end of the step, a request whose computed tokens reach its prompt plus generated tokens emits
   one output token (the first one is its TTFT, measured from arrival; later ones are inter-token gaps);
   a request that has emitted all its output tokens finishes and frees its blocks.

A request that arrives while a step runs waits for the next step (the scheduler runs between steps). A
request whose prompt plus output cannot fit the whole KV cache is refused (vLLM refuses prompts longer
than ``max_model_len``), with no TTFT.

Speed: between events — an arrival, a prefill finishing, a request finishing, KV blocks running out —
every step is a decode step of the same batch, so ``Replica`` jumps ``k`` steps at once (``_stretch``):
step durations are an arithmetic sequence in the context tokens, block needs follow each request's
position in its block, and the first finish is the smallest remaining output. The result is identical,
microsecond for microsecond, to running the steps one at a time (``skip=False``;
``tests/test_sim_llm_engine.py``). Inter-token gaps are kept as (bucket, gap, count) triples, a bucket
being ``bucket_us`` of step start times (10 s by default), never per token.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.model.llm_profile import EngineProfile
from numpy.typing import ArrayLike, NDArray

US_PER_S = 1_000_000
DEFAULT_BUCKET_US = 10 * US_PER_S
NEVER = -1  # "no such time" in the integer-microsecond columns


class Requests:
    """The requests of one job, column-wise in Python lists (scalar access in the step loop is what costs).

    ``arrival_us``, ``prompt`` and ``output`` are given; the rest is state the replicas write:
    ``computed`` (vLLM's ``num_computed_tokens``), ``generated`` (output tokens emitted), ``blocks`` (KV
    blocks held), ``first_us``/``last_us``/``finish_us`` (times of the first and latest output token and
    of finishing, ``NEVER`` until then), ``preemptions`` and ``replica`` (the replica that served it,
    −1 = never routed).
    """

    __slots__ = (
        "arrival_us",
        "blocks",
        "computed",
        "finish_us",
        "first_us",
        "generated",
        "last_us",
        "output",
        "preemptions",
        "prompt",
        "refused",
        "replica",
    )

    def __init__(self, arrival_us: list[int], prompt: list[int], output: list[int]) -> None:
        n = len(arrival_us)
        if not (len(prompt) == n and len(output) == n):
            raise InvalidInputError("requests", "arrival, prompt and output columns differ in length")
        self.arrival_us = arrival_us
        self.prompt = prompt
        self.output = output
        self.computed = [0] * n
        self.generated = [0] * n
        self.blocks = [0] * n
        self.first_us = [NEVER] * n
        self.last_us = [NEVER] * n
        self.finish_us = [NEVER] * n
        self.preemptions = [0] * n
        self.replica = [-1] * n
        self.refused = [False] * n

    @classmethod
    def from_arrays(cls, arrivals_s: ArrayLike, prompt_tokens: ArrayLike, output_tokens: ArrayLike) -> Requests:
        """Requests from seconds and token counts (prompts < 1 token become 1, outputs < 1 become 1)."""
        arr = np.asarray(arrivals_s, dtype=float).ravel()
        prompt = np.asarray(prompt_tokens).ravel()
        output = np.asarray(output_tokens).ravel()
        if not (arr.shape == prompt.shape == output.shape):
            raise InvalidInputError("requests", "arrivals, prompt_tokens and output_tokens differ in length")
        if arr.size and not (np.all(np.isfinite(arr)) and np.all(arr >= 0)):
            raise InvalidInputError("requests.arrivals_s", "must be finite and >= 0")
        if arr.size and np.any(np.diff(arr) < 0):
            raise InvalidInputError("requests.arrivals_s", "must be sorted")
        for name, col in (("prompt_tokens", prompt), ("output_tokens", output)):
            if col.size and not (np.all(np.isfinite(col)) and np.all(col >= 0)):
                raise InvalidInputError(f"requests.{name}", "must be finite and >= 0")
        return cls(
            np.rint(arr * US_PER_S).astype(np.int64).tolist(),
            np.maximum(np.rint(prompt), 1).astype(np.int64).tolist(),
            np.maximum(np.rint(output), 1).astype(np.int64).tolist(),
        )

    def __len__(self) -> int:
        return len(self.arrival_us)


@dataclass(frozen=True)
class StepRecord:
    """One engine step (``repeat`` > 1: that many identical-batch decode steps jumped at once).

    ``scheduled``: (request, new tokens) in schedule order; ``preempted``: requests preempted in it;
    ``duration_us``: of the first step of the run (later ones of a jump may be longer: context grows).
    """

    start_us: int
    duration_us: int
    scheduled: tuple[tuple[int, int], ...]
    preempted: tuple[int, ...] = ()
    repeat: int = 1


class Replica:
    """One vLLM engine replica (see the module Notes). The cluster simulator drives it:

    ``advance(t_us)`` runs every step that starts before ``t_us``; ``enqueue(rid)`` hands it a request
    that arrived at or before the time it was advanced to; ``outstanding(t_us)`` is what a
    least-outstanding-requests balancer sees at ``t_us``.
    """

    def __init__(
        self,
        profile: EngineProfile,
        requests: Requests,
        *,
        index: int = 0,
        start_us: int = 0,
        skip: bool = True,
        bucket_us: int = DEFAULT_BUCKET_US,
        record_steps: bool = False,
    ) -> None:
        self.profile = profile
        self.req = requests
        self.index = index
        self.skip = skip
        self.bucket_us = int(bucket_us)
        self.block = int(profile.block_size_tokens)
        self.total_blocks = int(profile.kv_cache_tokens) // self.block
        if self.total_blocks < 1:
            raise InvalidInputError("profile.kv_cache_tokens", "holds less than one KV block")
        self.max_tokens = self.total_blocks * self.block
        self.budget = int(profile.max_num_batched_tokens)
        self.max_seqs = int(profile.max_num_seqs)
        self.free = self.total_blocks
        self.now_us = int(start_us)  # when the next step may start
        self.waiting: deque[int] = deque()
        self.running: list[int] = []
        self.prefilling = 0  # running requests not in steady decode (prompt, or recompute, not done)
        self.last_end_us = NEVER  # end of the latest step, and how many requests finished in it
        self.finished_in_last = 0
        self.steps = 0
        self.kv_peak_blocks = 0  # since the last reset_peaks()
        self.waiting_peak = 0
        # Inter-token gaps as (bucket of the step start, gap µs, count) and output tokens per bucket.
        self.itl_bucket: list[int] = []
        self.itl_gap_us: list[int] = []
        self.itl_count: list[int] = []
        self.itl_parts: list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]] = []
        self.records: list[StepRecord] | None = [] if record_steps else None
        p = profile
        self._base = float(p.step_base_ms)
        self._dms = float(p.decode_ms_per_seq)
        self._pms = float(p.prefill_ms_per_token)
        self._cms = float(p.context_ms_per_token)

    # -- what the cluster sees -------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return bool(self.running or self.waiting)

    @property
    def kv_usage(self) -> float:
        """Fraction of KV blocks in use (vLLM's ``vllm:kv_cache_usage_perc``)."""
        return (self.total_blocks - self.free) / self.total_blocks

    def outstanding(self, t_us: int) -> int:
        """Requests waiting or running at ``t_us``: those finished in a step still running at ``t_us`` count."""
        n = len(self.waiting) + len(self.running)
        if self.last_end_us > t_us:
            n += self.finished_in_last
        return n

    def reset_peaks(self) -> None:
        self.kv_peak_blocks = self.total_blocks - self.free
        self.waiting_peak = len(self.waiting)

    def enqueue(self, rid: int) -> bool:
        """Add request ``rid`` to the waiting queue (False: refused, it can never fit the KV cache)."""
        req = self.req
        req.replica[rid] = self.index
        if req.prompt[rid] + req.output[rid] > self.max_tokens:
            req.refused[rid] = True
            return False
        if not self.running and not self.waiting:
            self.now_us = max(self.now_us, req.arrival_us[rid])
        self.waiting.append(rid)
        if len(self.waiting) > self.waiting_peak:
            self.waiting_peak = len(self.waiting)
        return True

    def advance(self, t_us: int) -> None:
        """Run every step that starts before ``t_us`` (a step in progress at ``t_us`` completes)."""
        while (self.running or self.waiting) and self.now_us < t_us:
            if self.skip and self.prefilling == 0 and self.running and not self._admits():
                bucket_end = (self.now_us // self.bucket_us + 1) * self.bucket_us
                if self._stretch(min(t_us, bucket_end)):
                    continue
            self._step()

    def drain_itl(self) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """The inter-token gaps recorded so far as (bucket, gap µs, count) arrays, and forget them."""
        parts = [
            (np.asarray(self.itl_bucket, np.int64), np.asarray(self.itl_gap_us, np.int64),
             np.asarray(self.itl_count, np.int64)),
            *self.itl_parts,
        ]
        self.itl_bucket, self.itl_gap_us, self.itl_count, self.itl_parts = [], [], [], []
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]

    # -- the schedule ------------------------------------------------------------------------------------

    def _step_us(self, decode_seqs: int, prefill_tokens: int, context_tokens: int) -> int:
        # One expression for both paths (the jump evaluates the same one on arrays): identical rounding.
        ms = self._base + self._dms * decode_seqs + self._pms * prefill_tokens + self._cms * context_tokens
        return int(ms * 1000.0 + 0.5)

    def _admits(self) -> bool:
        """Would a decode-only step admit the head of the waiting queue?"""
        if not self.waiting or len(self.running) >= self.max_seqs:
            return False
        room = self.budget - len(self.running)
        if room <= 0:
            return False
        rid = self.waiting[0]
        req = self.req
        n = min(req.prompt[rid] + req.generated[rid] - req.computed[rid], room)
        return -(-(req.computed[rid] + n) // self.block) - req.blocks[rid] <= self.free

    def _preempt(self, rid: int) -> None:
        req = self.req
        self.free += req.blocks[rid]
        req.blocks[rid] = 0
        if not (req.generated[rid] >= 1 and req.computed[rid] == req.prompt[rid] + req.generated[rid] - 1):
            self.prefilling -= 1
        req.computed[rid] = 0
        req.preemptions[rid] += 1
        self.waiting.appendleft(rid)

    def _step(self) -> None:
        req = self.req
        prompt, output, computed, generated, blocks = req.prompt, req.output, req.computed, req.generated, req.blocks
        bs = self.block
        budget = self.budget
        running = self.running
        sched: list[tuple[int, int]] = []
        preempted: list[int] = []
        i = 0
        while i < len(running) and budget > 0:
            rid = running[i]
            need = prompt[rid] + generated[rid] - computed[rid]
            n = need if need < budget else budget
            extra = -(-(computed[rid] + n) // bs) - blocks[rid]
            while extra > self.free:
                victim = running.pop()
                self._preempt(victim)
                preempted.append(victim)
                if victim == rid:
                    break
            if preempted and preempted[-1] == rid:
                break
            self.free -= extra
            blocks[rid] += extra
            sched.append((rid, n))
            budget -= n
            i += 1
        if not preempted:
            waiting = self.waiting
            while waiting and budget > 0 and len(running) < self.max_seqs:
                rid = waiting[0]
                n = prompt[rid] + generated[rid] - computed[rid]
                if n > budget:
                    n = budget
                extra = -(-(computed[rid] + n) // bs) - blocks[rid]
                if extra > self.free:
                    break
                waiting.popleft()
                running.append(rid)
                self.prefilling += 1
                self.free -= extra
                blocks[rid] += extra
                sched.append((rid, n))
                budget -= n
        used = self.total_blocks - self.free
        if used > self.kv_peak_blocks:
            self.kv_peak_blocks = used
        if len(self.waiting) > self.waiting_peak:
            self.waiting_peak = len(self.waiting)
        start = self.now_us
        if not sched:  # nothing fits (cannot happen: a lone request always fits); do not spin
            raise AssertionError(f"replica {self.index}: a step with nothing scheduled at {start} µs")
        decode = prefill = context = 0
        steady_before: list[bool] = []
        for rid, n in sched:
            c = computed[rid]
            is_decode = n == 1 and generated[rid] >= 1 and c == prompt[rid] + generated[rid] - 1
            steady_before.append(is_decode)
            if is_decode:
                decode += 1
            else:
                prefill += n
            context += c + n
        dt = self._step_us(decode, prefill, context)
        end = start + dt
        bucket = start // self.bucket_us
        first, last, finish = req.first_us, req.last_us, req.finish_us
        steady = 0  # emitters whose previous token ended the previous step: gap = dt
        done = 0
        for (rid, n), was_steady in zip(sched, steady_before, strict=True):
            c = computed[rid] + n
            computed[rid] = c
            g = generated[rid]
            if c != prompt[rid] + g:
                # a chunk that leaves exactly the last token of a recompute makes the request steady
                if not was_steady and g >= 1 and c == prompt[rid] + g - 1:
                    self.prefilling -= 1
                continue
            if not was_steady:  # this token ends a prefill (fresh or recomputed): steady from now on
                self.prefilling -= 1
            g += 1
            generated[rid] = g
            if g == 1:
                first[rid] = end
            else:
                gap = end - last[rid]
                if gap == dt:
                    steady += 1
                else:
                    self.itl_bucket.append(bucket)
                    self.itl_gap_us.append(gap)
                    self.itl_count.append(1)
            last[rid] = end
            if g == output[rid]:
                finish[rid] = end
                self.free += blocks[rid]
                blocks[rid] = 0
                done += 1
        if steady:
            self.itl_bucket.append(bucket)
            self.itl_gap_us.append(dt)
            self.itl_count.append(steady)
        if done:
            self.running = [rid for rid in running if finish[rid] == NEVER]
        self.finished_in_last = done
        self.last_end_us = end
        self.now_us = end
        self.steps += 1
        if self.records is not None:
            self.records.append(StepRecord(start, dt, tuple(sched), tuple(preempted)))

    def _stretch(self, limit_us: int) -> bool:
        """Jump the decode-only steps that start before ``limit_us`` and precede the next event at once.

        Preconditions (checked by ``advance``): every running request decodes, none can be admitted.
        Returns False when not even one step can be jumped (its blocks would run out): run it normally.
        """
        req = self.req
        running = self.running
        computed, generated, output, blocks = req.computed, req.generated, req.output, req.blocks
        b = len(running)
        bs = self.block
        k_fin = min(output[r] - generated[r] for r in running)  # the first finish ends the jump (inclusive)
        csum = sum(computed[r] for r in running)
        # KV: request r takes a new block in jumped step j (0-based) iff (computed + j) % bs == 0.
        phases = [0] * bs
        for r in running:
            phases[computed[r] % bs] += 1
        k = self._kv_steps(phases, k_fin)
        if k == 0:
            return False
        start = self.now_us
        # Step durations: context of step j is csum + b·(j + 1).
        if self._cms == 0.0:
            dt0 = self._step_us(b, 0, 0)
            k = min(k, -(-(limit_us - start) // dt0))
            durations = None
            end = start + k * dt0
        else:
            j = np.arange(k, dtype=np.int64)
            ms = self._base + self._dms * b + self._pms * 0 + self._cms * (csum + b * (j + 1))
            dts = (ms * 1000.0 + 0.5).astype(np.int64)
            ends = start + np.cumsum(dts)
            starts = ends - dts
            k = min(k, int(np.searchsorted(starts, limit_us, side="left")))
            durations = dts[:k]
            dt0 = int(dts[0])
            end = int(ends[k - 1])
        # Gaps: the first jumped step's gap is dt0 for requests whose last token ended the previous step.
        bucket = start // self.bucket_us
        steady = 0
        last, finish = req.last_us, req.finish_us
        done = freed = 0
        for r in running:
            if last[r] == start:
                steady += 1
            else:
                self.itl_bucket.append(bucket)
                self.itl_gap_us.append(start + dt0 - last[r])
                self.itl_count.append(1)
            c = computed[r] + k
            computed[r] = c
            g = generated[r] + k
            generated[r] = g
            nb = -(-c // bs)
            self.free -= nb - blocks[r]
            blocks[r] = nb
            last[r] = end
            if g == output[r]:
                finish[r] = end
                self.free += nb
                freed += nb
                blocks[r] = 0
                done += 1
        if steady:
            self.itl_bucket.append(bucket)
            self.itl_gap_us.append(dt0)
            self.itl_count.append(steady)
        if k > 1:
            if durations is None:
                self.itl_bucket.append(bucket)
                self.itl_gap_us.append(dt0)
                self.itl_count.append(b * (k - 1))
            else:
                self.itl_parts.append(
                    (np.full(k - 1, bucket, np.int64), durations[1:].copy(), np.full(k - 1, b, np.int64))
                )
        # the peak is reached just before the finishes of the last jumped step free their blocks
        peak = self.total_blocks - self.free + freed
        if done:
            self.running = [r for r in running if finish[r] == NEVER]
        if peak > self.kv_peak_blocks:
            self.kv_peak_blocks = peak
        self.finished_in_last = done
        self.last_end_us = end
        self.now_us = end
        self.steps += k
        if self.records is not None:
            self.records.append(StepRecord(start, dt0, tuple((r, 1) for r in running), (), k))
        return True

    def _kv_steps(self, phases: list[int], k_max: int) -> int:
        """How many of the next ``k_max`` decode steps get their blocks (``phases[p]`` requests hold
        ``p`` tokens in their last block; a request at phase 0 needs a new block in its next step)."""
        bs = self.block
        free = self.free
        b = sum(phases)

        def needed(k: int) -> int:
            # Blocks taken by k steps: a request at phase p crosses into a new block at steps j ≡ −p (mod bs).
            total = 0
            for p, cnt in enumerate(phases):
                if cnt:
                    first = (-p) % bs
                    if k > first:
                        total += cnt * ((k - 1 - first) // bs + 1)
            return total

        if b * (-(-k_max // bs)) <= free or needed(k_max) <= free:
            return k_max
        lo, hi = 0, k_max  # needed(lo) <= free < needed(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if needed(mid) <= free:
                lo = mid
            else:
                hi = mid
        return lo


@dataclass(frozen=True)
class ReplicaRun:
    """What ``simulate_replica`` measured, per request (in input order) and per inter-token gap.

    ``ttft_ms``: arrival to first token (inf = refused or not served by ``until_s``); ``tpot_ms``: mean gap
    between the request's output tokens (NaN for single-token outputs); ``finish_s`` (inf = not finished);
    ``preemptions`` per request; ``itl_gap_ms``/``itl_count``/``itl_bucket``: every inter-token gap as
    (gap, how many tokens had it, 10 s bucket of the step start); ``steps`` engine steps run;
    ``records`` the per-step schedule when asked for.
    """

    ttft_ms: NDArray[np.float64]
    tpot_ms: NDArray[np.float64]
    finish_s: NDArray[np.float64]
    preemptions: NDArray[np.int64]
    itl_gap_ms: NDArray[np.float64]
    itl_count: NDArray[np.int64]
    itl_bucket: NDArray[np.int64]
    steps: int
    kv_peak_blocks: int
    records: tuple[StepRecord, ...] | None = None

    def itl_percentile_ms(self, percentile: float) -> float:
        """The ``percentile``-th inter-token gap over all tokens (NaN without gaps)."""
        return weighted_percentile(self.itl_gap_ms, self.itl_count, percentile)

    def ttft_percentile_ms(self, percentile: float) -> float:
        """The ``percentile``-th TTFT over all requests (refused or unserved ones count as infinite)."""
        if self.ttft_ms.size == 0:
            return math.nan
        return float(np.percentile(self.ttft_ms, percentile, method="inverted_cdf"))


def weighted_percentile(values: ArrayLike, weights: ArrayLike, percentile: float) -> float:
    """The smallest value whose cumulative weight reaches ``percentile``% of the total (inverted CDF, as
    ``np.percentile(np.repeat(values, weights), percentile, method="inverted_cdf")``); NaN if empty."""
    v = np.asarray(values, dtype=float)
    w = np.asarray(weights, dtype=float)
    keep = w > 0
    if not keep.any():
        return math.nan
    v, w = v[keep], w[keep]
    order = np.argsort(v, kind="stable")
    cum = np.cumsum(w[order])
    idx = int(np.searchsorted(cum, percentile / 100.0 * cum[-1], side="left"))
    return float(v[order][min(idx, v.size - 1)])


def simulate_replica(
    profile: EngineProfile,
    arrivals_s: ArrayLike,
    prompt_tokens: ArrayLike,
    output_tokens: ArrayLike,
    *,
    until_s: float | None = None,
    skip: bool = True,
    record_steps: bool = False,
) -> ReplicaRun:
    """Serve the given requests (sorted arrival times in seconds, token counts) on one replica.

    Runs until every request has finished, or only the steps that start before ``until_s``. With
    ``skip=False`` every step runs one at a time (same results, slower; for tests); ``record_steps``
    keeps the per-step schedule (``ReplicaRun.records``).
    """
    req = Requests.from_arrays(arrivals_s, prompt_tokens, output_tokens)
    rep = Replica(profile, req, skip=skip, record_steps=record_steps)
    limit = None if until_s is None else round(until_s * US_PER_S)
    for rid, t in enumerate(req.arrival_us):
        if limit is not None and t >= limit:
            break
        rep.advance(t)
        rep.enqueue(rid)
    rep.advance(limit if limit is not None else 2**62)
    first = np.asarray(req.first_us, dtype=np.int64)
    last = np.asarray(req.last_us, dtype=np.int64)
    fin = np.asarray(req.finish_us, dtype=np.int64)
    arr = np.asarray(req.arrival_us, dtype=np.int64)
    out = np.asarray(req.output, dtype=np.int64)
    ttft = np.where(first >= 0, (first - arr) / 1000.0, np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where((fin >= 0) & (out > 1), (last - first) / 1000.0 / np.maximum(out - 1, 1), np.nan)
    bucket, gap, count = rep.drain_itl()
    return ReplicaRun(
        ttft_ms=ttft,
        tpot_ms=tpot,
        finish_s=np.where(fin >= 0, fin / US_PER_S, np.inf),
        preemptions=np.asarray(req.preemptions, dtype=np.int64),
        itl_gap_ms=gap / 1000.0,
        itl_count=count,
        itl_bucket=bucket,
        steps=rep.steps,
        kv_peak_blocks=rep.kv_peak_blocks,
        records=tuple(rep.records) if rep.records is not None else None,
    )
