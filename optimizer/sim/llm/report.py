"""Tables and PNG plots of LLM simulation results; called by ``faro simulate --workload llm`` and
``bench/llm.py``. Imports matplotlib lazily (Agg backend) so the pure simulator does not need it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from faro.optimizer.sim.llm.cluster import LLMSimResult
from faro.optimizer.sim.llm.metrics import LLMMinuteStats, minute_stats

LLM_TABLE_LEGEND = """\
violation: share of each model-minute's requests that missed their TTFT or TPOT SLO (or failed), averaged over
  models and minutes; req-viol: the same over all requests; ttft-viol / tpot-viol: one SLO alone; lost-util: sum
  over models of 1 - min(1, SLO/p99) for TTFT and ITL, averaged over minutes; gpu-min: GPU-minutes held by pods;
  failed: requests refused, dropped by a draining pod or unfinished; wall-s: seconds the simulation took.
oracle = Faro fed the true future load (perfect foresight: a bound, not deployable)."""


def llm_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """A fixed-width table of LLM runs sorted by SLO violation rate."""
    head = (f"{'policy':<22}{'violation':>10}{'req-viol':>10}{'ttft-viol':>10}{'tpot-viol':>10}{'lost-util':>10}"
            f"{'gpu-min':>9}{'failed':>8}{'wall-s':>8}")
    lines = [head, "-" * len(head)]
    for name, r in sorted(rows.items(), key=lambda kv: kv[1].get("slo_violation", np.inf)):
        if "error" in r:
            lines.append(f"{name:<22}  failed: {r['error']}")
            continue
        lines.append(
            f"{name:<22}{100 * r['slo_violation']:>9.2f}%{100 * r['request_slo_violation']:>9.2f}%"
            f"{100 * r['ttft_violation']:>9.2f}%{100 * r['itl_violation']:>9.2f}%{r['lost_utility']:>10.3f}"
            f"{r['gpu_minutes']:>9.0f}{int(r['failed']):>8d}{r.get('wall_s', 0.0):>8.1f}"
        )
    return "\n".join(lines)


def per_model(result: LLMSimResult, stats: LLMMinuteStats | None = None) -> dict[str, dict[str, float]]:
    """Per model: SLO violation (mean over its minutes), GPUs held on average, requests."""
    s = stats or minute_stats(result)
    gpus = np.array([sp.resources.get("nvidia.com/gpu", 0.0) for sp in result.specs])
    within = (result.tick_time_s >= result.warmup_s) & (result.tick_time_s < result.duration_s)
    out = {}
    for j, name in enumerate(result.job_names):
        has = s.arrived[j] > 0
        sat = s.satisfied[j][has] / s.arrived[j][has]
        out[name] = {
            "slo_violation": float(1.0 - sat.mean()) if has.any() else 0.0,
            "mean_gpus": float((result.pods[within, j] * gpus[j]).mean()) if within.any() else 0.0,
            "requests": int(s.arrived[j].sum()),
        }
    return out


def _ms(ax: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.grid(alpha=0.3, which="both")


def plot_llm_timeline(result: LLMSimResult, path: Path) -> None:
    """One row per model: GPUs asked for and ready with the load; TTFT p99 per minute; TPOT p99 and
    token ITL p99 per minute; SLOs dashed. A last row stacks every model's GPUs against the cap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = minute_stats(result)
    n = len(result.job_names)
    fig, axes = plt.subplots(n + 1, 3, figsize=(16, 2.3 * (n + 1) + 0.8), squeeze=False)
    # x: minutes of the scored hour; the warm-up before it shows at negative minutes, shaded
    w = result.warmup_s / 60.0
    t_min = result.tick_time_s / 60.0 - w
    minutes = np.arange(s.arrived.shape[1]) + 0.5
    gpus = np.array([sp.resources.get("nvidia.com/gpu", 0.0) for sp in result.specs])
    for j, name in enumerate(result.job_names):
        slo = result.specs[j].llm.slo  # type: ignore[union-attr]
        ax_g, ax_t, ax_i = axes[j]
        ax_g.step(t_min, result.target_replicas[:, j] * gpus[j], where="post", color="tab:blue", lw=1.0,
                  label="GPUs asked for")
        ax_g.step(t_min, result.ready_replicas[:, j] * gpus[j], where="post", color="tab:green", lw=1.0,
                  label="GPUs ready")
        ax_g.set_ylabel(f"{name}\nGPUs", fontsize=9)
        # asks far beyond the cap (queue-driven baselines) would flatten what is ready: clip at the cap
        asked, ready = result.target_replicas[:, j] * gpus[j], result.ready_replicas[:, j] * gpus[j]
        top = max(float(ready.max(initial=0)), min(float(asked.max(initial=0)), result.config.gpus), gpus[j])
        ax_g.set_ylim(0, 1.12 * top)
        if asked.max(initial=0) > 1.12 * top:
            ax_g.text(0.99, 0.97, f"asked up to {asked.max():g}", transform=ax_g.transAxes, ha="right", va="top",
                      fontsize=7, color="tab:blue")
        ax_load = ax_g.twinx()
        load = result.arrivals_rpm[j]
        ax_load.fill_between(np.arange(load.size + 1) - w, np.append(load, load[-1:]), step="post", color="grey",
                             alpha=0.18, lw=0)
        ax_load.set_ylabel("req/min", fontsize=8, color="grey")
        ax_load.tick_params(axis="y", labelsize=7, colors="grey")
        ax_load.set_ylim(bottom=0)
        ax_g.set_zorder(ax_load.get_zorder() + 1)
        ax_g.patch.set_visible(False)
        ttft = np.where(np.isfinite(s.ttft_tail_ms[j]), s.ttft_tail_ms[j], np.nan)
        ax_t.plot(minutes, ttft, color="tab:purple", lw=1.0, marker=".", ms=3, label="TTFT p99")
        failed = ~np.isfinite(s.ttft_tail_ms[j]) & (s.arrived[j] > 0)
        if failed.any():
            top = np.nanmax(ttft) if np.isfinite(ttft).any() else 1e4
            ax_t.scatter(minutes[failed], np.full(failed.sum(), top), marker="x", color="red", s=14,
                         label="p99 unserved")
        if slo.ttft_ms is not None:
            ax_t.axhline(slo.ttft_ms, color="red", ls="--", lw=0.8, label=f"SLO {slo.ttft_ms:g} ms")
        _ms(ax_t)
        tpot = np.where(np.isfinite(s.tpot_tail_ms[j]), s.tpot_tail_ms[j], np.nan)
        ax_i.plot(minutes, tpot, color="tab:orange", lw=1.0, marker=".", ms=3, label="TPOT p99 (per request)")
        ax_i.plot(minutes, s.itl_tail_ms[j], color="tab:brown", lw=0.8, alpha=0.7, label="ITL p99 (per token)")
        if slo.itl_ms is not None:
            ax_i.axhline(slo.itl_ms, color="red", ls="--", lw=0.8, label=f"SLO {slo.itl_ms:g} ms")
        _ms(ax_i)
        if j == 0:
            ax_g.set_title("GPUs per model (load shaded)", fontsize=10)
            ax_t.set_title("time to first token, p99 per minute (ms)", fontsize=10)
            ax_i.set_title("inter-token latency, p99 per minute (ms)", fontsize=10)
            for ax in (ax_g, ax_t, ax_i):
                ax.legend(fontsize=7, loc="upper left")
    ax_s = axes[n][0]
    stacked = result.pods * gpus[None, :]
    ax_s.stackplot(t_min, stacked.T, labels=result.job_names, step="post", alpha=0.8)
    ax_s.axhline(result.config.gpus, color="black", ls="--", lw=0.8, label=f"cap {result.config.gpus:g}")
    ax_s.set_ylabel("GPUs held\n(all pods)", fontsize=9)
    ax_s.legend(fontsize=7, loc="lower left", ncol=2)
    ax_s.set_xlabel("minute")
    ax_v = axes[n][1]
    for j, name in enumerate(result.job_names):
        ax_v.plot(minutes, 100 * (1 - s.satisfaction[j]), lw=0.9, label=name)
    ax_v.set_ylabel("violations (%)", fontsize=9)
    ax_v.set_title("requests missing an SLO, per minute", fontsize=10)
    ax_v.legend(fontsize=7)
    ax_v.grid(alpha=0.3)
    ax_v.set_xlabel("minute")
    ax_k = axes[n][2]
    for j, name in enumerate(result.job_names):
        ax_k.plot(minutes, s.tokens_per_s[j], lw=0.9, label=name)
    ax_k.set_ylabel("output tokens/s", fontsize=9)
    ax_k.set_title("throughput", fontsize=10)
    ax_k.grid(alpha=0.3)
    ax_k.set_xlabel("minute")
    end = (result.duration_s - result.warmup_s) / 60.0
    for ax in axes.ravel():
        ax.tick_params(labelsize=8)
        ax.set_xlim(-w, end)
        if w > 0:
            ax.axvspan(-w, 0, color="khaki", alpha=0.25, lw=0)
    warm = f" (the first {w:g} minutes, shaded, are a warm-up left out of the scores)" if w > 0 else ""
    fig.suptitle(f"policy {result.policy}, {result.config.gpus:g} GPUs{warm}", x=0.01, ha="left", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=90)
    plt.close(fig)
