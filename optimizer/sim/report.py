"""Tables and PNG plots of simulation results; called by ``faro simulate`` and ``bench/simulate.py``.

Imports matplotlib lazily (Agg backend) so the pure simulator does not need it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


# Policy groups as the plots colour them: Faro's variants, the per-job baselines, and the Oracle, which is
# given the true future load (not deployable; the lower bound a forecaster could reach).
GROUPS = {
    "faro": ("Faro", "#1f77b4"),
    "baseline": ("baseline autoscalers", "#ff7f0e"),
    "oracle": ("oracle (perfect foresight)", "#2ca02c"),
}


def policy_group(name: str) -> str:
    """``faro``, ``baseline`` or ``oracle`` (knows the future) for a policy name."""
    if name.startswith("oracle"):
        return "oracle"
    return "faro" if name.startswith("faro") else "baseline"


def best_deployable(rows: Mapping[str, Mapping[str, float]]) -> str | None:
    """The policy with the fewest SLO violations among those a cluster could run (not the Oracle); the
    Oracle only when nothing else ran."""
    ok = {k: v for k, v in rows.items() if "error" not in v}
    deployable = {k: v for k, v in ok.items() if policy_group(k) != "oracle"} or ok
    return min(deployable, key=lambda k: deployable[k]["slo_violation"]) if deployable else None


TABLE_LEGEND = """\
violation: SLO violation rate, the share of each job-minute's requests over the SLO (drops count), averaged over
  jobs and minutes; req-viol: share of all requests over the SLO; lost-util: sum over jobs of 1 - min(1, SLO/p99),
  averaged over minutes (0 = every job met its SLO every minute); cpu-min: CPU-minutes held by pods; drops:
  requests turned away (queue full or not admitted); wall-s: seconds the simulation took.
