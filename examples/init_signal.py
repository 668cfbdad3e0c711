"""The initialization experiment: a signal through 100 layers of 512 x 512 weights.

    python examples/init_signal.py      # a table of the std per layer next to a reference run's, and a PNG

For each initializer, ``a <- act(a @ W_l)`` for l = 1..100 with a fresh
``W_l`` of shape (512, 512) per layer: the growth or decay of the activations'
variance with depth that Glorot & Bengio (2010) and He et al. (2015) analyse
(Goodfellow et al., 2016, Section 8.4). A (512, 512) input for the first two
rows, a (512,) input for the others, float32 throughout (so N(0, 1) overflows
to inf/nan). Every weight comes from a `gx.nn` initializer. The table prints
the standard deviation of ``a`` after a few layers with, in brackets, the value
a reference PyTorch run of the same experiment printed (different random
numbers, so expect the same size, not the same digits).
"""

from __future__ import annotations

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import gradxform as gx  # noqa: E402

identity = lambda x: x  # noqa: E731

# label: (initializer, activation, input is a (512, 512) matrix rather than a (512,) vector)
EXPERIMENTS = {
    "N(0,1)": (gx.nn.normal(1.0), identity, True),
    "0.01 * N(0,1)": (gx.nn.normal(0.01), identity, True),
    "U(-1,1)": (gx.nn.uniform(1.0), identity, False),
    "Xavier normal": (gx.nn.xavier_normal(), identity, False),
    "Xavier uniform": (gx.nn.xavier_uniform(), identity, False),
    "Xavier normal + ReLU": (gx.nn.xavier_normal(), jax.nn.relu, False),
    "Kaiming uniform + ReLU": (gx.nn.kaiming_uniform(), jax.nn.relu, False),
    "Kaiming normal + ReLU": (gx.nn.kaiming_normal(), jax.nn.relu, False),
}

# The standard deviations a reference PyTorch run of the same experiment (float32, the
# same inputs and initializers) printed after layers 1, 5, 10 and 19.
REFERENCE_STD = {
    "N(0,1)": {1: 22.652037, 5: 5980599.0, 10: 3.6095647547392e13, 19: 5.5994814934584238e25},
    "0.01 * N(0,1)": {1: 0.226504, 5: 0.000589, 10: 0.0, 19: 0.0},
    "U(-1,1)": {1: 11.693220, 5: 334509.031250, 10: 126828232704.0, 19: 1.692300462003431931904e21},
    "Xavier normal": {1: 0.951901, 5: 0.908854, 10: 0.847287, 19: 0.882660},
    "Xavier uniform": {1: 0.944218, 5: 1.018810, 10: 1.030944, 19: 0.972662},
    "Xavier normal + ReLU": {1: 0.603390, 5: 0.149000, 10: 0.024214, 19: 0.001245},
    "Kaiming uniform + ReLU": {1: 0.858193, 5: 0.842151, 10: 0.877963, 19: 0.774003},
    "Kaiming normal + ReLU": {1: 0.807100, 5: 0.855162, 10: 0.805401, 19: 1.030282},
}


@jax.jit
def _mean_std(a):
    """Mean and std of `a`; the std of a / max|a|, rescaled, since the squares of a ~1e20 signal
    would overflow float32 long before the signal itself does (PyTorch's std is overflow-safe too)."""
    scale = jnp.max(jnp.abs(a))
    safe = jnp.where(scale > 0, scale, jnp.ones_like(scale))
    return jnp.mean(a), safe * jnp.std(a / safe)


