"""The queue in front of one job's replicas: who serves which request, when, and which are dropped.

Used by the engine (``engine.py``), one ``JobServer`` per job. Requests arrive in time order; the server
keeps its state (replica free times, the central FIFO queue) across calls so the engine can change the
replica set between calls.

Disciplines (``concurrency``):

* ``artifact`` (``concurrency=4``, the default): the Faro artifact's Ray Serve model. A central FIFO queue
  feeds a scheduler that walks the replicas round-robin (in an order reshuffled whenever the replica set
  changes) and hands the head request to the first replica holding fewer than ``concurrency`` requests;
  each replica serves its own requests one at a time, FIFO. So up to ``concurrency − 1`` requests can
  wait behind a busy replica while another replica idles — which is why it is slower than M/G/c.
* ``mgc`` (``concurrency=1``): a central FCFS queue in front of ``c`` identical servers (M/G/c).

A request is dropped when it arrives and ``max_queue`` requests already wait in the central queue, or
when the admission draw says so (Penalty objectives admit only a fraction). Times are in seconds.
"""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np
from numpy.typing import NDArray


class JobServer:
    """One job's replicas and central queue (see module docstring)."""

    def __init__(self, *, concurrency: int, max_queue: int | None, rng: np.random.Generator) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.cap = concurrency
        self.max_queue = max_queue if max_queue is not None else 1 << 62
        self.rng = rng
        self.replicas: list[int] = []  # active replica ids, oldest first (removal takes the newest)
        self.cycle: list[int] = []  # the round-robin order
        self.pos = 0
        self.free_at: list[float] = []  # by replica id
        self.inflight: list[deque[float]] = []  # finish times of the requests a replica holds
        self.pending: list[float] = []  # heap of ready times of starting replicas
        self.queue: deque[tuple[float, float, float]] = deque()  # (arrival_s, service_s, extra_s)
        self.t_sched = 0.0
        self._room_s: float | None = None  # cached _next_room_s(); None = recompute
        # Results of every request handed in, in dispatch order (drops separately).
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
            rid = len(self.free_at)
            self.free_at.append(ready)
            self.inflight.append(deque())
            self.replicas.append(rid)
        self._reshuffle()
        self._room_s = None

    # -- serving -----------------------------------------------------------------------------------

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
        queue = self.queue
        max_queue = self.max_queue
        drops = self.drop_arrival
        arrivals = arrival_s.tolist()
        services = service_s.tolist()
        extras = extra_s.tolist()
        admits = admit.tolist() if admit is not None else None
        inflight, free_at, cap = self.inflight, self.free_at, self.cap
        o_arr, o_start = self.out_arrival.append, self.out_start.append
        o_fin, o_extra = self.out_finish.append, self.out_extra.append
        for i, a in enumerate(arrivals):
            if queue:
                self.drain(a)
            if self.pending and self.pending[0] <= a:
                self._activate(a)
                if queue:
                    self.drain(a)
            if admits is not None and not admits[i]:
                drops.append(a)
                continue
            if queue:
                if len(queue) >= max_queue:
                    drops.append(a)
                else:
                    queue.append((a, services[i], extras[i]))
                continue
            # Inline round-robin walk and dispatch: the common, unsaturated path.
            cycle = self.cycle
            n = len(cycle)
            pos = self.pos
            r = -1
            for _ in range(n):
                c = cycle[pos]
                pos += 1
                if pos == n:
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
                    queue.append((a, services[i], extras[i]))
                continue
            free = free_at[r]
            start = a if a > free else free
            finish = start + services[i]
            free_at[r] = finish
            d.append(finish)
            self._room_s = None
            o_arr(a)
            o_start(start)
            o_fin(finish)
            o_extra(extras[i])

    def take_results(self) -> tuple[NDArray[np.float64], ...]:
        """Arrays (arrival, start, finish, extra, dropped_arrival) handed out since the last call."""
        out = (
            np.asarray(self.out_arrival),
            np.asarray(self.out_start),
            np.asarray(self.out_finish),
            np.asarray(self.out_extra),
            np.asarray(self.drop_arrival),
        )
        self.out_arrival, self.out_start, self.out_finish, self.out_extra, self.drop_arrival = [], [], [], [], []
        return out
