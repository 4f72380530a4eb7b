"""The queue in front of one job's replicas: who serves which request, when, and which are dropped.

Used by the engine (``engine.py``), one ``JobServer`` per job, all sharing one ``ReplicaTable``. Requests
arrive in time order; the server keeps its state (replica free times, the central FIFO queue) across calls
so the engine can change the replica set between calls.

Disciplines (``concurrency``):

* ``artifact`` (``concurrency=4``, the default): the Faro artifact's Ray Serve model. A central FIFO queue
  feeds a scheduler that walks the replicas round-robin (in an order reshuffled whenever the replica set
  changes) and hands the head request to the first replica holding fewer than ``concurrency`` requests;
  each replica serves its own requests one at a time, FIFO. So up to ``concurrency − 1`` requests can
  wait behind a busy replica while another replica idles — which is why it is slower than M/G/c.
* ``mgc`` (``concurrency=1``): a central FCFS queue in front of ``c`` identical servers (M/G/c).

A request is dropped when it arrives and ``max_queue`` requests already wait in the central queue, or
when the admission draw says so (Penalty objectives admit only a fraction). Times are in seconds.

Two implementations give bit-identical results (``tests/test_sim_fastpath.py``):

* the reference loop (``JobServer._serve_slow``, ``drain``): one request at a time in Python;
* ``serve_fast``, a vectorised prefix: while the central queue is empty, no replica becomes ready and the
  replica at the round-robin position has room, request ``t`` goes to replica ``(pos + t) mod n`` and
  each replica is a FIFO single server, ``finish = max(arrival, previous finish) + service``. That
  recurrence is solved for all jobs at once by fixed-point iteration (only entries whose predecessor
  changed are recomputed; it ends after the longest busy run), using the same float operations as the
  loop, so the values are identical. The assumption is then checked (the ``concurrency``-th previous
  finish on the replica must be ≤ the arrival); from the first request that breaks it the loop takes
  over. A replica's state is its free time and its last ``concurrency`` finish times, which is all the
  loop's decisions depend on. ``rewind_fast`` restores that state after any shorter prefix of a call (the
  engine serves a minute ahead and takes back what a policy call invalidates).

Which path runs only changes the speed: after a prefix that served almost nothing (busy replicas, as in
M/G/c at high load) the loop keeps going longer before the vectorised path is tried again.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from itertools import accumulate

import numpy as np
from numpy.typing import NDArray

FAST_MIN_REQUESTS = 8  # below this the loop is cheaper than the vectorised path (results are the same)
FAST_WINDOW = 4096  # most requests one vectorised attempt looks at
SLOW_CHUNK = 16  # requests the loop handles before the vectorised path is tried again
SLOW_CHUNK_MAX = 1024  # ... at most, after vectorised attempts that served almost nothing
FULL_SWEEPS = 3  # fixed-point sweeps over all requests before only the changed ones are followed


class ReplicaTable:
    """Free time and last ``cap`` finish times (oldest first, −inf padded) of every replica ever started.

    Shared by the ``JobServer``s of one simulation so ``serve_fast`` gathers all jobs' replicas at once.
    """

    def __init__(self, cap: int, size: int = 64) -> None:
        self.cap = cap
        self.free_at = np.zeros(size)
        self.last = np.full((size, cap), -np.inf)
        self.size = 0

    def new(self, ready_s: float) -> int:
        if self.size == self.free_at.size:
            grow = self.free_at.size
            self.free_at = np.concatenate([self.free_at, np.zeros(grow)])
            self.last = np.concatenate([self.last, np.full((grow, self.cap), -np.inf)])
        rid = self.size
        self.free_at[rid] = ready_s
        self.last[rid] = -np.inf
        self.size += 1
        return rid


class JobServer:
    """One job's replicas and central queue (see module docstring)."""

    def __init__(
        self,
        *,
        concurrency: int,
        max_queue: int | None,
        rng: np.random.Generator,
        table: ReplicaTable | None = None,
        vectorized: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if table is not None and table.cap != concurrency:
            raise ValueError("the replica table's cap must equal concurrency")
        self.cap = concurrency
        self.max_queue = max_queue if max_queue is not None else 1 << 62
        self.rng = rng
        self.table = table if table is not None else ReplicaTable(concurrency)
        self.vectorized = vectorized
        self.replicas: list[int] = []  # active replica ids, oldest first (removal takes the newest)
        self.cycle: list[int] = []  # the round-robin order
        self.pos = 0
        # The loop's view of the replicas; authoritative only while ``_py`` (else the table is).
        self._py = True
        self.free_at: dict[int, float] = {}
        self.inflight: dict[int, deque[float]] = {}  # finish times of the requests a replica holds
        self.pending: list[float] = []  # heap of ready times of starting replicas
        self.queue: deque[tuple[float, float, float]] = deque()  # (arrival_s, service_s, extra_s)
        self.t_sched = 0.0
        # Requests the loop handles after a vectorised prefix stopped before that path is tried again
        # (``loop_left`` of them still, across calls); grows while the prefixes stay short.
        self.slow_chunk = SLOW_CHUNK
        self.loop_left = 0
        self._room_s: float | None = None  # cached _next_room_s(); None = recompute
        # Results of every request handed in, in dispatch order (drops separately): array chunks, then
        # the loop's scalars not yet turned into a chunk.
        self._chunks: list[tuple[NDArray[np.float64], ...]] = []
        self._drop_chunks: list[NDArray[np.float64]] = []
        self.out_arrival: list[float] = []
        self.out_start: list[float] = []
        self.out_finish: list[float] = []
        self.out_extra: list[float] = []
        self.drop_arrival: list[float] = []

    # -- replica set -------------------------------------------------------------------------------

    @property
    def num_active(self) -> int:
        return len(self.replicas)

    @property
    def num_pending(self) -> int:
        return len(self.pending)

    def add(self, ready_s: float) -> None:
        """A replica that starts serving at ``ready_s``."""
        heapq.heappush(self.pending, ready_s)

    def remove(self, n: int) -> int:
        """Take ``n`` replicas away now: starting ones first (latest first), then the newest active ones.

        A removed replica finishes the requests it already holds. Returns how many were removed.
        """
        removed = 0
        if n > 0 and self.pending:
            self.pending.sort()
            while removed < n and self.pending:
                self.pending.pop()
                removed += 1
            heapq.heapify(self.pending)
        changed = False
        while removed < n and self.replicas:
            self.replicas.pop()
            removed += 1
            changed = True
        if changed:
            self._reshuffle()
        self._room_s = None
        return removed

    def _reshuffle(self) -> None:
        self.cycle = list(self.replicas)
        self.rng.shuffle(self.cycle)
        self.pos = 0

    def _activate(self, t: float) -> None:
        while self.pending and self.pending[0] <= t:
            ready = heapq.heappop(self.pending)
            rid = self.table.new(ready)
            if self._py:
                self.free_at[rid] = ready
                self.inflight[rid] = deque()
            self.replicas.append(rid)
        self._reshuffle()
        self._room_s = None

    # -- state hand-over between the loop and the vectorised path ----------------------------------

    def _to_py(self) -> None:
        if self._py:
            return
        free, last, ninf = self.table.free_at, self.table.last, -np.inf
        for r in self.replicas:
            self.free_at[r] = float(free[r])
            self.inflight[r] = deque(x for x in last[r].tolist() if x != ninf)
        self._py = True

    def _to_np(self) -> None:
        if not self._py:
            return
        free, last, cap = self.table.free_at, self.table.last, self.cap
        for r in self.replicas:
            free[r] = self.free_at[r]
            d = list(self.inflight[r])[-cap:]
            last[r] = [-np.inf] * (cap - len(d)) + d
        self._py = False

    def _flush(self) -> None:
        if self.out_arrival:
            self._chunks.append(
                (
                    np.asarray(self.out_arrival),
                    np.asarray(self.out_start),
                    np.asarray(self.out_finish),
                    np.asarray(self.out_extra),
                )
            )
            self.out_arrival, self.out_start, self.out_finish, self.out_extra = [], [], [], []
        if self.drop_arrival:
            self._drop_chunks.append(np.asarray(self.drop_arrival))
            self.drop_arrival = []

    # -- the reference loop ------------------------------------------------------------------------

    def _assign(self, t: float) -> int:
        """The scheduler's walk: the next replica (round-robin) holding < cap requests at ``t``, or −1."""
        cycle, cap, inflight = self.cycle, self.cap, self.inflight
        n = len(cycle)
        pos = self.pos
        for _ in range(n):
            r = cycle[pos]
            pos += 1
            if pos == n:
                pos = 0
            d = inflight[r]
            while d and d[0] <= t:
                d.popleft()
            if len(d) < cap:
                self.pos = pos
                return r
        self.pos = pos
        return -1

    def _dispatch(self, r: int, t: float, arrival: float, service: float, extra: float) -> None:
        free = self.free_at[r]
        start = t if t > free else free
        finish = start + service
        self.free_at[r] = finish
        self.inflight[r].append(finish)
        self._room_s = None
        self.out_arrival.append(arrival)
        self.out_start.append(start)
        self.out_finish.append(finish)
        self.out_extra.append(extra)

    def _next_room_s(self) -> float:
        """Earliest time a replica can take a request (a running one frees a slot, or one becomes ready)."""
        if self._room_s is not None:
            return self._room_s if self._room_s > self.t_sched else self.t_sched
        cap = self.cap
        best = self.pending[0] if self.pending else float("inf")
        for r in self.cycle:
            d = self.inflight[r]
            room = d[len(d) - cap] if len(d) >= cap else self.t_sched
            if room < best:
                best = room
        self._room_s = best
        return best if best > self.t_sched else self.t_sched

    def drain(self, until_s: float) -> None:
        """Dispatch queued requests whose replica frees up (or becomes ready) at or before ``until_s``."""
        queue = self.queue
        if not queue:
            return
        self._to_py()
        while queue:
            t = self._next_room_s()
            if t > until_s:
                break
            if self.pending and self.pending[0] <= t:
                self._activate(t)
            r = self._assign(t)
            if r < 0:  # a tie resolved by an activation or float rounding; look again
                self.t_sched = t
                self._room_s = None
                if self._next_room_s() == t and not (self.pending and self.pending[0] <= t):
                    break  # defensive: nothing can take it at t
                continue
            self.t_sched = t
            arrival, service, extra = queue.popleft()
            self._dispatch(r, t, arrival, service, extra)

    def serve(
        self,
        arrival_s: NDArray[np.float64],
        service_s: NDArray[np.float64],
        extra_s: NDArray[np.float64],
        admit: NDArray[np.bool_] | None = None,
    ) -> None:
        """Hand in requests in arrival order (``extra_s`` is latency outside the queue, e.g. routing)."""
        n = int(arrival_s.size)
        i = 0
        lists: tuple[list, ...] | None = None
        window = FAST_WINDOW
        while i < n:
            if self.vectorized and not self.queue and self.cycle and n - i >= FAST_MIN_REQUESTS and self.loop_left <= 0:
                # A bounded window, shrunk while the prefix keeps breaking early (saturation), so a long
                # batch never costs more than a few times the loop.
                w = min(n, i + window)
                sub_admit = admit[i:w] if admit is not None else None
                got = serve_fast([self], [arrival_s[i:w]], [service_s[i:w]], [extra_s[i:w]], [sub_admit])[0]
                whole = i + got == w
                i += got
                window = FAST_WINDOW if got >= window // 2 else max(FAST_MIN_REQUESTS * 4, window // 4)
                if not whole:
                    self.after_fast(got)
                if i >= n:
                    break
                if whole:
                    continue  # the whole window fitted: go on vectorised
            if lists is None:
                lists = (
                    arrival_s.tolist(),
                    service_s.tolist(),
                    extra_s.tolist(),
                    admit.tolist() if admit is not None else None,
                )
            i = self._serve_slow(*lists, i, n)

    def after_fast(self, got: int) -> None:
        """A vectorised prefix stopped after ``got`` requests: how long the loop goes on before the next try.

        A prefix this short did not pay for the call (busy replicas, e.g. M/G/c at high load): the loop goes
        on longer each time, and the vectorised path is tried sooner again once a prefix pays. (Either path
        gives the same results; this only decides which is faster.)
        """
        if got < FAST_MIN_REQUESTS * 2:
            self.slow_chunk = min(self.slow_chunk * 2, SLOW_CHUNK_MAX)
        else:
            self.slow_chunk = SLOW_CHUNK
        self.loop_left = self.slow_chunk

    def _serve_slow(
        self, arrivals: list, services: list, extras: list, admits: list | None, i0: int, n: int
    ) -> int:
        """The reference loop from request ``i0``; returns where it stopped (the vectorised path may go on)."""
        self._to_py()
        queue = self.queue
        max_queue = self.max_queue
        drops = self.drop_arrival
        inflight, free_at, cap = self.inflight, self.free_at, self.cap
        o_arr, o_start = self.out_arrival.append, self.out_start.append
        o_fin, o_extra = self.out_finish.append, self.out_extra.append
        stop_after = i0 + (self.loop_left if self.loop_left > 0 else SLOW_CHUNK) if self.vectorized else n
        i = i0
        while i < n:
            if i >= stop_after and not queue:
                self.loop_left = 0
                return i
            a = arrivals[i]
            i += 1
            if queue:
                self.drain(a)
            if self.pending and self.pending[0] <= a:
                self._activate(a)
                if queue:
                    self.drain(a)
            if admits is not None and not admits[i - 1]:
                drops.append(a)
                continue
            if queue:
                if len(queue) >= max_queue:
                    drops.append(a)
                else:
                    queue.append((a, services[i - 1], extras[i - 1]))
                continue
            # Inline round-robin walk and dispatch: the common, unsaturated path.
            cycle = self.cycle
            nc = len(cycle)
            pos = self.pos
            r = -1
            for _ in range(nc):
                c = cycle[pos]
                pos += 1
                if pos == nc:
                    pos = 0
                d = inflight[c]
                while d and d[0] <= a:
                    d.popleft()
                if len(d) < cap:
                    r = c
                    break
            self.pos = pos
            if r < 0:
                if max_queue <= 0:
                    drops.append(a)
                else:
                    self.t_sched = a
                    queue.append((a, services[i - 1], extras[i - 1]))
                continue
            free = free_at[r]
            start = a if a > free else free
            finish = start + services[i - 1]
            free_at[r] = finish
            d.append(finish)
            self._room_s = None
            o_arr(a)
            o_start(start)
            o_fin(finish)
            o_extra(extras[i - 1])
        if self.vectorized:
            self.loop_left = max(stop_after - i, 0)  # the rest of the loop's turn, in the next call
        return i

    def take_results(self) -> tuple[NDArray[np.float64], ...]:
        """Arrays (arrival, start, finish, extra, dropped_arrival) handed out since the last call."""
        self._flush()
        chunks, drops = self._chunks, self._drop_chunks
        self._chunks, self._drop_chunks = [], []
        if len(chunks) == 1:
            out = chunks[0]
        elif chunks:
            out = tuple(np.concatenate([c[k] for c in chunks]) for k in range(4))
        else:
            out = (np.empty(0), np.empty(0), np.empty(0), np.empty(0))
        dropped = drops[0] if len(drops) == 1 else (np.concatenate(drops) if drops else np.empty(0))
        return (*out, dropped)


def serve_fast(
    servers: Sequence[JobServer],
    arrivals: Sequence[NDArray[np.float64]],
    services: Sequence[NDArray[np.float64]],
    extras: Sequence[NDArray[np.float64]],
    admits: Sequence[NDArray[np.bool_] | None],
    *,
    served: list[tuple[NDArray[np.float64], ...] | None] | None = None,
    undo: list[tuple | None] | None = None,
) -> list[int]:
    """The vectorised prefix (module docstring) for several jobs sharing one ``ReplicaTable``.

    Returns, per server, how many of its requests were handled (served or refused by admission); the
    caller hands the rest to ``JobServer.serve``, which continues with the reference loop. The served
    requests' (arrival, start, finish, extra) go to the server's results, or, when ``served`` is given (a
    list with one slot per server; admission must then be None), into ``served[j]`` instead so the caller
    can split them (the engine serves several steps at once and records them per step). ``undo`` (a list
    with one slot per server) receives what ``rewind_fast`` needs to take back the end of that prefix.
    """
    done = [0] * len(servers)
    if not servers:
        return done
    table = servers[0].table
    cap = table.cap
    jobs: list[int] = []
    a_parts: list[NDArray[np.float64]] = []
    s_parts: list[NDArray[np.float64]] = []
    e_parts: list[NDArray[np.float64]] = []
    admitted_idx: list[NDArray[np.int64] | None] = []
    cuts: list[int] = []
    rows_list: list[int] = []
    sizes: list[int] = []
    nrep: list[int] = []
    for j, srv in enumerate(servers):
        arr = arrivals[j]
        if not srv.vectorized or srv.queue or not srv.cycle or arr.size == 0 or srv.table is not table:
            continue
        cut = arr.size if not srv.pending else int(arr.searchsorted(srv.pending[0], side="left"))
        if cut == 0:
            continue
        adm = admits[j]
        if adm is not None:
            idx = np.flatnonzero(adm[:cut])
            a, s, e = arr[idx], services[j][idx], extras[j][idx]
        else:
            idx = None
            a, s, e = arr[:cut], services[j][:cut], extras[j][:cut]
        srv._to_np()
        jobs.append(j)
        a_parts.append(a)
        s_parts.append(s)
        e_parts.append(e)
        admitted_idx.append(idx)
        cuts.append(cut)
        sizes.append(a.size)
        n = len(srv.cycle)
        nrep.append(n)
        rows_list += srv.cycle[srv.pos :] + srv.cycle[: srv.pos]
    if not jobs:
        return done

    A = np.concatenate(a_parts) if len(a_parts) > 1 else a_parts[0]
    S = np.concatenate(s_parts) if len(s_parts) > 1 else s_parts[0]
    m = A.size
    offsets_l = list(accumulate(sizes, initial=0))
    rowoffs_l = list(accumulate(nrep, initial=0))
    # Per-job integers, then per request in one repeat: replicas, first request, end, first row.
    per_job = np.array([nrep, offsets_l[:-1], offsets_l[1:], rowoffs_l[:-1]])
    sizes_a, n_a, offsets = np.asarray(sizes), per_job[0], per_job[1]
    n_req, off_req, end_req, rowoff_req = per_job.repeat(sizes_a, axis=1)
    rows = np.asarray(rows_list)
    num_rows = rows.size
    g = np.arange(m)
    t = g - off_req
    rowpos = rowoff_req + t % n_req
    # Z = [free time of each row | finish of each request]; pred = where a request's predecessor lives.
    pred = np.where(t >= n_req, num_rows + g - n_req, rowpos)
    z = np.empty(num_rows + m)
    z[:num_rows] = table.free_at[rows]
    x = z[num_rows:]
    np.add(A, S, out=x)
    # A few sweeps over every request first (cheaper per sweep than tracking the changed ones: most busy
    # runs are short), then only the successors of what changed. Both reach the same fixed point.
    work = None
    for _ in range(FULL_SWEEPS):
        new = np.maximum(A, z[pred])
        new += S
        diff = new != x
        if not diff.any():
            break
        np.copyto(x, new)
    else:
        work = np.flatnonzero(diff)
        nxt = work + n_req[work]
        work = nxt[nxt < end_req[work]]
    while work is not None and work.size:
        new = np.maximum(A[work], z[pred[work]])
        new += S[work]
        changed = new != x[work]
        if not changed.any():
            break
        work = work[changed]
        x[work] = new[changed]
        nxt = work + n_req[work]
        work = nxt[nxt < end_req[work]]
    start = np.maximum(A, z[pred])

    # Check: the cap-th previous finish on the replica must be <= the arrival (the replica has room).
    # W = [each row's prior last cap finishes (row-major) | x]: request g's cap-th previous finish on its
    # replica is a prior one while it is among the row's first cap requests of this call, else in x.
    last_prior = table.last[rows]
    W = np.concatenate([last_prior.ravel(), x])
    u = t // n_req
    prev_cap = W[np.where(u >= cap, num_rows * cap + g - cap * n_req, rowpos * cap + u)]
    bad = np.flatnonzero(prev_cap > A)
    accepted = sizes_a.copy()
    if bad.size:
        job_of_bad = offsets.searchsorted(bad, side="right") - 1
        first = np.ones(bad.size, dtype=bool)  # bad is sorted: each job's first bad request
        np.not_equal(job_of_bad[1:], job_of_bad[:-1], out=first[1:])
        first_jobs = job_of_bad[first]
        accepted[first_jobs] = bad[first] - offsets[first_jobs]

    # Commit: new free time and last cap finishes of every row, from the accepted requests.
    per_job[2] = accepted  # reuse the table: accepted, replicas, first request, first row per row
    k_row, n_row, off_row, rowoff_row = per_job[[2, 0, 1, 3]].repeat(n_a, axis=1)
    all_rows = np.arange(num_rows)
    new_last, c_row = _row_state(W, num_rows, cap, all_rows, all_rows - rowoff_row, k_row, n_row, off_row)
    table.free_at[rows] = np.where(c_row > 0, new_last[:, cap - 1], z[:num_rows])
    table.last[rows] = new_last

    E = np.concatenate(e_parts) if len(e_parts) > 1 else e_parts[0]
    for slot, j in enumerate(jobs):
        srv = servers[j]
        k = int(accepted[slot])
        o = int(offsets[slot])
        idx = admitted_idx[slot]
        stop = cuts[slot] if k == sizes[slot] else (int(idx[k]) if idx is not None else k)
        if served is None:
            srv._flush()  # the loop's earlier results (and drops) come first
        if undo is not None:
            undo[j] = (W, num_rows, rows, z, rowoffs_l[slot], nrep[slot], o, srv.pos)
        if k:
            part = (A[o : o + k], start[o : o + k], x[o : o + k], E[o : o + k])
            if served is not None:
                served[j] = part
            else:
                srv._chunks.append(part)
            srv.pos = (srv.pos + k) % nrep[slot]
            srv._room_s = None
        adm = admits[j]
        if adm is not None and stop:
            refused = arrivals[j][:stop][~adm[:stop]]
            if refused.size:
                srv._drop_chunks.append(refused)
        done[j] = stop
    return done


def _row_state(
    W: NDArray[np.float64],
    num_rows: int,
    cap: int,
    row: NDArray[np.int64],
    p_row: NDArray[np.int64],
    k_row: NDArray[np.int64],
    n_row: NDArray[np.int64],
    off_row: NDArray[np.int64],
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Last ``cap`` finishes of rows (replicas) after their job's first ``k_row`` requests of one
    ``serve_fast`` call, and how many of those requests each row got.

    Row ``row`` (``p_row``-th of its job's ``n_row`` replicas in round-robin order, the job's requests from
    ``off_row`` in ``W``'s request part) holds its prior last ``cap`` finishes, then the finishes of
    requests ``p_row``, ``p_row + n_row``, …; the last ``cap`` of that sequence are gathered from ``W``.
    """
    c_row = np.where(k_row > p_row, (k_row - p_row + n_row - 1) // n_row, 0)
    base_row = off_row + p_row
    q = np.arange(cap - 1, -1, -1)[None, :]  # q-th newest lands in column cap-1-q
    c2 = c_row[:, None]
    gather = np.where(
        c2 > q,
        num_rows * cap + base_row[:, None] + (c2 - 1 - q) * n_row[:, None],
        row[:, None] * cap + np.minimum(cap - 1 - q + c2, cap - 1),
    )
    return W[gather], c_row


def rewind_fast(srv: JobServer, undo: tuple, keep: int) -> None:
    """Take back a ``serve_fast`` prefix of ``srv`` after its first ``keep`` requests: the replicas' state
    (free times, last finishes) and the round-robin position become what they were right after them.

    Valid only while nothing else served ``srv`` since that call (the engine rewinds a block of steps
    whose replica set a policy changed before those steps were replayed).
    """
    W, num_rows, rows, z, rowoff, n, off, pos0 = undo
    cap = srv.table.cap
    mine = np.arange(rowoff, rowoff + n)
    new_last, c_row = _row_state(
        W, num_rows, cap, mine, np.arange(n), np.full(n, keep), np.full(n, n), np.full(n, off)
    )
    ids = rows[rowoff : rowoff + n]
    srv.table.free_at[ids] = np.where(c_row > 0, new_last[:, cap - 1], z[rowoff : rowoff + n])
    srv.table.last[ids] = new_last
    srv.pos = (pos0 + keep) % n
    srv._room_s = None