def signal_stats(key, init, act, matrix_input: bool, depth: int, width: int):
    """``(means, stds)``, each of shape ``(depth,)``: the statistics of ``a`` after each layer.

    A plain Python loop: each operation is compiled once and
    reused, which is quicker here than compiling a ``lax.scan`` per initializer.
    """
    in_key, layers_key = jax.random.split(key)
    a = jax.random.normal(in_key, (width, width) if matrix_input else (width,), jnp.float32)
    stats = []
    for k in jax.random.split(layers_key, depth):
        a = act(a @ init(k, (width, width), jnp.float32))
        stats.append(_mean_std(a))
    means, stds = (np.asarray(jax.device_get(v)) for v in zip(*stats))
    return means, stds


def _fmt(v: float) -> str:
    if not np.isfinite(v):
        return "nan" if np.isnan(v) else "inf"
    return f"{v:.3g}" if v != 0 else "0"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Standard deviation of a signal through 100 layers per initializer.")
    parser.add_argument("--depth", type=int, default=100, help="number of layers (default 100)")
    parser.add_argument("--width", type=int, default=512, help="units per layer (default 512)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="out", help="directory for the PNG (default: out/)")
    parser.add_argument("--smoke", action="store_true", help="20 layers of 64 units, for CI")
    args = parser.parse_args(argv)
    if args.depth < 1 or args.width < 1:
        parser.error(f"--depth and --width must be >= 1; got {args.depth} and {args.width}")
    depth, width = (min(args.depth, 20), min(args.width, 64)) if args.smoke else (args.depth, args.width)

    key = jax.random.key(args.seed)
    stds = {}
    for i, (label, (init, act, matrix_input)) in enumerate(EXPERIMENTS.items()):
        _, stds[label] = signal_stats(jax.random.fold_in(key, i), init, act, matrix_input, depth, width)

    shown = [layer for layer in (1, 2, 5, 10, 19, 50, 100) if layer <= depth]
    print(f"std of the signal after layer l ({depth} layers of {width} x {width}); "
          "in brackets what a reference PyTorch run printed\n")
    print("| initializer | " + " | ".join(f"l={layer}" for layer in shown) + " | first inf/nan |")
    print("|---|" + "---|" * (len(shown) + 1))
    for label, s in stds.items():
        cells = []
        for layer in shown:
            cell = _fmt(float(s[layer - 1]))
            if layer in REFERENCE_STD[label] and width == 512:
                reference = REFERENCE_STD[label][layer]
                cell += f" ({_fmt(reference) if reference else '0.000000'})"
            cells.append(cell)
        bad = np.nonzero(~np.isfinite(s))[0]
        cells.append(f"layer {bad[0] + 1}" if bad.size else "none")
        print(f"| {label} | " + " | ".join(cells) + " |")

    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [1.25, 1]})
    layers = np.arange(1, depth + 1)
    colors = dict(zip(stds, plt.get_cmap("tab10").colors))
    for label, s in stds.items():
        s = np.where(np.isfinite(s) & (s > 0), s, np.nan)  # a line ends where the signal over/underflows
        ls = "--" if "Xavier" in label and "ReLU" not in label else "-"
        ax.plot(layers, s, ls, lw=1.6, color=colors[label], label=label)
        if "Xavier" in label or "Kaiming" in label:
            zoom.plot(layers, s, ls, lw=1.4, color=colors[label], label=label)
    ax.axhline(1.0, color="k", lw=0.6)
    ax.set_yscale("log")
    ax.set_ylim(1e-40, 1e40)
    ax.set_ylabel("std of the activations (log scale)")
    ax.set_title("every initializer", fontsize=10)
    ax.legend(fontsize=7.5, loc="upper right", ncol=2)
    zoom.set_ylim(0, 1.5)
    zoom.set_ylabel("std of the activations")
    zoom.set_title("Xavier and Kaiming, linear scale", fontsize=10)
    for a in (ax, zoom):
        a.set_xlim(0, depth + 1)
        a.set_xlabel("layer")
        a.grid(alpha=0.3)
    fig.suptitle(f"A signal through {depth} layers of {width} x {width} weights", fontsize=11)
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    png = os.path.join(args.out, "init_signal.png")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    print(f"\nwrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
