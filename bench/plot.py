"""Plots latency percentiles per implementation from run.py's JSON.

    python plot.py RESULTS.json latency.png

One panel per latency scenario (1: ping-pong, 2: saturation), x the
percentile on a log scale of 1/(1-q), y the latency in µs (log).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PANELS = [("s1", "1. Unary ping-pong (1 conn, 1 in flight)"),
          ("s2", "2. Unary saturation (10 conns × 10 streams, 1 core)")]


def main():
    data = json.load(open(sys.argv[1]))
    panels = [(k, t) for k, t in PANELS if k in data]
    if not panels:
        print("no latency scenario in the results; no plot")
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        for name, r in data[key].items():
            pts = r.get("percentiles_us")
            if not pts or r.get("failed"):
                continue
            qs = [q for q, _ in pts if q < 1.0]
            xs = [1 / (1 - q) for q in qs]
            ys = [v for q, v in pts if q < 1.0]
            style = dict(linewidth=2.5) if name == "ours" else dict(linewidth=1.2)
            ax.plot(xs, ys, marker="o", markersize=3, label=name, **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = [2, 10, 100, 1000, 10000]
        ax.set_xticks(ticks)
        ax.set_xticklabels(["p50", "p90", "p99", "p99.9", "p99.99"])
        ax.set_ylabel("latency (µs)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("grpc-core benchmarks: latency percentiles per implementation (lower is better)")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)
    print(f"wrote {sys.argv[2]}")


if __name__ == "__main__":
    main()
