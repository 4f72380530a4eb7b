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
``tests/test_sim_llm_engine.py``). Inter-token gaps are kept as (bucket, gap, count) triples — a bucket
being ``bucket_us`` of step start times (10 s by default), the gap rounded to 0.1 ms — never per token.
"""

from __future__ import annotations

import heapq
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
GAP_QUANTUM_US = 100  # inter-token gaps are kept to 0.1 ms (statistics only; the schedule is exact)


def _quantum(gap_us: int) -> int:
    return (gap_us + GAP_QUANTUM_US // 2) // GAP_QUANTUM_US * GAP_QUANTUM_US


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

    Bookkeeping: a running request that emitted a token at the end of the previous step and has all
    but its newest token computed (``computed == prompt + generated − 1``) is a *steady decoder*: every
    step gives it one token and it emits one. Steady decoders are kept lazily — ``computed = base_c +
    decode_count`` and ``generated = base_g + decode_count`` for one counter shared by the replica —
    so a step costs O(1) for all of them together: block needs come from a histogram of their
    position within a block, finishes from a heap, the context from a running sum. The others (at most
    one request still prefilling, the one admitted last, plus those admitted in the step) are handled
    one by one. This is exact because with FCFS and chunked prefill no running request is ever skipped
    for budget (budget ≥ ``max_num_seqs``, and a chunk that leaves prefill unfinished exhausts the
    budget, so the request still prefilling is always the last running one). A step in which KV blocks
    run out takes the explicit path (every running request one by one, vLLM's loop verbatim).
    ``reference=True`` runs every step on the explicit path (for tests).
    """

    def __init__(
        self,
        profile: EngineProfile,
        requests: Requests,
        *,
        index: int = 0,
        start_us: int = 0,
        skip: bool = True,
        reference: bool = False,
        bucket_us: int = DEFAULT_BUCKET_US,
        record_steps: bool = False,
    ) -> None:
        self.profile = profile
        self.req = requests
        self.index = index
        self.skip = skip and not reference
        self.reference = reference
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
        self.running: dict[int, None] = {}  # admission order (an ordered set)
        self.explicit: list[int] = []  # running requests kept one by one (not steady decoders), in order
        # Steady decoders: base values, finish heap (decode count at which they finish), phase histogram.
        self.decodes = 0
        self.base: dict[int, tuple[int, int]] = {}
        self.finish_heap: list[tuple[int, int]] = []
        self.phase = [0] * self.block  # steady decoders per (base_c mod block)
        self.base_c_sum = 0
        self.last_end_us = NEVER  # end of the latest step, and how many requests finished in it
        self.finished_in_last = 0
        self.steps = 0
        self.kv_peak_blocks = 0  # since the last reset_peaks()
        self.waiting_peak = 0
        # Inter-token gaps as (bucket of the step start, gap µs, count).
        self.itl_bucket: list[int] = []
        self.itl_gap_us: list[int] = []
        self.itl_count: list[int] = []
        self.records: list[StepRecord] | None = [] if record_steps else None
        # Requests that emitted their first token / finished since the owner last cleared these lists.
        self.first_log: list[int] = []
        self.finish_log: list[int] = []
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
            if self.skip and not self.explicit and self.running and not self._admits():
                bucket_end = (self.now_us // self.bucket_us + 1) * self.bucket_us
                if self._stretch(min(t_us, bucket_end)):
                    continue
            if self.reference or not self._fast_step():
                self._explicit_step()

    def drain_itl(self) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """The inter-token gaps recorded so far as (bucket, gap µs, count) arrays, and forget them."""
        out = (
            np.asarray(self.itl_bucket, np.int64), np.asarray(self.itl_gap_us, np.int64),
            np.asarray(self.itl_count, np.int64),
        )
        self.itl_bucket, self.itl_gap_us, self.itl_count = [], [], []
        return out

    # -- steady decoders ---------------------------------------------------------------------------------

    def _make_steady(self, rid: int) -> None:
        """``rid`` (running, just emitted, all but its newest token computed) joins the steady decoders."""
        req = self.req
        bc = req.computed[rid] - self.decodes
        bg = req.generated[rid] - self.decodes
        self.base[rid] = (bc, bg)
        heapq.heappush(self.finish_heap, (req.output[rid] - bg, rid))
        self.phase[bc % self.block] += 1
        self.base_c_sum += bc

    def materialize(self) -> None:
        """Write every steady decoder's values out and keep them one by one (before an explicit step)."""
        req = self.req
        d = self.decodes
        bs = self.block
        for rid, (bc, bg) in self.base.items():
            c = bc + d
            req.computed[rid] = c
            req.generated[rid] = bg + d
            req.blocks[rid] = -(-c // bs)
            req.last_us[rid] = self.now_us
        self.base.clear()
        self.finish_heap.clear()
        self.phase = [0] * bs
        self.base_c_sum = 0
        self.explicit = list(self.running)

    def _finish_steady(self, rid: int, end: int) -> None:
        req = self.req
        bc, bg = self.base.pop(rid)
        c = bc + self.decodes
        nb = -(-c // self.block)
        req.computed[rid] = c
        req.generated[rid] = bg + self.decodes
        req.blocks[rid] = 0
        req.last_us[rid] = end
        req.finish_us[rid] = end
        self.free += nb
        self.phase[bc % self.block] -= 1
        self.base_c_sum -= bc
        del self.running[rid]
        self.finish_log.append(rid)

    # -- the schedule ------------------------------------------------------------------------------------

    def _step_us(self, decode_seqs: int, prefill_tokens: int, context_tokens: int) -> int:
        # One expression for every path: identical rounding whichever path computes a step.
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

    def _fast_step(self) -> bool:
        """One step with the steady decoders lazy; False (nothing changed) when blocks would run out."""
        req = self.req
        prompt, output, computed, generated, blocks = req.prompt, req.output, req.computed, req.generated, req.blocks
        bs = self.block
        n_steady = len(self.base)
        if len(self.explicit) > 1 or (self.explicit and next(reversed(self.running)) != self.explicit[0]):
            return False  # not the shape the fast path knows (cannot happen; be safe)
        need_blocks = self.phase[(-self.decodes) % bs]
        budget = self.budget - n_steady
        sched: list[tuple[int, int]] = []
        if self.explicit:
            rid = self.explicit[0]
            n = min(prompt[rid] + generated[rid] - computed[rid], budget)
            extra = -(-(computed[rid] + n) // bs) - blocks[rid]
            if need_blocks + extra > self.free:
                return False
            sched.append((rid, n))
            need_blocks += extra
            blocks[rid] += extra
            budget -= n
        elif need_blocks > self.free:
            return False
        self.free -= need_blocks
        waiting = self.waiting
        running = self.running
        while waiting and budget > 0 and len(running) < self.max_seqs:
            rid = waiting[0]
            n = prompt[rid] + generated[rid] - computed[rid]
            if n > budget:
                n = budget
            extra = -(-(computed[rid] + n) // bs) - blocks[rid]
            if extra > self.free:
                break
            waiting.popleft()
            running[rid] = None
            self.explicit.append(rid)
            self.free -= extra
            blocks[rid] += extra
            sched.append((rid, n))
            budget -= n
        used = self.total_blocks - self.free
        if used > self.kv_peak_blocks:
            self.kv_peak_blocks = used
        if len(waiting) > self.waiting_peak:
            self.waiting_peak = len(waiting)
        decode = n_steady
        prefill = 0
        context = self.base_c_sum + n_steady * (self.decodes + 1)
        steady_flags = []
        for rid, n in sched:
            c = computed[rid]
            is_decode = n == 1 and generated[rid] >= 1 and c == prompt[rid] + generated[rid] - 1
            steady_flags.append(is_decode)
            if is_decode:
                decode += 1
            else:
                prefill += n
            context += c + n
        start = self.now_us
        dt = self._step_us(decode, prefill, context)
        end = start + dt
        bucket = start // self.bucket_us
        if self.records is not None:
            lazy = [(r, 1) for r in running if r in self.base]
            self.records.append(StepRecord(start, dt, (*lazy, *sched)))
        self.decodes += 1
        done = 0
        if n_steady:
            self.itl_bucket.append(bucket)
            self.itl_gap_us.append(_quantum(dt))
            self.itl_count.append(n_steady)
            heap = self.finish_heap
            while heap and heap[0][0] <= self.decodes:
                _, rid = heapq.heappop(heap)
                self._finish_steady(rid, end)
                done += 1
        first, last, finish = req.first_us, req.last_us, req.finish_us
        still: list[int] = []
        for rid, n in sched:
            c = computed[rid] + n
            computed[rid] = c
            g = generated[rid]
            if c != prompt[rid] + g:
                still.append(rid)  # mid-prefill (or one token short of a recompute): stays explicit
                continue
            g += 1
            generated[rid] = g
            if g == 1:
                first[rid] = end
                self.first_log.append(rid)
            else:
                self.itl_bucket.append(bucket)
                self.itl_gap_us.append(_quantum(end - last[rid]))
                self.itl_count.append(1)
            last[rid] = end
            if g == output[rid]:
                finish[rid] = end
                self.finish_log.append(rid)
                self.free += blocks[rid]
                blocks[rid] = 0
                del running[rid]
                done += 1
            else:
                self._make_steady(rid)
        self.explicit = still
        self.finished_in_last = done
        self.last_end_us = end
        self.now_us = end
        self.steps += 1
        return True

    def _explicit_step(self) -> None:
        """vLLM's ``schedule()`` over every running request one by one (see the module Notes)."""
        if self.base:
            self.materialize()
        req = self.req
        prompt, output, computed, generated, blocks = req.prompt, req.output, req.computed, req.generated, req.blocks
        bs = self.block
        budget = self.budget
        running = list(self.running)
        sched: list[tuple[int, int]] = []
        preempted: list[int] = []
        i = 0
        while i < len(running) and budget > 0:
            rid = running[i]
            need = prompt[rid] + generated[rid] - computed[rid]
            n = need if need < budget else budget
            extra = -(-(computed[rid] + n) // bs) - blocks[rid]
            while extra > self.free:
                victim = running.pop()  # the most recently admitted: recompute later
                self.free += blocks[victim]
                blocks[victim] = 0
                computed[victim] = 0
                req.preemptions[victim] += 1
                self.waiting.appendleft(victim)
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
        for rid, n in sched:
            c = computed[rid]
            if n == 1 and generated[rid] >= 1 and c == prompt[rid] + generated[rid] - 1:
                decode += 1
            else:
                prefill += n
            context += c + n
        dt = self._step_us(decode, prefill, context)
        end = start + dt
        bucket = start // self.bucket_us
        if self.records is not None:
            self.records.append(StepRecord(start, dt, tuple(sched), tuple(preempted)))
        self.decodes += 1
        first, last, finish = req.first_us, req.last_us, req.finish_us
        steady = 0  # emitters whose previous token ended the previous step: gap = dt
        done = 0
        emitted: set[int] = set()
        for rid, n in sched:
            c = computed[rid] + n
            computed[rid] = c
            g = generated[rid]
            if c != prompt[rid] + g:
                continue
            g += 1
            generated[rid] = g
            emitted.add(rid)
            if g == 1:
                first[rid] = end
                self.first_log.append(rid)
            else:
                gap = end - last[rid]
                if gap == dt:
                    steady += 1
                else:
                    self.itl_bucket.append(bucket)
                    self.itl_gap_us.append(_quantum(gap))
                    self.itl_count.append(1)
            last[rid] = end
            if g == output[rid]:
                finish[rid] = end
                self.finish_log.append(rid)
                self.free += blocks[rid]
                blocks[rid] = 0
                done += 1
        if steady:
            self.itl_bucket.append(bucket)
            self.itl_gap_us.append(_quantum(dt))
            self.itl_count.append(steady)
        self.running = {rid: None for rid in running if finish[rid] == NEVER}
        self.explicit = []
        for rid in self.running:
            if not self.reference and rid in emitted:
                self._make_steady(rid)
            else:
                self.explicit.append(rid)
        self.finished_in_last = done
        self.last_end_us = end
        self.now_us = end
        self.steps += 1

    def _stretch(self, limit_us: int) -> bool:
        """Jump the decode-only steps that start before ``limit_us`` and precede the next event at once.

        Preconditions (checked by ``advance``): every running request is a steady decoder and none can be
        admitted. Returns False when not even one step can be jumped (its blocks would run out).
        """
        bs = self.block
        b = len(self.base)
        d0 = self.decodes
        k_fin = self.finish_heap[0][0] - d0  # the first finish ends the jump (inclusive)
        phases = [self.phase[(p - d0) % bs] for p in range(bs)]  # by position in the block now
        k = self._kv_steps(phases, k_fin)
        if k == 0:
            return False
        start = self.now_us
        csum = self.base_c_sum + b * d0  # computed tokens of the batch now
        # Step j (0-based) attends over csum + b·(j + 1) tokens; stop before the first one starting at limit.
        runs: list[tuple[int, int]] = []  # later steps' gaps, quantised, as (gap, steps) runs
        if self._cms == 0.0:
            dt0 = self._step_us(b, 0, 0)
            k = min(k, -(-(limit_us - start) // dt0))
            end = start + k * dt0
            if k > 1:
                runs.append((_quantum(dt0), k - 1))
        else:
            # _step_us(b, 0, csum + b·(j + 1)) inlined, the same float operations in the same order
            fixed = self._base + self._dms * b + self._pms * 0
            cms = self._cms
            half = GAP_QUANTUM_US // 2
            t = start
            j = 0
            dt0 = 0
            last_q = -1
            count = 0
            ctx = csum + b
            while j < k and t < limit_us:
                dt = int((fixed + cms * ctx) * 1000.0 + 0.5)
                if j == 0:
                    dt0 = dt
                else:
                    q = (dt + half) // GAP_QUANTUM_US * GAP_QUANTUM_US
                    if q == last_q:
                        count += 1
                    else:
                        if count:
                            runs.append((last_q, count))
                        last_q, count = q, 1
                t += dt
                ctx += b
                j += 1
            if count:
                runs.append((last_q, count))
            k = j
            end = t
        self.free -= self._blocks_needed(phases, k)
        peak = self.total_blocks - self.free
        if peak > self.kv_peak_blocks:
            self.kv_peak_blocks = peak
        bucket = start // self.bucket_us
        self.itl_bucket.append(bucket)
        self.itl_gap_us.append(_quantum(dt0))
        self.itl_count.append(b)
        for q, steps in runs:
            self.itl_bucket.append(bucket)
            self.itl_gap_us.append(q)
            self.itl_count.append(b * steps)
        if self.records is not None:
            lazy = tuple((r, 1) for r in self.running)
            self.records.append(StepRecord(start, dt0, lazy, (), k))
        self.decodes += k
        done = 0
        heap = self.finish_heap
        while heap and heap[0][0] <= self.decodes:
            _, rid = heapq.heappop(heap)
            self._finish_steady(rid, end)
            done += 1
        self.finished_in_last = done
        self.last_end_us = end
        self.now_us = end
        self.steps += k
        return True

    def _blocks_needed(self, phases: list[int], k: int) -> int:
        """Blocks taken by ``k`` decode steps (``phases[p]`` decoders hold ``p`` tokens in their last block;
        a decoder at position p crosses into a new block at steps j ≡ −p (mod block), j = 0, 1, …)."""
        bs = self.block
        total = 0
        for p, cnt in enumerate(phases):
            if cnt:
                first = (-p) % bs
                if k > first:
                    total += cnt * ((k - 1 - first) // bs + 1)
        return total

    def _kv_steps(self, phases: list[int], k_max: int) -> int:
        """How many of the next ``k_max`` decode steps get their blocks."""
        free = self.free
        b = sum(phases)
        if b * (-(-k_max // self.block)) <= free or self._blocks_needed(phases, k_max) <= free:
            return k_max
        lo, hi = 0, k_max  # needed(lo) <= free < needed(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._blocks_needed(phases, mid) <= free:
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
    reference: bool = False,
    record_steps: bool = False,
) -> ReplicaRun:
    """Serve the given requests (sorted arrival times in seconds, token counts) on one replica.

    Runs until every request has finished, or only the steps that start before ``until_s``. With
    ``skip=False`` every step runs one at a time, with ``reference=True`` moreover every request one by
    one (vLLM's loop verbatim) — same results, slower, for tests; ``record_steps`` keeps the per-step
    schedule (``ReplicaRun.records``).
    """
    req = Requests.from_arrays(arrivals_s, prompt_tokens, output_tokens)
    rep = Replica(profile, req, skip=skip, reference=reference, record_steps=record_steps)
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
