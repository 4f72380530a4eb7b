"""Tables and PNG plots of simulation results; called by ``faro simulate`` and ``bench/simulate.py``.

Imports matplotlib lazily (Agg backend) so the pure simulator does not need it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from faro.optimizer.sim.engine import SimResult
from faro.optimizer.sim.metrics import job_minute_stats
from numpy.typing import NDArray


def table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """A fixed-width table sorted by SLO violation rate."""
    head = f"{'policy':<22}{'violation':>10}{'req-viol':>10}{'lost-util':>10}{'cpu-min':>10}{'drops':>9}{'wall-s':>8}"
    lines = [head, "-" * len(head)]
    for name, r in sorted(rows.items(), key=lambda kv: kv[1].get("slo_violation", np.inf)):
        if "error" in r:
            lines.append(f"{name:<22}  failed: {r['error']}")
            continue
        lines.append(
            f"{name:<22}{100 * r['slo_violation']:>9.2f}%{100 * r['request_slo_violation']:>9.2f}%"
            f"{r['lost_utility']:>10.3f}{r['cpu_minutes']:>10.0f}{int(r['dropped']):>9d}{r.get('wall_s', 0.0):>8.1f}"
        )
    return "\n".join(lines)


def plot_policies(rows: Mapping[str, Mapping[str, float]], path: Path, *, title: str = "") -> None:
    """Bars of SLO violation rate and lost utility per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = {k: v for k, v in rows.items() if "error" not in v}
    names = sorted(ok, key=lambda k: ok[k]["slo_violation"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    axes[0].bar(names, [100 * ok[n]["slo_violation"] for n in names], color="tab:red")
    axes[0].set_ylabel("SLO violation rate (%)")
    axes[1].bar(names, [ok[n]["lost_utility"] for n in names], color="tab:blue")
    axes[1].set_ylabel("lost cluster utility")
    for ax in axes:
        ax.tick_params(axis="x", rotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def timeline_jobs(satisfaction: NDArray[np.float64], max_jobs: int) -> list[int]:
    """Indices of the jobs a timeline shows: all, or the ``max_jobs`` with the highest mean violation
    (``satisfaction`` is [job, minute], NaN = no request), in job order."""
    n = satisfaction.shape[0]
    if n <= max_jobs:
        return list(range(n))
    served = np.isfinite(satisfaction)
    minutes = np.maximum(served.sum(axis=1), 1)
    violation = np.where(served, 1.0 - satisfaction, 0.0).sum(axis=1) / minutes  # a job without requests: 0
    return sorted(np.argsort(-violation, kind="stable")[:max_jobs].tolist())


def plot_timeline(result: SimResult, path: Path, *, max_jobs: int = 12) -> None:
    """Replicas (target and ready) and p-tail latency per minute, one row per job; with more than
    ``max_jobs`` jobs, the ``max_jobs`` with the most SLO violations (a 100-row figure helps nobody)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = job_minute_stats(result)
    shown = timeline_jobs(stats.satisfaction, max_jobs)
    n = len(shown)
    fig, axes = plt.subplots(n, 2, figsize=(13, max(3, 1.6 * n)), sharex=True, squeeze=False)
    minutes = result.step_time_s / 60.0
    for row, j in enumerate(shown):
        name = result.job_names[j]
        ax_r, ax_l = axes[row]
        ax_r.step(minutes, result.target_replicas[:, j], where="post", label="target", lw=0.8)
        ax_r.step(minutes, result.ready_replicas[:, j], where="post", label="ready", lw=0.8)
        ax_r.set_ylabel(name, rotation=0, ha="right")
        tail = np.where(np.isfinite(stats.tail_latency_ms[j]), stats.tail_latency_ms[j], np.nan)
        ax_l.plot(np.arange(tail.size), tail, lw=0.8, color="tab:purple")
        ax_l.axhline(result.config.slo_ms, color="tab:red", lw=0.8, ls="--")
        ax_l.set_yscale("log")
    axes[0][0].set_title("replicas (target, ready)")
    axes[0][0].legend(loc="upper right", fontsize=7)
    axes[0][1].set_title(f"p{result.config.slo_percentile:g} latency per minute (ms), SLO dashed")
    axes[-1][0].set_xlabel("minute")
    axes[-1][1].set_xlabel("minute")
    worst = f", the {n} of {len(result.job_names)} jobs with the most violations" if n < len(result.job_names) else ""
    fig.suptitle(f"policy {result.policy}{worst}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
