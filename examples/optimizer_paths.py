"""An optimizer race: paths on Beale's function, a saddle point and a long narrow valley.

    python examples/optimizer_paths.py            # PNGs under out/ and a table of steps
    python examples/optimizer_paths.py --steps 500

Each optimizer starts from the same point on each surface, runs a fixed number
of deterministic steps (one jitted ``lax.scan``), and its path is drawn on the
surface's contour plot. The table gives the first step at which the path comes
within ``--tol`` of a minimizer, or "did not", and the distance at the end.

Learning rates are set per surface (the surfaces' gradients differ by orders of
magnitude), each a round value at which that optimizer is stable there; they
are listed in `OPTIMIZERS`. Newton uses ``gx.scale_by_newton`` (Levenberg
damping where the Hessian is not positive definite) with the dense 2x2 Hessian.

With constant learning rates RMSProp and AdaDelta do not settle: near the
minimum their steps stay of the order of the learning rate (RMSProp) or grow
back (AdaDelta), so they circle within about 1e-2 of it; the table's last
distance shows it.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, NamedTuple

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import gradxform as gx  # noqa: E402


class Surface(NamedTuple):
    fn: Callable[[jax.Array], jax.Array]
    start: tuple[float, float]
    minima: tuple[tuple[float, float], ...]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    log_levels: bool
    title: str


def beale(p):
    x, y = p[0], p[1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def saddle(p):
    """A saddle at the origin (curving up along x, down along y) between two minima at (0, +-sqrt 2)."""
    x, y = p[0], p[1]
    return x**2 - y**2 + 0.25 * y**4


def valley(p):
    """A long, narrow valley: curvature 0.02 along x, 2 along y (condition number 100)."""
    x, y = p[0], p[1]
    return 0.01 * x**2 + y**2


SURFACES = {
    "beale": Surface(beale, (1.0, 1.0), ((3.0, 0.5),), (-0.5, 4.0), (-1.25, 2.0), True,
                     "Beale's function, minimum at (3, 0.5)"),
    "saddle": Surface(saddle, (1.0, 1e-3), ((0.0, 2**0.5), (0.0, -(2**0.5))), (-1.5, 1.5), (-0.5, 2.0), False,
                      "saddle at (0, 0), minima at (0, ±√2)"),
    "valley": Surface(valley, (-9.0, 0.8), ((0.0, 0.0),), (-10.0, 1.5), (-1.2, 1.2), False,
                      "long narrow valley 0.01x² + y²"),
}


def newton(lr):
    """Newton's step ``-lr (H + tau I)^{-1} g`` (``tau`` > 0 only where H is not positive definite)."""
    return gx.chain(gx.scale_by_newton(), gx.scale_by_learning_rate(lr))


# name: (factory(learning rate), {surface: learning rate})
OPTIMIZERS = {
    "SGD": (lambda lr: gx.sgd(lr), {"beale": 0.01, "saddle": 0.1, "valley": 0.9}),
    "Momentum": (lambda lr: gx.sgd(lr, momentum=0.9), {"beale": 0.003, "saddle": 0.02, "valley": 0.1}),
    "Nesterov": (lambda lr: gx.sgd(lr, momentum=0.9, nesterov=True), {"beale": 0.003, "saddle": 0.02, "valley": 0.1}),
    "AdaGrad": (lambda lr: gx.adagrad(lr), {"beale": 0.5, "saddle": 0.5, "valley": 1.0}),
    "RMSProp": (lambda lr: gx.rmsprop(lr), {"beale": 0.01, "saddle": 0.01, "valley": 0.01}),
    "Adam": (lambda lr: gx.adam(lr), {"beale": 0.05, "saddle": 0.05, "valley": 0.1}),
    "AdaDelta": (lambda lr: gx.adadelta(lr), {"beale": 1.0, "saddle": 1.0, "valley": 1.0}),
    "Rprop": (lambda lr: gx.rprop(lr), {"beale": 0.01, "saddle": 0.01, "valley": 0.01}),
}


def run_path(fn, start, tx, steps: int, with_hessian: bool) -> np.ndarray:
    """The ``(steps + 1, 2)`` path of `tx` from `start` on `fn`."""

    @jax.jit
    def scan(x0):
        def body(carry, _):
            x, state = carry
            g = jax.grad(fn)(x)
            extra = {"hessian": jax.hessian(fn)(x)} if with_hessian else {}
            updates, state = tx.update(g, state, x, **extra)
            x = gx.apply_updates(x, updates)
            return (x, state), x

        _, xs = jax.lax.scan(body, (x0, tx.init(x0)), None, length=steps)
        return xs

    x0 = jnp.asarray(start, jnp.float32)
    return np.concatenate([np.asarray(x0)[None], np.asarray(scan(x0))])


