"""The digits MLP trained data-parallel over 8 host devices, checked step by step against one device.

    python examples/data_parallel.py        # sets XLA_FLAGS=--xla_force_host_platform_device_count=8 itself

What it shows:

* a ``Mesh`` of 8 CPU devices with one axis, ``"data"``;
* each global batch of 64 split 8 ways (``NamedSharding(mesh, P("data"))``);
* the forward and backward pass in ``jax.shard_map``, with **sync batch norm**:
  ``gx.nn.batch_norm(..., axis_name="data")`` averages the batch statistics
  across the devices, so every device normalizes with the statistics of the
  whole batch of 64, not of its own 8 examples;
* the parameters sharded across the devices along their largest axis
  (ZeRO/FSDP style) and the optimizer state sharded exactly like them: `init`
  gives every parameter-shaped state leaf its parameter's ``NamedSharding``,
  and the jitted step keeps it;
* the same training run on one device, with the same batches and dropout
  masks: the two loss curves match to float32 rounding, and the script says so
  (exit status 1 if they do not).

With ``--shard-state`` the parameters are replicated instead and the optimizer
is wrapped in ``gx.sharding.shard_state(tx, mesh)`` (ZeRO-1): every
parameter-shaped state leaf is split 8 ways along its first axis that 8 divides,
so each device holds 1/8 of the optimizer state; the loss curve still matches
the single-device run.
"""

from __future__ import annotations

import os
import sys

_FLAG = "--xla_force_host_platform_device_count"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):  # must be set before jax is imported
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}=8".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the 8 devices are host (CPU) devices

import argparse  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _digits  # noqa: E402

import gradxform as gx  # noqa: E402

BATCH_SIZE = 64  # global batch: 8 examples per device
PEAK_LR = 3e-3
WEIGHT_DECAY = 1e-2
RTOL = 1e-3  # the loss curves must agree to this relative tolerance at every step


def param_spec(shape: tuple, n_devices: int) -> P:
    """Shard the largest axis divisible by the device count (the last one on ties); else replicate."""
    axes = [i for i, n in enumerate(shape) if n % n_devices == 0]
    if not axes:
        return P()
    axis = max(axes, key=lambda i: (shape[i], i))
    return P(*[("data" if i == axis else None) for i in range(len(shape))])


def make_loss_fn(mesh, sync_bn: bool = True):
    """``(params, bn_state, x, y, ids, key) -> (loss, new_bn_state)`` on one device, or under shard_map over `mesh`."""

    def device_loss(params, bn_state, x, y, ids, key, axis_name):
        logits, new_bn = _digits.apply_mlp(params, bn_state, x, training=True, key=key, example_ids=ids,
                                           axis_name=axis_name if sync_bn else None)
        loss = _digits.smoothed_cross_entropy(logits, y)  # the mean over this device's examples
        if axis_name is not None:
            loss = jax.lax.pmean(loss, axis_name)  # equal shards: the mean over the global batch
            if not sync_bn:  # per-device statistics differ between devices: average them for the output
                new_bn = jax.lax.pmean(new_bn, axis_name)
        return loss, new_bn

    if mesh is None:
        return partial(device_loss, axis_name=None)
    return jax.shard_map(
        partial(device_loss, axis_name="data"), mesh=mesh,
        in_specs=(P(), P(), P("data"), P("data"), P("data"), P()),
        out_specs=(P(), P()))


def make_step(tx, mesh):
    """One optimizer step; with `mesh`, the loss and gradient run under shard_map with sync batch norm."""
    loss_fn = make_loss_fn(mesh)

    def step(params, bn_state, opt_state, x, y, ids, key):
        # differentiating through shard_map: jax adds the cross-device terms of the synced statistics
        (loss, new_bn), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, bn_state, x, y, ids, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return gx.apply_updates(params, updates), new_bn, opt_state, loss

    return step


