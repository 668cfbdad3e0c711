"""Train an MLP on scikit-learn's handwritten digits with a gradxform optimizer.

    python examples/train_digits.py                      # README's chain, ~98% test accuracy
    python examples/train_digits.py --optimizer nesterov  # any optimizer gradxform has
    python examples/train_digits.py --optimizer all       # every one, and a results table

The model is ``64 -> 256 -> 256 -> 10`` with Kaiming-normal weights, batch norm
and dropout, trained on label-smoothed targets (`gx.nn.smooth_labels`); one
epoch is one jitted ``lax.scan`` over shuffled mini-batches.
A validation split drives `gx.training.early_stopping`; the best parameters
(and their batch-norm statistics) are restored and scored once on the test
split. The learning curves are saved as a PNG under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _digits  # noqa: E402

import gradxform as gx  # noqa: E402

BATCH_SIZE = 64
WEIGHT_DECAY = 1e-2  # decoupled (multiplied by the learning rate), weights only


# name: (peak learning rate, factory(learning rate or schedule), description). The learning rate
# follows the same warm-up cosine schedule for every optimizer but rprop (whose learning_rate is
# only the initial step size, a float).
OPTIMIZERS = {
    "chain": (3e-3, None, "README's chain: clip_by_global_norm, scale_by_adam, "
                          "add_decayed_weights, scale_by_schedule(warm-up cosine)"),
    "sgd": (0.1, lambda lr: gx.sgd(lr), "plain SGD"),
    "momentum": (0.03, lambda lr: gx.sgd(lr, momentum=0.9), "SGD, heavy-ball momentum 0.9"),
    "nesterov": (0.03, lambda lr: gx.sgd(lr, momentum=0.9, nesterov=True), "SGD, Nesterov momentum 0.9"),
    "adagrad": (0.03, lambda lr: gx.adagrad(lr), "AdaGrad"),
    "rmsprop": (1e-3, lambda lr: gx.rmsprop(lr), "RMSProp"),
    "adam": (3e-3, lambda lr: gx.adam(lr), "Adam"),
    "nadam": (3e-3, lambda lr: gx.adam(lr, nesterov=True), "Adam with Nesterov momentum (NAdam)"),
    "adamw": (3e-3, lambda lr: gx.adamw(lr, weight_decay=WEIGHT_DECAY, mask=_digits.decay_mask), "AdamW"),
    "adabelief": (3e-3, lambda lr: gx.adabelief(lr), "AdaBelief"),
    "adadelta": (1.0, lambda lr: gx.adadelta(lr), "AdaDelta (Zeiler's rule, learning rate 1 at the peak)"),
    "rprop": (1e-3, lambda lr: gx.rprop(lr, max_step_size=0.1),
              "iRprop-, full batch (one step per epoch; lr is the initial step size)"),
    "adahessian": (0.15, lambda lr: gx.adahessian(lr), "AdaHessian (Hutchinson diagonal, one probe per step)"),
}


def build_optimizer(name: str, peak_lr: float, total_steps: int) -> gx.GradientTransformation:
    warmup = min(3 * max(total_steps // 100, 1), total_steps // 5)
    if name == "chain":
        return _digits.readme_chain(peak_lr, total_steps, warmup, WEIGHT_DECAY)
    factory = OPTIMIZERS[name][1]
    if name == "rprop":
        return factory(peak_lr)
    return factory(gx.warmup_cosine_decay_schedule(0.0, peak_lr, warmup, total_steps, end_value=0.01 * peak_lr))


def make_epoch(tx, x_train, y_train, batch_size, dropout_rate, needs_hessian_diag):
    """A jitted function running one shuffled epoch as a ``lax.scan`` of optimizer steps."""
    n = x_train.shape[0]
    steps = n // batch_size

    def step(carry, batch_ids):
        params, bn_state, opt_state, key = carry
        key, step_key, probe_key = jax.random.split(key, 3)
        xb, yb = x_train[batch_ids], y_train[batch_ids]

        def loss_fn(p):
            logits, new_bn = _digits.apply_mlp(p, bn_state, xb, training=True, key=step_key,
                                               example_ids=batch_ids, dropout_rate=dropout_rate)
            return _digits.smoothed_cross_entropy(logits, yb), (new_bn, logits)

        (loss, (new_bn, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        extra = {}
        if needs_hessian_diag:  # AdaHessian: Hutchinson's estimate of diag(H), one Rademacher probe
            extra["hessian_diag"] = gx.second_order.hutchinson_diagonal(lambda p: loss_fn(p)[0], params, probe_key)
        updates, opt_state = tx.update(grads, opt_state, params, **extra)
        params = gx.apply_updates(params, updates)
        del loss  # the smoothed objective; report the plain cross-entropy, comparable with validation
        return (params, new_bn, opt_state, key), (_digits.cross_entropy(logits, yb), _digits.accuracy(logits, yb))

    @jax.jit
    def epoch(params, bn_state, opt_state, key):
        key, perm_key = jax.random.split(key)
        order = jax.random.permutation(perm_key, n)[: steps * batch_size].reshape(steps, batch_size)
        (params, bn_state, opt_state, key), (losses, accs) = jax.lax.scan(
            step, (params, bn_state, opt_state, key), order.astype(jnp.int32))
        return params, bn_state, opt_state, key, jnp.mean(losses), jnp.mean(accs)

    return epoch, steps


def train(name: str, *, epochs: int, seed: int, out: str, lr=None, batch_size=BATCH_SIZE,
          patience: int = 10, dropout_rate: float = 0.2, progress: bool = True, plot: bool = True) -> dict:
    """Trains one model; returns its history and scores (and writes the PNG when `plot`)."""
    t0 = time.perf_counter()
    data = _digits.load_splits()
    x_train, y_train = map(jnp.asarray, data["train"])
    x_val, y_val = map(jnp.asarray, data["val"])
    x_test, y_test = map(jnp.asarray, data["test"])
    if name == "rprop":  # Rprop is a full-batch method: its sign test needs the true gradient
        batch_size = x_train.shape[0]
    batch_size = min(batch_size, x_train.shape[0])

    key = jax.random.key(seed)
    init_key, train_key = jax.random.split(key)
    params, bn_state = _digits.init_mlp(init_key)
    peak_lr = OPTIMIZERS[name][0] if lr is None else lr
    steps_per_epoch = x_train.shape[0] // batch_size
    tx = build_optimizer(name, peak_lr, epochs * steps_per_epoch)
    opt_state = tx.init(params)
    epoch_fn, _ = make_epoch(tx, x_train, y_train, batch_size, dropout_rate, name == "adahessian")

    stopper = gx.training.early_stopping(patience=patience)
    es_state = stopper.init((params, bn_state))
    es_update = jax.jit(stopper.update)

    history = {k: [] for k in ("train_loss", "train_acc", "val_loss", "val_acc")}
    bar = tqdm(range(1, epochs + 1), desc=f"{name:>10}", unit="epoch", disable=not progress,
               ncols=min(shutil.get_terminal_size((100, 24)).columns, 120), leave=True)
    stopped_at = epochs
    for epoch in bar:
        params, bn_state, opt_state, train_key, tl, ta = epoch_fn(params, bn_state, opt_state, train_key)
        vl, va = _digits.evaluate(params, bn_state, x_val, y_val)
        es_state = es_update(es_state, vl, (params, bn_state))
        for k, v in zip(history, (tl, ta, vl, va)):
            history[k].append(float(v))
        bar.set_postfix(loss=f"{float(tl):.3f}", acc=f"{float(ta):.3f}",
                        val_loss=f"{float(vl):.3f}", val_acc=f"{float(va):.3f}")
        if not progress and (epoch % 10 == 0 or epoch == 1):
            print(f"{name:>10} epoch {epoch:3d}  loss {float(tl):.4f}  acc {float(ta):.3f}  "
                  f"val_loss {float(vl):.4f}  val_acc {float(va):.3f}", flush=True)
        if bool(es_state.should_stop):
            stopped_at = epoch
            break
    bar.close()

    best_params, best_bn = es_state.best_params
    test_loss, test_acc = _digits.evaluate(best_params, best_bn, x_test, y_test)
    result = {
        "name": name, "peak_lr": peak_lr, "history": history, "best_epoch": int(es_state.best_step),
        "stopped_at": stopped_at, "early_stopped": stopped_at < epochs,
        "test_loss": float(test_loss), "test_acc": float(test_acc), "seconds": time.perf_counter() - t0,
    }
    if plot:
        result["png"] = plot_curves(result, out)
    return result


def plot_curves(result: dict, out: str) -> str:
    h = result["history"]
    ep = np.arange(1, len(h["train_loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_loss.plot(ep, h["train_loss"], label="train (with dropout)")
    ax_loss.plot(ep, h["val_loss"], label="validation")
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_acc.plot(ep, 100 * np.asarray(h["train_acc"]), label="train (with dropout)")
    ax_acc.plot(ep, 100 * np.asarray(h["val_acc"]), label="validation")
    ax_acc.set_ylim(80, 100.5)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.axvline(result["best_epoch"], color="gray", ls="--", lw=1, label="best (restored)")
        ax.grid(alpha=0.3)
    ax_acc.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"digits MLP, optimizer {result['name']}: test accuracy {100 * result['test_acc']:.1f}% "
                 f"(epoch {result['best_epoch']} restored)", fontsize=11)
    fig.tight_layout()
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"train_digits_{result['name']}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def parse_args(argv=None) -> argparse.Namespace:
    names = list(OPTIMIZERS)
    parser = argparse.ArgumentParser(
        description="Train an MLP on scikit-learn's digits with a gradxform optimizer.",
        epilog="optimizers: " + "; ".join(f"{k}: {v[2]}" for k, v in OPTIMIZERS.items()))
    parser.add_argument("--optimizer", default="chain", choices=names + ["all"], metavar="NAME",
                        help=f"one of {', '.join(names)}, or all (default: chain, README's chain)")
    parser.add_argument("--epochs", type=_positive_int, default=40, help="at most this many epochs (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="initialization, shuffling and dropout seed")
    parser.add_argument("--out", default="out", help="directory for the PNGs (default: out/)")
    parser.add_argument("--lr", type=_positive_float, default=None, help="peak learning rate (default: per optimizer)")
    parser.add_argument("--batch-size", type=_positive_int, default=BATCH_SIZE)
    parser.add_argument("--patience", type=_positive_int, default=10,
                        help="early stopping: epochs without a better validation loss (default 10)")
    parser.add_argument("--smoke", action="store_true", help="a 2-epoch run for CI (no accuracy target)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs = min(args.epochs, 2)
    return args


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def main(argv=None) -> int:
    args = parse_args(argv)
    names = list(OPTIMIZERS) if args.optimizer == "all" else [args.optimizer]
    progress = not args.smoke and sys.stderr.isatty()
    sizes = {k: len(v[1]) for k, v in _digits.load_splits().items()}
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; digits: {sizes['train']} train / "
          f"{sizes['val']} validation / {sizes['test']} test images; up to {args.epochs} epochs", flush=True)
    results = []
    for name in names:
        r = train(name, epochs=args.epochs, seed=args.seed, out=args.out, lr=args.lr,
                  batch_size=args.batch_size, patience=args.patience, progress=progress)
        stop = f"early stop at epoch {r['stopped_at']}" if r["early_stopped"] else f"ran all {r['stopped_at']} epochs"
        print(f"{name}: test accuracy {100 * r['test_acc']:.2f}% (best validation loss at epoch "
              f"{r['best_epoch']}, {stop}) in {r['seconds']:.1f} s; curves: {r['png']}", flush=True)
        results.append(r)
    if len(results) > 1:
        print("\n| optimizer | peak lr | test accuracy | best epoch | wall time |")
        print("|---|---|---|---|---|")
        for r in results:
            print(f"| {r['name']} | {r['peak_lr']:g} | {100 * r['test_acc']:.1f}% | {r['best_epoch']} "
                  f"| {r['seconds']:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
