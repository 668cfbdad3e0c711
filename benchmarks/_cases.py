"""What is benchmarked: the trees, the optimizers, the ideal bytes and the targets.

Nothing here imports JAX, so the runner can list cases and check targets
without starting a backend. A tree is a nested dict whose leaves are
``(shape, dtype_name)`` pairs; `benchmarks._worker` turns it into arrays.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Any, Callable, Dict, List, Tuple

Spec = Dict[str, Any]  # nested dict, leaves (shape, dtype name)

# ----------------------------------------------------------------------------- trees


def _leaf32m(quick: bool) -> Spec:
    """One float32 leaf of 32M (2**25) floats."""
    return {"w": ((256, 256) if quick else (8192, 4096), "float32")}


def _resnet50(quick: bool) -> Spec:
    """The parameter tree of a ResNet-50 (161 leaves, 25.6M floats): conv kernels, batch-norm scale/bias, fc.

    Quick mode keeps the leaf kinds (stem, one bottleneck block with its
    downsample, fc: 17 leaves) at 1/8 of the widths.
    """
    div, blocks = (8, (1,)) if quick else (1, (3, 4, 6, 3))
    c = lambda n: max(n // div, 1)  # noqa: E731

    def conv(k, cin, cout):
        return {"kernel": ((k, k, cin, cout), "float32")}

    def bn(ch):
        return {"scale": ((ch,), "float32"), "bias": ((ch,), "float32")}

    tree: Spec = {"conv1": conv(7, 3, c(64)), "bn1": bn(c(64))}
    cin = c(64)
    for stage, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512))):
        w, out = c(width), c(width * 4)
        for b in range(n):
            block = {
                "conv1": conv(1, cin, w), "bn1": bn(w),
                "conv2": conv(3, w, w), "bn2": bn(w),
                "conv3": conv(1, w, out), "bn3": bn(out),
            }
            if b == 0:
                block["downsample"] = {"conv": conv(1, cin, out), "bn": bn(out)}
            tree[f"layer{stage + 1}_{b}"] = block
            cin = out
    tree["fc"] = {"kernel": ((cin, c(1000)), "float32"), "bias": ((c(1000),), "float32")}
    return tree


def _small2000(quick: bool) -> Spec:
    """2,000 float32 leaves of 4,096 floats (8M floats); quick: 16 leaves of 256."""
    n, size = (16, 256) if quick else (2000, 4096)
    return {f"p{i:04d}": ((size,), "float32") for i in range(n)}


def _bf16_transformer(quick: bool) -> Spec:
    """A bfloat16 decoder-only transformer (52 leaves, 10.0M params: d=448, 4 layers, vocab 1024)."""
    d, layers, vocab, seq = (32, 1, 64, 16) if quick else (448, 4, 1024, 256)
    t = "bfloat16"

    def dense(i, o):
        return {"kernel": ((i, o), t), "bias": ((o,), t)}

    def ln():
        return {"scale": ((d,), t), "bias": ((d,), t)}

    tree: Spec = {"embed": ((vocab, d), t), "pos_embed": ((seq, d), t)}
    for i in range(layers):
        tree[f"block{i}"] = {
            "ln1": ln(), "qkv": dense(d, 3 * d), "out": dense(d, d),
            "ln2": ln(), "mlp_in": dense(d, 4 * d), "mlp_out": dense(4 * d, d),
        }
    tree["ln_f"] = ln()
    return tree


TREES: Dict[str, Callable[[bool], Spec]] = {
    "leaf32m": _leaf32m,
    "resnet50": _resnet50,
    "small2000": _small2000,
    "bf16_transformer": _bf16_transformer,
}

# ------------------------------------------------------------------------ optimizers


def _is_gradxform(lib: Any) -> bool:
    return getattr(lib, "__name__", "") == "gradxform"


def make_optimizer(lib: Any, opt: str) -> Any:
    """The optimizer `opt` built from `lib` (the gradxform or the optax module): same calls, same hyperparameters.

    The ``flat_*`` optimizers run gradxform's under `gradxform.flatten` (state
    packed per dtype) against optax's plain one, the comparison a user who
    switches libraries sees; ``flat_*_both`` flatten both (``optax.flatten``).
    """
    if opt.startswith("flat_"):
        both = opt.endswith("_both")
        base = opt[len("flat_"):len(opt) - len("_both") if both else len(opt)]
        inner = make_optimizer(lib, base)
        return lib.flatten(inner) if (_is_gradxform(lib) or both) else inner
    if opt == "adam":
        return lib.adam(1e-3)
    if opt == "sgdm":
        return lib.sgd(1e-2, momentum=0.9)
    if opt == "clip_chain":
        schedule = lib.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 1000)
        return lib.chain(
            lib.clip_by_global_norm(1.0),
            lib.scale_by_adam(),
            lib.add_decayed_weights(1e-4),
            lib.scale_by_learning_rate(schedule),
        )
    if opt == "adafactor":
        return lib.adafactor(1e-3)
    if opt == "lion":
        return lib.lion(1e-4)
    if opt == "lamb":
        return lib.lamb(1e-3)
    if opt == "muon":  # optax.contrib's defaults: Newton-Schulz on the 2-D leaves, AdamW on the others
        return lib.contrib.muon(1e-3)
    raise ValueError(f"unknown optimizer {opt!r}; known: {OPTIMIZERS + MORE_OPTIMIZERS + MATRIX_OPTIMIZERS}")


OPTIMIZERS: Tuple[str, ...] = ("adam", "sgdm", "clip_chain")
# Measured on the many-leaves tree only.
FLAT_OPTIMIZERS: Tuple[str, ...] = ("flat_adam", "flat_adam_both", "flat_clip_chain", "flat_clip_chain_both")
FLAT_TREES: Tuple[str, ...] = ("small2000",)
# optax's other optimizers people use at scale (issue 19), on the ResNet-50-shaped and bf16 trees.
MORE_OPTIMIZERS: Tuple[str, ...] = ("adafactor", "lion", "lamb")
MORE_TREES: Tuple[str, ...] = ("resnet50", "bf16_transformer")
# Muon (issue 17): its Newton-Schulz iterations are matrix products, so it also gets a FLOP count.
MATRIX_OPTIMIZERS: Tuple[str, ...] = ("muon",)
MATRIX_TREES: Tuple[str, ...] = ("resnet50",)

# Passes over the gradients on top of the one every optimizer needs: the global
# norm reads them once more before the update can start.
EXTRA_GRAD_READS = {"adam": 0, "sgdm": 0, "clip_chain": 1,
                    "flat_adam": 0, "flat_adam_both": 0, "flat_clip_chain": 1, "flat_clip_chain_both": 1,
                    # Adafactor's factored statistics, LAMB's update and parameter norms:
                    # one more pass over the gradients (or the update) before the step.
                    "adafactor": 1, "lion": 0, "lamb": 1, "muon": 0}


def newton_schulz_flops(spec: Spec, ns_steps: int = 5) -> int:
    """The FLOPs of Muon's Newton-Schulz iterations on the 2-D leaves of `spec` (optax's default split).

    Per iteration on an m x n matrix (m <= n, the wide orientation): A = X X^T (2 m^2 n),
    A A (2 m^3) and (b A + c A^2) X (2 m^2 n); the elementwise terms are left out.
    """
    total = 0
    for shape, _ in _spec_leaves(spec):
        if len(shape) == 2:
            m, n = sorted(shape)
            total += ns_steps * (4 * m * m * n + 2 * m ** 3)
    return total


def ideal_bytes(opt: str, params_bytes: int, state_array_bytes: int, state_total_bytes: int) -> Dict[str, int]:
    """The ideal memory footprint and the ideal traffic of one step.

    footprint: params + grads + optimizer state (everything the step must hold).
    traffic: read params, grads and the parameter-shaped state once; write params
    and that state once (Adam: 28 bytes per float32 parameter, SGD with momentum
    20); the clipping chain adds one read of the grads for the norm (32).
    """
    grads_bytes = params_bytes
    footprint = params_bytes + grads_bytes + state_total_bytes
    traffic = 2 * params_bytes + (1 + EXTRA_GRAD_READS[opt]) * grads_bytes + 2 * state_array_bytes
    return {"footprint": footprint, "traffic": traffic}


# ---------------------------------------------------------------------------- cases


def all_cases() -> List[str]:
    return [f"{tree}/{opt}" for tree in TREES
            for opt in OPTIMIZERS + (FLAT_OPTIMIZERS if tree in FLAT_TREES else ())
            + (MORE_OPTIMIZERS if tree in MORE_TREES else ())
            + (MATRIX_OPTIMIZERS if tree in MATRIX_TREES else ())]


def select_cases(patterns: str | None) -> List[str]:
    """Cases matching comma-separated patterns: a case (``resnet50/adam``), a tree
    (``resnet50``), an optimizer (``adam``) or an fnmatch glob (``*/clip_chain``)."""
    cases = all_cases()
    if not patterns:
        return cases
    chosen: List[str] = []
    for pat in (p.strip() for p in patterns.split(",") if p.strip()):
        hits = [
            c for c in cases
            if fnmatch.fnmatchcase(c, pat) or c.split("/")[0] == pat or c.split("/")[1] == pat
        ]
        if not hits:
            raise SystemExit(f"--cases: {pat!r} matches no case; cases are: {', '.join(cases)}")
        chosen += [c for c in hits if c not in chosen]
    return chosen


def tree_summary(spec: Spec) -> Dict[str, Any]:
    """Leaf count, parameter count and bytes of a tree spec."""
    sizes = {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8}
    leaves = _spec_leaves(spec)
    n = [math.prod(shape) for shape, _ in leaves]
    return {
        "n_leaves": len(leaves),
        "n_params": sum(n),
        "params_bytes": sum(k * sizes[dt] for k, (_, dt) in zip(n, leaves)),
        "dtypes": sorted({dt for _, dt in leaves}),
    }


def _spec_leaves(spec: Spec) -> List[Tuple[Tuple[int, ...], str]]:
    out = []
    for key in spec:
        v = spec[key]
        if isinstance(v, dict):
            out += _spec_leaves(v)
        else:
            out.append(v)
    return out


# -------------------------------------------------------------------------- targets

LARGE = ("leaf32m", "resnet50")

# The performance targets: (trees, optimizers, metric, comparison, bound, what the target asks)
TARGETS = [
    (LARGE, ("adam", "sgdm"), "step_ratio", "<=", 1.0, "step time <= 1.0x optax's"),
    (LARGE, ("adam",), "roofline_gx", ">=", 0.75, "float32 Adam >= 75% of the roofline"),
    (LARGE, ("clip_chain",), "step_ratio", "<=", 0.6, "clipping chain <= 0.6x optax's step time"),
    (LARGE, ("clip_chain",), "mem_ratio_gx", "<=", 1.10, "clipping chain <= 1.10x the ideal memory"),
    (("small2000",), ("adam",), "step_ratio", "<=", 0.5, "2,000 leaves: Adam step <= 0.5x optax's"),
    (("small2000",), ("adam",), "first_call_ratio", "<=", 0.25, "2,000 leaves: first call <= 0.25x optax's"),
    (("small2000",), ("adam",), "compile_peak_ratio", "<=", 0.5,
     "2,000 leaves: compile-time memory peak <= half of optax's"),
    (("small2000",), ("flat_adam",), "step_ratio", "<=", 0.5, "2,000 leaves, gx.flatten: Adam step <= 0.5x optax's"),
    (("small2000",), ("flat_adam",), "first_call_ratio", "<=", 0.25,
     "2,000 leaves, gx.flatten: first call <= 0.25x optax's"),
    (("small2000",), ("flat_adam",), "compile_peak_ratio", "<=", 0.5,
     "2,000 leaves, gx.flatten: compile-time memory peak <= half of optax's"),
    # issue 16: gx.flatten steps as fast as optax.flatten and compiles in <= 0.3x optax's plain first call
    (("small2000",), ("flat_adam_both", "flat_clip_chain_both"), "step_ratio", "<=", 1.0,
     "2,000 leaves: gx.flatten step <= 1.0x optax.flatten's"),
    (("small2000",), ("flat_adam", "flat_clip_chain"), "first_call_ratio", "<=", 0.3,
     "2,000 leaves: gx.flatten first call <= 0.3x optax's plain one"),
    # 1.25: the packed copy of the gradients (optax.flatten's too); the last 0.001 is the offsets
    (("small2000",), ("flat_adam", "flat_clip_chain"), "mem_ratio_gx", "<=", 1.251,
     "2,000 leaves: gx.flatten step memory <= 1.25x the ideal"),
    (("bf16_transformer",), OPTIMIZERS, "step_ratio", "<=", 1.0, "bf16: at least as fast as optax"),
    (MATRIX_TREES, MATRIX_OPTIMIZERS, "step_ratio", "<=", 1.0, "Muon step <= 1.0x optax's"),
]


def check_targets(results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Each performance target that applies to a measured case: value, bound, met.

    ``met`` is None where the figure was not measured (no optax) and for quick
    runs, whose tiny trees say nothing about the targets.
    """
    out = []
    for res in results:
        tree, opt = res["case"].split("/")
        for trees, opts, metric, cmp, bound, text in TARGETS:
            if tree not in trees or opt not in opts:
                continue
            value = res.get(metric)
            met = None if value is None or res.get("quick") else (value <= bound if cmp == "<=" else value >= bound)
            iqr = _iqr(res, metric)
            out.append({"case": res["case"], "metric": metric, "value": value, "cmp": cmp,
                        "bound": bound, "met": met, "target": text, "iqr": iqr,
                        # the bound inside the interquartile range: this run cannot tell
                        "within_iqr": None if iqr is None else iqr[0] <= bound <= iqr[1]})
    return out


def _iqr(res: Dict[str, Any], metric: str):
    if metric == "step_ratio" and res.get("step_ratio_p25") is not None:
        return [res["step_ratio_p25"], res["step_ratio_p75"]]
    if metric == "roofline_gx" and "libs" in res:
        q = res["libs"]["gx"]["roofline"]
        return [q["p25"], q["p75"]]
    return None
