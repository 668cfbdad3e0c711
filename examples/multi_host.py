"""One training run, as one process with 8 devices or as several processes sharing 8 devices.

    python examples/multi_host.py                               # 1 process, 8 host devices
    python examples/multi_host.py --launch 2                    # 2 processes x 4 host devices, on this machine
    python examples/multi_host.py --num-processes 2 --process-id 0 --coordinator HOST:PORT   # one of them, by hand

What it shows: multi-host training is JAX's own. Each process calls
``jax.distributed.initialize`` (here on CPU, with gloo collectives), after which
``jax.devices()`` lists every process's devices and a ``Mesh`` over them spans
the processes. The same program then runs in every process:

* a small MLP regression, the global batch of 64 split over the mesh axis
  ``"data"`` (each process builds only its own devices' rows, with
  ``jax.make_array_from_callback``);
* the parameters replicated, the optimizer state sharded over all devices with
  ``gx.sharding.shard_state(gx.adam(...), mesh)`` (ZeRO-1): each device, in
  whichever process, holds 1/8 of Adam's moments;
* a jitted, donated step with ``out_shardings`` from ``gx.sharding.state_shardings``.

Process 0 prints the loss and writes the final params to ``--out`` (.npz). With
``--launch N`` the script starts N copies of itself (4 devices each for N=2) on
this machine, waits for them and prints process 0's output: the final params
agree with the one-process run to float32 rounding (the reductions are
all-reduces over 8 devices either way).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys

TOTAL_DEVICES = 8
BATCH = 64
DIM, HIDDEN = 16, 32


def parse(argv=None):
    parser = argparse.ArgumentParser(description="The same training on 1 process x 8 devices or N x 8/N.")
    parser.add_argument("--num-processes", type=int, default=1, help="processes in the run (default 1)")
    parser.add_argument("--process-id", type=int, default=0, help="this process's index")
    parser.add_argument("--coordinator", default=None, help="HOST:PORT of process 0 (needed with 2+ processes)")
    parser.add_argument("--launch", type=int, default=0, metavar="N",
                        help="start N processes on this machine (8/N host devices each) and wait for them")
    parser.add_argument("--steps", type=int, default=20, help="training steps (default 20)")
    parser.add_argument("--out", default=None, help="process 0 writes the final params here (.npz)")
    return parser, parser.parse_args(argv)


def launch(n: int, args) -> int:
    """Starts `n` copies of this script with a free local port as the coordinator; returns the worst exit status."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    procs = []
    for i in range(n):
        cmd = [sys.executable, os.path.abspath(__file__), "--num-processes", str(n), "--process-id", str(i),
               "--coordinator", f"localhost:{port}", "--steps", str(args.steps)]
        if args.out and i == 0:
            cmd += ["--out", args.out]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for i, (p, out) in enumerate(zip(procs, outputs)):
        if i == 0 or p.returncode:
            print(f"--- process {i} (exit {p.returncode}) ---\n{out}", end="")
    return max(p.returncode for p in procs)


def main(argv=None) -> int:
    parser, args = parse(argv)
    if args.launch:
        if args.launch < 1 or TOTAL_DEVICES % args.launch:
            parser.error(f"--launch must divide {TOTAL_DEVICES}; got {args.launch}")
        return launch(args.launch, args)
    n_proc = args.num_processes
    if n_proc < 1 or TOTAL_DEVICES % n_proc:
        parser.error(f"--num-processes must divide {TOTAL_DEVICES}; got {n_proc}")
    if n_proc > 1 and not args.coordinator:
        parser.error("--coordinator HOST:PORT is needed with more than one process")

    # before jax is imported: this process's share of the 8 host devices
    flag = "--xla_force_host_platform_device_count"
    os.environ["XLA_FLAGS"] = " ".join(
        [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(flag)]
        + [f"{flag}={TOTAL_DEVICES // n_proc}"])
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import gradxform as gx

    if n_proc > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=n_proc,
                                   process_id=args.process_id)
    devices = jax.devices()
    if len(devices) != TOTAL_DEVICES:
        print(f"multi_host.py: expected {TOTAL_DEVICES} devices in all, jax sees {len(devices)}", file=sys.stderr)
        return 2
    mesh = Mesh(np.array(devices), ("data",))
    replicated = NamedSharding(mesh, P())
    rows = NamedSharding(mesh, P("data"))

    def global_array(host: np.ndarray, sharding: NamedSharding) -> jax.Array:
        """`host` (the same in every process) as one array over the mesh: each process fills its own devices."""
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    rng = np.random.default_rng(0)  # the same numbers in every process
    host_params = {"w1": rng.normal(size=(DIM, HIDDEN)).astype(np.float32) / np.sqrt(DIM),
                   "b1": np.zeros(HIDDEN, np.float32),
                   "w2": rng.normal(size=(HIDDEN, 1)).astype(np.float32) / np.sqrt(HIDDEN),
                   "b2": np.zeros(1, np.float32)}
    teacher = rng.normal(size=(DIM, 1)).astype(np.float32)
    xs = rng.normal(size=(args.steps, BATCH, DIM)).astype(np.float32)
    ys = np.sin(xs @ teacher).astype(np.float32)

    params = {k: global_array(v, replicated) for k, v in host_params.items()}
    tx = gx.sharding.shard_state(gx.adam(1e-2), mesh, axis="data")
    opt_state = tx.init(params)
    param_sh = jax.tree_util.tree_map(lambda _: replicated, params)
    state_sh = gx.sharding.state_shardings(tx, params)

    def loss_fn(p, x, y):
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        return jnp.mean((h @ p["w2"] + p["b2"] - y) ** 2)

    def step(p, s, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
        updates, s = tx.update(grads, s, p)
        return gx.apply_updates(p, updates), s, loss

    step = jax.jit(step, donate_argnums=(0, 1), out_shardings=(param_sh, state_sh, replicated))
    me = jax.process_index()
    for i in range(args.steps):
        params, opt_state, loss = step(params, opt_state, global_array(xs[i], rows), global_array(ys[i], rows))
        if me == 0 and (i == 0 or i + 1 == args.steps):
            print(f"step {i + 1:3d}: loss {float(loss.addressable_data(0)):.6f}", flush=True)

    mu = opt_state[0].mu["w1"]
    local = sum(s.data.nbytes for s in mu.addressable_shards)
    if me == 0:
        print(f"{jax.process_count()} process(es) x {jax.local_device_count()} devices; Adam's mu['w1'] "
              f"({mu.nbytes} bytes) holds {mu.addressable_shards[0].data.nbytes} bytes per device, "
              f"{local} in this process", flush=True)
        final = {k: np.asarray(v.addressable_data(0)) for k, v in params.items()}  # replicated: any copy
        if args.out:
            np.savez(args.out, **final)
            print(f"wrote {args.out}")
    if n_proc > 1:
        jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