def distance_to_minima(path: np.ndarray, minima) -> np.ndarray:
    return np.min([np.linalg.norm(path - np.asarray(m), axis=1) for m in minima], axis=0)


def plot_surface(ax, surface: Surface, paths: dict, colors: dict) -> None:
    X, Y = np.meshgrid(np.linspace(*surface.xlim, 300), np.linspace(*surface.ylim, 300))
    Z = np.asarray(surface.fn(jnp.stack([X, Y]).astype(jnp.float32)))  # the surfaces are elementwise in x, y
    if surface.log_levels:
        levels = np.logspace(-1.5, np.log10(max(Z.max(), 1.0)), 25)
        ax.contour(X, Y, Z, levels=levels, norm=matplotlib.colors.LogNorm(), cmap="Greys", linewidths=0.6)
    else:
        ax.contour(X, Y, Z, levels=25, cmap="Greys", linewidths=0.6)
    for label, path in paths.items():
        ax.plot(path[:, 0], path[:, 1], "-", color=colors[label], lw=1.4, label=label, alpha=0.9)
        ax.plot(path[-1, 0], path[-1, 1], "o", color=colors[label], ms=3)
    ax.plot(*surface.start, "ks", ms=6)
    for m in surface.minima:
        ax.plot(*m, "*", color="gold", mec="k", ms=14, zorder=5)
    ax.set_xlim(*surface.xlim)
    ax.set_ylim(*surface.ylim)
    ax.set_title(surface.title, fontsize=10)
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Optimizer paths on Beale's function, a saddle and a long valley.")
    parser.add_argument("--steps", type=int, default=2000, help="steps per optimizer and surface (default 2000)")
    parser.add_argument("--tol", type=float, default=1e-2,
                        help="distance to a minimizer that counts as reached (default 0.01)")
    parser.add_argument("--surface", choices=list(SURFACES) + ["all"], default="all")
    parser.add_argument("--out", default="out", help="directory for the PNGs (default: out/)")
    parser.add_argument("--smoke", action="store_true", help="a 50-step run for CI")
    args = parser.parse_args(argv)
    if args.steps < 1 or not args.tol > 0:
        parser.error(f"--steps must be >= 1 and --tol > 0; got --steps {args.steps} --tol {args.tol}")
    steps = min(args.steps, 50) if args.smoke else args.steps
    surfaces = list(SURFACES) if args.surface == "all" else [args.surface]

    newton_label = "Newton"
    optimizers = dict(OPTIMIZERS)
    optimizers[newton_label] = (newton, {name: 1.0 for name in SURFACES})
    cmap = plt.get_cmap("tab10")
    colors = {label: cmap(i % 10) for i, label in enumerate(optimizers)}
    os.makedirs(args.out, exist_ok=True)

    results = {}
    all_paths = {}
    for sname in surfaces:
        surface = SURFACES[sname]
        paths = {}
        for label, (factory, lrs) in optimizers.items():
            path = run_path(surface.fn, surface.start, factory(lrs[sname]), steps, label == newton_label)
            path = np.where(np.isfinite(path), path, np.nan)
            d = distance_to_minima(path, surface.minima)
            hit = np.nonzero(d < args.tol)[0]
            results[(label, sname)] = (int(hit[0]) if hit.size else None, float(d[-1]), lrs[sname])
            paths[label] = path
        all_paths[sname] = paths
        fig, ax = plt.subplots(figsize=(7.5, 5))
        plot_surface(ax, surface, paths, colors)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
        fig.tight_layout()
        png = os.path.join(args.out, f"optimizer_paths_{sname}.png")
        fig.savefig(png, dpi=100)
        plt.close(fig)
        print(f"wrote {png}")

    if len(surfaces) > 1:
        fig, axes = plt.subplots(1, len(surfaces), figsize=(5.2 * len(surfaces) + 1.5, 4.6))
        for ax, sname in zip(axes, surfaces):
            plot_surface(ax, SURFACES[sname], all_paths[sname], colors)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="center right", fontsize=9)
        fig.tight_layout(rect=(0, 0, 1 - 1.6 / fig.get_figwidth(), 1))
        png = os.path.join(args.out, "optimizer_paths.png")
        fig.savefig(png, dpi=100)
        plt.close(fig)
        print(f"wrote {png}")

    print(f"\nSteps until within {args.tol:g} of a minimizer (of {steps}); in brackets the learning rate "
          "and the distance after the last step.\n")
    print("| optimizer | " + " | ".join(surfaces) + " |")
    print("|---|" + "---|" * len(surfaces))
    for label in optimizers:
        cells = []
        for sname in surfaces:
            hit, final, lr = results[(label, sname)]
            reached = str(hit) if hit is not None else "did not"
            dist = f"{final:.0e}" if np.isfinite(final) else "nan"
            cells.append(f"{reached} (lr {lr:g}, end {dist})")
        print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