def train(mesh, batches, data, epochs, seed, progress, label, shard_state=False):
    """Runs every batch of `batches` (``(steps, 64)`` example indices); returns per-step losses and the model."""
    x_train, y_train = data["train"]
    params, bn_state = _digits.init_mlp(jax.random.key(seed))
    steps = len(batches)
    tx = _digits.readme_chain(PEAK_LR, steps, max(steps // 20, 1), WEIGHT_DECAY)
    if mesh is None:
        device = jax.devices()[0]
        params, bn_state = jax.device_put((params, bn_state), device)
        put_batch = lambda a: jax.device_put(a, device)  # noqa: E731
        opt_state = jax.device_put(tx.init(params), device)  # committed like the step's outputs: no retrace
        step = jax.jit(make_step(tx, None), donate_argnums=(0, 1, 2))
    else:
        n = mesh.devices.size
        replicated = NamedSharding(mesh, P())
        if shard_state:  # ZeRO-1: params replicated, the optimizer state split over "data"
            param_sh = jax.tree_util.tree_map(lambda p: replicated, params)
            tx = gx.sharding.shard_state(tx, mesh, axis="data")
        else:
            param_sh = jax.tree_util.tree_map(lambda p: NamedSharding(mesh, param_spec(p.shape, n)), params)
        params = jax.tree_util.tree_map(jax.device_put, params, param_sh)
        bn_state = jax.device_put(bn_state, replicated)
        opt_state = tx.init(params)  # parameter-shaped leaves take their parameter's sharding (or shard_state's)
        # the state's layout, scalars (step counts) replicated over the mesh
        state_sh = gx.sharding.state_shardings(tx, params)
        opt_state = jax.device_put(opt_state, state_sh)
        batch_sh = NamedSharding(mesh, P("data"))
        put_batch = lambda a: jax.device_put(a, batch_sh)  # noqa: E731
        step = jax.jit(make_step(tx, mesh), donate_argnums=(0, 1, 2),
                       out_shardings=(param_sh, replicated, state_sh, replicated))

    base_key = jax.random.key(seed + 1)
    losses = []
    steps_per_epoch = max(steps // epochs, 1)
    bar = tqdm(total=steps, desc=f"{label:>10}", unit="step", disable=not progress,
               ncols=min(shutil.get_terminal_size((100, 24)).columns, 120))
    for i, ids in enumerate(batches):
        xb, yb, ib = put_batch(x_train[ids]), put_batch(y_train[ids]), put_batch(ids.astype(np.int32))
        params, bn_state, opt_state, loss = step(params, bn_state, opt_state, xb, yb, ib,
                                                 jax.random.fold_in(base_key, i))
        losses.append(loss)
        bar.update(1)
        if (i + 1) % steps_per_epoch == 0:
            bar.set_postfix(loss=f"{float(loss):.4f}")
    bar.close()
    return np.asarray(jax.device_get(losses)), params, bn_state, opt_state


def zero1_spec(shape: tuple, n_devices: int) -> P:
    """shard_state's layout: the first axis that the device count divides; else replicated."""
    for i, n in enumerate(shape):
        if n % n_devices == 0:
            return P(*[None] * i, "data")
    return P()


def check_state_sharding(params, opt_state, n_devices, shard_state=False) -> tuple[int, list]:
    """Every state leaf shaped like a parameter must carry that parameter's sharding (or shard_state's split
    layout); returns (checked, bad)."""
    shapes = {p.shape for p in jax.tree_util.tree_leaves(params)}
    spec = zero1_spec if shard_state else param_spec
    checked, bad = 0, []
    for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
        if getattr(leaf, "ndim", 0) and leaf.shape in shapes:
            want = NamedSharding(leaf.sharding.mesh, spec(leaf.shape, n_devices))
            checked += 1
            if not leaf.sharding.is_equivalent_to(want, leaf.ndim):
                bad.append(f"{jax.tree_util.keystr(path)}: {leaf.sharding.spec} (want {want.spec})")
    return checked, bad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Data-parallel digits training on 8 host devices.")
    parser.add_argument("--epochs", type=int, default=20, help="epochs (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--devices", type=int, default=8, help="devices in the mesh (default 8)")
    parser.add_argument("--out", default="out", help="directory for the PNG (default: out/)")
    parser.add_argument("--smoke", action="store_true", help="four steps, for CI")
    parser.add_argument("--shard-state", action="store_true",
                        help="replicate the params and split the optimizer state (gx.sharding.shard_state, ZeRO-1)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1; got {args.epochs}")
    if args.devices < 1 or BATCH_SIZE % args.devices:
        parser.error(f"--devices must divide the global batch of {BATCH_SIZE}; got {args.devices}")
    epochs = 1 if args.smoke else args.epochs
    if len(jax.devices()) < args.devices:
        print(f"data_parallel.py: jax sees {len(jax.devices())} device(s), the mesh needs {args.devices}. "
              f"Run with XLA_FLAGS={_FLAG}={args.devices} (this script sets it when XLA_FLAGS has no such "
              "flag) and JAX_PLATFORMS=cpu.", file=sys.stderr)
        return 2
    progress = not args.smoke and sys.stderr.isatty()
    mesh = Mesh(np.array(jax.devices()[: args.devices]), ("data",))

    data = _digits.load_splits()
    n_train = data["train"][0].shape[0]
    rng = np.random.default_rng(args.seed)
    steps_per_epoch = n_train // BATCH_SIZE
    batches = [rng.permutation(n_train)[: steps_per_epoch * BATCH_SIZE].reshape(steps_per_epoch, BATCH_SIZE)
               for _ in range(epochs)]
    batches = np.concatenate(batches)
    if args.smoke:
        batches = batches[:4]
    print(f"{len(jax.devices())} {jax.devices()[0].platform} devices; {len(batches)} steps ({epochs} epoch(s) of "
          f"{steps_per_epoch}), global batch {BATCH_SIZE} = {args.devices} x {BATCH_SIZE // args.devices}", flush=True)

    t0 = time.perf_counter()
    single, p1, bn1, _ = train(None, batches, data, epochs, args.seed, progress, "1 device")
    t1 = time.perf_counter()
    multi, p8, bn8, state8 = train(mesh, batches, data, epochs, args.seed, progress, f"{args.devices} devices",
                                   shard_state=args.shard_state)
    t2 = time.perf_counter()
    print(f"1 device: {t1 - t0:.1f} s; {args.devices} devices: {t2 - t1:.1f} s (host devices share the CPU "
          "cores, so this shows correctness, not speed)")

    checked, bad = check_state_sharding(p8, state8, args.devices, args.shard_state)
    print("parameters sharded as: " + ", ".join(
        f"{jax.tree_util.keystr(path)} {leaf.sharding.spec}"
        for path, leaf in jax.tree_util.tree_flatten_with_path(p8)[0]))
    what = "split over the devices (shard_state)" if args.shard_state else "sharded like the params"
    print(f"optimizer state {what}: {'yes' if not bad else 'NO'} "
          f"({checked} parameter-shaped state leaves checked)" + "".join(f"\n  {b}" for b in bad))
    state_bytes = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(state8))
    device0 = sum(s.data.nbytes for leaf in jax.tree_util.tree_leaves(state8) for s in leaf.addressable_shards
                  if s.device == mesh.devices.flat[0])
    print(f"optimizer state: {state_bytes} bytes in all, {device0} on device 0 ({device0 / state_bytes:.3f})")

    # what sync batch norm buys: the first step's loss with per-device statistics (8 examples each)
    x_train, y_train = data["train"]
    p0, bn0 = _digits.init_mlp(jax.random.key(args.seed))
    ids0 = batches[0].astype(np.int32)
    first_key = jax.random.fold_in(jax.random.key(args.seed + 1), 0)
    unsynced, _ = jax.jit(make_loss_fn(mesh, sync_bn=False))(p0, bn0, x_train[ids0], y_train[ids0], ids0, first_key)
    print(f"first step's loss: {single[0]:.6f} on 1 device, {multi[0]:.6f} with sync batch norm, "
          f"{float(unsynced):.6f} with per-device batch norm (no axis_name)")

    x_test, y_test = data["test"]
    _, acc1 = _digits.evaluate(jax.device_get(p1), jax.device_get(bn1), x_test, y_test)
    _, acc8 = _digits.evaluate(jax.device_get(p8), jax.device_get(bn8), x_test, y_test)
    diff = np.abs(multi - single)
    rel = diff / np.maximum(np.abs(single), 1e-12)
    match = bool(np.all(np.isfinite(multi)) and rel.max() <= RTOL)
    print(f"loss curves over {len(single)} steps: max |8 devices - 1 device| = {diff.max():.2e} "
          f"(relative {rel.max():.2e}); final loss {single[-1]:.5f} vs {multi[-1]:.5f}")
    print(f"test accuracy: 1 device {100 * float(acc1):.2f}%, {args.devices} devices {100 * float(acc8):.2f}%")
    print(f"the data-parallel loss curve {'matches' if match else 'DOES NOT match'} the single-device run "
          f"(relative tolerance {RTOL:g})")

    fig, (ax, ax_diff) = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = np.arange(1, len(single) + 1)
    ax.plot(steps, single, lw=2.5, alpha=0.5, label="1 device")
    ax.plot(steps, multi, lw=1, ls="--", label=f"{args.devices} devices, sync batch norm")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (smoothed targets)")
    ax.legend()
    nonzero = diff > 0
    ax_diff.semilogy(steps[nonzero], diff[nonzero], ".", ms=3, label="|8 devices - 1 device|")
    ax_diff.semilogy(steps, np.finfo(np.float32).eps * np.abs(single), lw=1, color="gray",
                     label="float32 spacing of the loss")
    ax_diff.set_xlabel("step")
    ax_diff.set_ylabel("|loss difference|")
    ax_diff.set_title(f"identical at {int((~nonzero).sum())} of {len(diff)} steps, max {diff.max():.1e}",
                      fontsize=10)
    ax_diff.legend(fontsize=8)
    for a in (ax, ax_diff):
        a.grid(alpha=0.3)
    fig.suptitle(f"digits MLP, data-parallel over {args.devices} host devices vs one device", fontsize=11)
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    png = os.path.join(args.out, "data_parallel.png")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    print(f"wrote {png}")
    return 0 if match and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