oracle = Faro fed the true future load (perfect foresight: a bound, not deployable)."""


def plot_policies(
    rows: Mapping[str, Mapping[str, float]], path: Path, *, title: str = "", jobs: int | None = None
) -> None:
    """Two horizontal bar charts, policies sorted best first and coloured by group, each bar labelled with its
    value: the SLO violation rate (% of job-minutes) and the lost utility (out of one per job)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    ok = {k: v for k, v in rows.items() if "error" not in v}
    names = sorted(ok, key=lambda k: ok[k]["slo_violation"])
    labels = [f"{n} (perfect foresight)" if policy_group(n) == "oracle" else n for n in names]
    colours = [GROUPS[policy_group(n)][1] for n in names]
    y = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.45 * len(names) + 2.2), sharey=True)
    panels = [
        ([100 * ok[n]["slo_violation"] for n in names],
         "SLO violation rate (%): share of each job-minute's requests over the SLO", lambda v: f"{v:.2f}%"),
        ([ok[n]["lost_utility"] for n in names],
         "lost utility" + (f" (of {jobs}: one per job, 0 = all met)" if jobs else " (0 = every job met its SLO)"),
         lambda v: f"{v:.3f}"),
    ]
    for ax, (values, xlabel, fmt) in zip(axes, panels, strict=True):
        bars = ax.barh(y, values, color=colours, height=0.7)
        for bar, name in zip(bars, names, strict=True):
            if policy_group(name) == "oracle":
                bar.set_hatch("//")
                bar.set_edgecolor("white")
        top = max(values) if values else 1.0
        for yi, v in zip(y, values, strict=True):
            ax.text(v + 0.01 * top, yi, fmt(v), va="center", fontsize=9)
        ax.set_xlim(0, 1.18 * top if top > 0 else 1)
        ax.set_xlabel(xlabel, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[0].set_yticks(y, labels, fontsize=10)
    axes[0].invert_yaxis()  # best at the top
    shown = [g for g in GROUPS if any(policy_group(n) == g for n in names)]
    fig.legend(handles=[Patch(color=GROUPS[g][1], hatch="//" if g == "oracle" else None, label=GROUPS[g][0])
                        for g in shown], loc="upper right", ncol=len(shown), fontsize=10, frameon=False)
    fig.suptitle(f"{title} - lower is better" if title else "lower is better", x=0.01, ha="left", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
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


DROP_MS = 1e7  # a per-minute tail latency above ~3 h can only come from dropped requests


def _ms_axis(ax: Any) -> None:
    """A log latency axis with plain millisecond ticks (100, 200, 500, 1000 …), not 10^3."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def plot_timeline(result: SimResult, path: Path, *, max_jobs: int = 12) -> None:
    """Per job (one row each): the offered load, the replicas the policy asked for (target) and those serving
    (ready), and the per-minute tail latency against the SLO. With more than ``max_jobs`` jobs, the
    ``max_jobs`` with the most SLO violations (a 100-row figure helps nobody)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    stats = job_minute_stats(result)
    shown = timeline_jobs(stats.satisfaction, max_jobs)
    n = len(shown)
    cfg = result.config
    pct = f"p{cfg.slo_percentile:g}"
    fig, axes = plt.subplots(n, 3, figsize=(16, 1.9 * n + 1.6), sharex=True, squeeze=False,
                             gridspec_kw={"width_ratios": (1, 1, 1.2)})
    minutes = result.step_time_s / 60.0
    load_x = np.arange(result.arrivals_rpm.shape[1])
    for row, j in enumerate(shown):
        ax_load, ax_rep, ax_lat = axes[row]
        ax_load.fill_between(load_x, result.arrivals_rpm[j], step="post", color="0.6", alpha=0.6, lw=0)
        ax_load.set_ylim(bottom=0)
        served = np.isfinite(stats.satisfaction[j])
        violation = float(np.mean(1.0 - stats.satisfaction[j][served])) if served.any() else 0.0
        ax_load.set_ylabel(f"{result.job_names[j]}\n{100 * violation:.1f}% viol.", rotation=0, ha="right",
                           va="center", fontsize=10)
        # target under ready, wider and in another colour: where they agree both show, where ready lags it shows
        ax_rep.step(minutes, result.target_replicas[:, j], where="post", color="tab:orange", lw=2.6)
        ax_rep.step(minutes, result.ready_replicas[:, j], where="post", color="tab:blue", lw=1.1)
        ax_rep.set_ylim(bottom=0)
        ax_rep.yaxis.get_major_locator().set_params(integer=True)
        # a tail interpolated towards a dropped request (latency = the largest float) is a drop, not a number
        tail = np.where(stats.tail_latency_ms[j] > DROP_MS, np.inf, stats.tail_latency_ms[j])
        finite = np.where(np.isfinite(tail), tail, np.nan)
        ax_lat.plot(np.arange(tail.size), finite, lw=0.9, color="tab:purple")
        _ms_axis(ax_lat)
        low = float(np.nanmin(finite)) if np.isfinite(finite).any() else cfg.slo_ms / 2
        high = max(float(np.nanmax(finite)) if np.isfinite(finite).any() else cfg.slo_ms, 2 * cfg.slo_ms)
        ax_lat.set_ylim(min(low, cfg.slo_ms) / 1.5, high * 1.5)
        dropped = np.flatnonzero(np.isinf(tail))  # a minute whose tail is a drop (infinite latency)
        if dropped.size:
            ax_lat.plot(dropped, np.full(dropped.size, high * 1.3), "v", color="tab:red", ms=4)
        ax_lat.axhline(cfg.slo_ms, color="tab:red", lw=1.0, ls="--")
        ax_lat.text(1.0, cfg.slo_ms, f" SLO {cfg.slo_ms:g}", transform=ax_lat.get_yaxis_transform(), va="center",
                    ha="left", fontsize=8, color="tab:red")
        for ax in (ax_load, ax_rep, ax_lat):
            ax.grid(alpha=0.25)
            ax.tick_params(labelsize=8)
    axes[0][0].set_title("load (requests/min)", fontsize=11)
    axes[0][1].set_title("replicas", fontsize=11)
    axes[0][2].set_title(f"{pct} latency per minute (ms, log scale)", fontsize=11)
    for ax in axes[-1]:
        ax.set_xlabel("minute", fontsize=10)
    handles = [
        Line2D([], [], color="tab:orange", lw=2.6, label="target replicas (what the policy asked for)"),
        Line2D([], [], color="tab:blue", lw=1.1, label="ready replicas (serving)"),
        Line2D([], [], color="tab:purple", lw=1.0, label=f"{pct} latency"),
        Line2D([], [], color="tab:red", lw=1.0, ls="--", label=f"SLO {pct} <= {cfg.slo_ms:g} ms"),
        Line2D([], [], color="tab:red", marker="v", ls="", label="minute with dropped requests"),
    ]
    fig.legend(handles=handles, loc="upper center", ncol=5, fontsize=10, frameon=False, bbox_to_anchor=(0.5, 0.995))
    worst = f"; the {n} of {len(result.job_names)} jobs with the most violations" if n < len(result.job_names) else ""
    fig.suptitle(f"policy {result.policy}, {cfg.cpus:g} CPUs{worst} (viol. = mean share of a minute's requests "
                 "over the SLO)", y=0.995 - 0.35 / (1.9 * n + 1.6), fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.75 / (1.9 * n + 1.6)))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_capacity(trials: Mapping[int, float], path: Path, *, policy: str, target: float, chosen: int) -> None:
    """SLO violation rate against the CPU cap for every cap the capacity search tried (log scale; a cap
    without violations sits on the floor, labelled 0%), the target drawn and the smallest cap meeting it
    marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    cpus = sorted(trials)
    values = np.array([100 * trials[c] for c in cpus])
    positive = values[values > 0]
    floor = min(float(positive.min()) if positive.size else 100 * target, 100 * target) / 3
    shown = np.maximum(values, floor)
    fig, ax = plt.subplots(figsize=(9, 4.8))
    ax.plot(cpus, shown, "o-", color="tab:blue", label=f"{policy}: SLO violations")
    for k, (c, v, y) in enumerate(zip(cpus, values, shown, strict=True)):
        # alternate above-right and below-left: neighbouring caps of a bisection are often 1 CPU apart
        ax.annotate(f"{v:.2f}%" if v > 0 else "0%", (c, y), textcoords="offset points",
                    xytext=(5, 6) if k % 2 == 0 else (-5, -13), ha="left" if k % 2 == 0 else "right", fontsize=8)
    ax.axhline(100 * target, color="tab:red", ls="--", lw=1, label=f"target {100 * target:g}%")
    ax.axvline(chosen, color="tab:green", lw=1.5, label=f"smallest cap meeting it: {chosen} CPUs")
    ax.set_yscale("log")
    ax.set_ylim(floor / 1.5, max(float(shown.max()), 100 * target) * 2)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
    ax.set_xlabel("cluster CPU cap (CPUs)")
    ax.set_ylabel("SLO violation rate (%, log scale)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper right")
    ax.set_title(f"capacity search for {policy}: {len(cpus)} simulated caps")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
