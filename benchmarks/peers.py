"""Our attacks vs foolbox 3.3, ART 1.20 and CleverHans 4 on the paper's MNIST network C4.

Same network (C4 with the shipped ``"mnist"`` weights, one Keras model shared by every library),
same images (the first N correctly classified digits of ``load_mnist("test", source="package")``,
N = 200, 20 with ``--quick``), same hyperparameters:

- FGSM: L∞, ε = 0.3.
- I-FGSM (BIM; foolbox ``LinfBasicIterativeAttack``, ART ``BasicIterativeMethod``, CleverHans
  ``projected_gradient_descent(norm=inf, rand_init=False)``): ε = 0.3, step 0.08, 10 steps.
- PGD2: L2, ε = 2.0, absolute step 1.0, 10 steps, no random start.
- C&W L2: confidence 1, learning rate (foolbox ``stepsize``) 0.1, initial const 15, 5 binary
  search steps × 100 steps, no early abort (so every library runs exactly 500 steps),
  ``parametrization="tanh"`` for ours (foolbox, ART and CleverHans optimize in tanh space).
  ART's ``CarliniL2Method`` is a different optimizer (gradient steps with a halving / doubling
  line search starting at ``learning_rate`` instead of Adam, and another update of the constant),
  so only its hyperparameters are the same.
- Extra rows without a peer: our C&W with ``parametrization="clip"``, sPGD2 (PGD2 settings,
  ``Smoother(0.95, solver="exact")``) and sC&W (C&W settings, clip, same smoother).

Metrics are computed here, identically for every library, from the returned images: an image
is a success if C4 misclassifies it, it lies within ε (fixed-budget attacks, 1e-5 slack) and it
is not all zeros (foolbox's C&W returns zeros where it found nothing). Psuc = successes / N;
mean L2 over the successes.

Timing: everything runs in one process, on one machine. For each attack, every library first
makes one call on the full batch (reported as *first call*: includes tf.function tracing and
any other one-time cost); a warm-up on a few images would not do, because our compiled loops
are traced per batch shape. Then ``reps`` timed calls per library, round-robin across the
libraries so that background load hits all alike; the median is reported. A call includes the
conversion of the result to numpy. A peer whose first call takes more than ``--max-first-call``
seconds (300; ART's C&W) is not repeated: its first call is its time. Batch: all N images in one call for every library (ART:
``batch_size=N``; CleverHans: one call). CleverHans is also timed with its whole attack wrapped
in ``tf.function`` ("cleverhans+tf.function"), the fastest way to run it.

Usage::

    python benchmarks/peers.py --quick     # 20 images, 1 repetition (a few minutes)
    python benchmarks/peers.py             # 200 images, 3 repetitions
    python benchmarks/peers.py --render-only benchmarks/results/peers.json
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: The attacks and their shared hyperparameters.
SETTINGS: dict[str, dict[str, Any]] = {
    "FGSM": {"norm": "linf", "epsilon": 0.3},
    "I-FGSM": {"norm": "linf", "epsilon": 0.3, "step_size": 0.08, "steps": 10},
    "PGD2": {"norm": "l2", "epsilon": 2.0, "step_size": 1.0, "steps": 10, "random_start": False},
    "C&W": {
        "norm": "l2",
        "confidence": 1.0,
        "learning_rate": 0.1,
        "initial_const": 15.0,
        "binary_search_steps": 5,
        "steps": 100,
        "abort_early": False,
    },
}
SMOOTHER: dict[str, Any] = {"alpha": 0.95, "solver": "exact"}
#: Goal of the issue: our time <= fastest peer's / 3, same Psuc, mean L2 <= 1.02 x the peer's.
GOAL_SPEEDUP, GOAL_L2_FACTOR, PSUC_TOLERANCE = 3.0, 1.02, 0.01
CLEVERHANS_L2_NOTE = (
    "normalizes the gradient by sqrt(max(sum g^2, 1e-12)): digits with a tiny gradient"
    " (confident C4) take tiny steps"
)
#: The extra rows (no peer) and the attack whose settings and timing group they share.
EXTRAS = {"C&W (clip)": "C&W", "sPGD2": "PGD2", "sC&W": "C&W"}


def base_attack(attack: str) -> str:
    """The attack of :data:`SETTINGS` whose hyperparameters ``attack`` uses."""
    return EXTRAS.get(attack, attack)


@dataclass
class Entry:
    """One (attack, library) pair: ``build()`` returns the runner (not timed)."""

    attack: str
    library: str
    build: Callable[[], Runner]
    note: str = ""
    peer_of: str | None = None  # the attack row it competes in (None: extra row)
    runner: Runner | None = None
    record: dict[str, Any] = field(default_factory=dict)


# -- libraries ----------------------------------------------------------------------------------
def _ours(
    net: Any, attack_name: str, smooth: bool = False, parametrization: str = "tanh"
) -> Runner:
    from tfsmooth import attacks
    from tfsmooth.models import Model
    from tfsmooth.smoothing import Smoother

    model = Model(net, bounds=(0.0, 1.0), num_classes=10, name="c4")
    s = SETTINGS[attack_name]
    smoother = Smoother(SMOOTHER["alpha"], solver=SMOOTHER["solver"]) if smooth else None
    epsilon: float | None = s.get("epsilon")
    attack: Any
    if attack_name == "FGSM":
        attack = attacks.LinfFastGradientAttack(smoother=smoother)
    elif attack_name == "I-FGSM":
        attack = attacks.LinfBasicIterativeAttack(
            steps=s["steps"], step_size=s["step_size"], smoother=smoother
        )
    elif attack_name == "PGD2":
        pgd: Any = attacks.SmoothL2PGD if smooth else attacks.L2ProjectedGradientDescentAttack
        attack = pgd(
            steps=s["steps"], abs_stepsize=s["step_size"], random_start=False, smoother=smoother
        )
    else:
        cw: Any = attacks.SmoothCarliniWagnerL2 if smooth else attacks.L2CarliniWagnerAttack
        attack = cw(
            binary_search_steps=s["binary_search_steps"],
            steps=s["steps"],
            learning_rate=s["learning_rate"],
            confidence=s["confidence"],
            initial_const=s["initial_const"],
            abort_early=s["abort_early"],
            parametrization=parametrization,
            smoother=smoother,
        )

    def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        result = attack(model, tf.constant(x), tf.constant(y), epsilons=epsilon)
        return np.asarray(result.clipped)

    return run


def _foolbox(net: Any, attack_name: str) -> Runner:
    import foolbox as fb

    model = fb.TensorFlowModel(net, bounds=(0.0, 1.0))
    s = SETTINGS[attack_name]
    attack: Any
    if attack_name == "FGSM":
        attack = fb.attacks.LinfFastGradientAttack(random_start=False)
    elif attack_name == "I-FGSM":
        attack = fb.attacks.LinfBasicIterativeAttack(
            abs_stepsize=s["step_size"], steps=s["steps"], random_start=False
        )
    elif attack_name == "PGD2":
        attack = fb.attacks.L2ProjectedGradientDescentAttack(
            abs_stepsize=s["step_size"], steps=s["steps"], random_start=False
        )
    else:
        attack = fb.attacks.L2CarliniWagnerAttack(
            binary_search_steps=s["binary_search_steps"],
            steps=s["steps"],
            stepsize=s["learning_rate"],
            confidence=s["confidence"],
            initial_const=s["initial_const"],
            abort_early=s["abort_early"],
        )
    epsilon = s.get("epsilon")

    def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        _, clipped, _ = attack(model, tf.constant(x), tf.constant(y), epsilons=epsilon)
        return np.asarray(clipped)

    return run


def _art(net: Any, attack_name: str, batch: int) -> Runner:
    from art.attacks import evasion
    from art.estimators.classification import TensorFlowV2Classifier

    classifier = TensorFlowV2Classifier(
        model=net,
        nb_classes=10,
        input_shape=(28, 28, 1),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
    )
    s = SETTINGS[attack_name]
    attack: Any
    if attack_name == "FGSM":
        attack = evasion.FastGradientMethod(
            classifier, norm=np.inf, eps=s["epsilon"], batch_size=batch
        )
    elif attack_name == "I-FGSM":
        attack = evasion.BasicIterativeMethod(
            classifier,
            eps=s["epsilon"],
            eps_step=s["step_size"],
            max_iter=s["steps"],
            batch_size=batch,
            verbose=False,
        )
    elif attack_name == "PGD2":
        attack = evasion.ProjectedGradientDescent(
            classifier,
            norm=2,
            eps=s["epsilon"],
            eps_step=s["step_size"],
            max_iter=s["steps"],
            num_random_init=0,
            batch_size=batch,
            verbose=False,
        )
    else:
        attack = evasion.CarliniL2Method(
            classifier,
            confidence=s["confidence"],
            learning_rate=s["learning_rate"],
            binary_search_steps=s["binary_search_steps"],
            max_iter=s["steps"],
            initial_const=s["initial_const"],
            batch_size=batch,
            verbose=False,
        )

    def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.asarray(attack.generate(x, y=y))

    return run


def _cleverhans(net: Any, attack_name: str, wrap: bool) -> Runner:
    s = SETTINGS[attack_name]
    function: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    if attack_name == "FGSM":
        from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method

        def function(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
            return fast_gradient_method(
                net, x, s["epsilon"], np.inf, clip_min=0.0, clip_max=1.0, y=y
            )

    elif attack_name in ("I-FGSM", "PGD2"):
        from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

        norm = np.inf if s["norm"] == "linf" else 2

        def function(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
            return projected_gradient_descent(
                net,
                x,
                s["epsilon"],
                s["step_size"],
                s["steps"],
                norm,
                clip_min=0.0,
                clip_max=1.0,
                y=y,
                rand_init=False,
                sanity_checks=False,
            )

    else:
        from cleverhans.tf2.attacks.carlini_wagner_l2 import carlini_wagner_l2

        def function(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
            return carlini_wagner_l2(
                net,
                x,
                y=y,
                batch_size=int(x.shape[0]),
                confidence=s["confidence"],
                learning_rate=s["learning_rate"],
                initial_const=s["initial_const"],
                binary_search_steps=s["binary_search_steps"],
                max_iterations=s["steps"],
                abort_early=s["abort_early"],
                clip_min=0.0,
                clip_max=1.0,
            )

    if wrap:
        function = tf.function(function)

    def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.asarray(function(tf.constant(x), tf.constant(y)))

    return run


def entries(net: Any, batch: int) -> list[Entry]:
    """Every (attack, library) pair, in table order."""
    out: list[Entry] = []
    for name in SETTINGS:
        out.append(Entry(name, "tfsmooth", functools.partial(_ours, net, name), peer_of=name))
        out.append(Entry(name, "foolbox", functools.partial(_foolbox, net, name), peer_of=name))
        art_note = "different optimizer (line search, no Adam)" if name == "C&W" else ""
        out.append(
            Entry(
                name, "art", functools.partial(_art, net, name, batch), note=art_note, peer_of=name
            )
        )
        for wrap in (False, True):
            label = "cleverhans+tf.function" if wrap else "cleverhans"
            out.append(
                Entry(name, label, functools.partial(_cleverhans, net, name, wrap), peer_of=name)
            )
    out.append(
        Entry(
            "C&W (clip)",
            "tfsmooth",
            functools.partial(_ours, net, "C&W", parametrization="clip"),
            note="extra: parametrization='clip' (the paper's eq. 13)",
        )
    )
    out.append(
        Entry(
            "sPGD2",
            "tfsmooth",
            functools.partial(_ours, net, "PGD2", smooth=True),
            note="extra: PGD2 settings + Smoother(0.95, exact)",
        )
    )
    out.append(
        Entry(
            "sC&W",
            "tfsmooth",
            functools.partial(_ours, net, "C&W", smooth=True, parametrization="clip"),
            note="extra: C&W settings, clip + Smoother(0.95, exact)",
        )
    )
    return out


# -- measurement --------------------------------------------------------------------------------
def metrics(net: Any, x: np.ndarray, y: np.ndarray, adv: np.ndarray, attack: str) -> dict[str, Any]:
    """Psuc and mean L2 of successes, computed the same way for every library."""
    if adv.shape != x.shape:
        raise ValueError(f"expected adversarials of shape {x.shape}, got {adv.shape}")
    adv = adv.astype(np.float32)
    predictions = np.argmax(np.asarray(net(adv, training=False)), axis=1)
    diff = (adv - x).reshape(len(x), -1)
    l2 = np.sqrt(np.sum(np.square(diff), axis=1))
    linf = np.max(np.abs(diff), axis=1)
    settings = SETTINGS[base_attack(attack)]
    epsilon = settings.get("epsilon")
    within = np.ones(len(x), bool)
    if epsilon is not None:
        distance = linf if settings["norm"] == "linf" else l2
        within = distance <= epsilon * (1 + 1e-5) + 1e-5
    valid = np.any(adv.reshape(len(x), -1) != 0, axis=1)
    success = (predictions != y) & within & valid & np.all(np.isfinite(diff), axis=1)
    in_bounds = bool(np.all(adv >= -1e-6) and np.all(adv <= 1 + 1e-6))
    return {
        "psuc": float(success.mean()),
        "n_success": int(success.sum()),
        "mean_l2": float(l2[success].mean()) if success.any() else None,
        "max_linf": float(linf[success].max()) if success.any() else None,
        "in_bounds": in_bounds,
        "outside_epsilon": int((~within).sum()),
    }


def _error(exc: BaseException) -> str:
    """The exception's type and the last lines of its message (TF puts the cause at the end)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("File ")] or lines
    text = lines[-1] if lines else ""
    name = type(exc).__name__
    return (text if text.startswith(name) else f"{name}: {text}")[:400]


def _timed(runner: Runner, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    adv = runner(x, y)
    return time.perf_counter() - start, adv


def measure(
    group: list[Entry],
    net: Any,
    x: np.ndarray,
    y: np.ndarray,
    reps: int,
    log: Any,
    max_first_call: float = 300.0,
) -> None:
    """First call, then ``reps`` interleaved timed calls for the entries of one attack.

    An entry whose first call took more than ``max_first_call`` seconds (and that traces
    nothing) is not repeated: its first call is its time (``"time_from": "first call"``).
    """
    for entry in group:
        record: dict[str, Any] = {
            "attack": entry.attack,
            "library": entry.library,
            "note": entry.note,
            "peer_of": entry.peer_of,
        }
        entry.record = record
        try:
            entry.runner = entry.build()
            first, adv = _timed(entry.runner, x, y)
            record.update(status="ok", first_call_s=first, **metrics(net, x, y, adv, entry.attack))
            if first > max_first_call and entry.library not in ("tfsmooth",):
                record.update(times_s=[first], time_s=first, time_from="first call")
                entry.runner = None
        except Exception as exc:  # noqa: BLE001 - a failing peer is a result, not an error
            entry.runner = None
            record.update(status="failed", error=_error(exc))
        log(f"  {entry.attack:<10} {entry.library:<24} first call: {_short(record)}")
    times: list[list[float]] = [[] for _ in group]
    for _ in range(reps):
        for entry, entry_times in zip(group, times):
            if entry.runner is not None:
                entry_times.append(_timed(entry.runner, x, y)[0])
    for entry, entry_times in zip(group, times):
        if entry.runner is not None:
            entry.record["times_s"] = entry_times
            entry.record["time_s"] = statistics.median(entry_times)
            entry.record["time_from"] = f"median of {len(entry_times)}"
        if "time_s" in entry.record:
            log(f"  {entry.attack:<10} {entry.library:<24} time {entry.record['time_s']:.3f} s")
        entry.runner = None


def _short(record: dict[str, Any]) -> str:
    if record["status"] != "ok":
        return "FAILED " + record["error"][:120]
    l2 = record["mean_l2"]
    l2_text = "-" if l2 is None else f"{l2:.3f}"
    return f"{record['first_call_s']:.2f} s, Psuc {record['psuc']:.3f}, mean L2 {l2_text}"


def goals(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our time vs the fastest peer that runs each attack (computed, never set)."""
    out = []
    for attack in SETTINGS:
        ours = next(
            (r for r in records if r["attack"] == attack and r["library"] == "tfsmooth"), None
        )
        peers = [
            r
            for r in records
            if r["peer_of"] == attack and r["library"] != "tfsmooth" and r["status"] == "ok"
        ]
        if ours is None:
            out.append({"attack": attack, "met": False, "reason": "not run"})
            continue
        if ours["status"] != "ok" or "time_s" not in ours or not peers:
            out.append({"attack": attack, "met": False, "reason": "ours or every peer failed"})
            continue
        fastest = min(peers, key=lambda r: r["time_s"])
        speedup = fastest["time_s"] / ours["time_s"]
        psuc_same = ours["psuc"] >= fastest["psuc"] - PSUC_TOLERANCE
        l2_ratio = (
            ours["mean_l2"] / fastest["mean_l2"]
            if ours["mean_l2"] is not None and fastest["mean_l2"]
            else None
        )
        l2_ok = l2_ratio is not None and l2_ratio <= GOAL_L2_FACTOR
        out.append(
            {
                "attack": attack,
                "fastest_peer": fastest["library"],
                "speedup": speedup,
                "speedup_goal": GOAL_SPEEDUP,
                "speed_met": speedup >= GOAL_SPEEDUP,
                "psuc_ours": ours["psuc"],
                "psuc_peer": fastest["psuc"],
                "psuc_same": psuc_same,
                "l2_ratio": l2_ratio,
                "l2_met": l2_ok,
                "met": bool(speedup >= GOAL_SPEEDUP and psuc_same and l2_ok),
            }
        )
    return out


def profile(net: Any, x: np.ndarray, y: np.ndarray, reps: int = 5) -> list[str]:
    """Where our fixed-budget attacks spend a call, and what XLA would change (medians, ms)."""
    from tfsmooth import attacks
    from tfsmooth.models import Model

    model = Model(net, bounds=(0.0, 1.0), num_classes=10, name="c4")
    xt, yt = tf.constant(x), tf.constant(y)

    def median_ms(function: Callable[[], Any]) -> float:
        function()
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times)

    lines = []
    cases: list[tuple[str, Any, float]] = [
        ("FGSM", attacks.LinfFastGradientAttack(), 0.3),
        ("I-FGSM", attacks.LinfBasicIterativeAttack(steps=10, step_size=0.08), 0.3),
    ]
    for name, attack, epsilon in cases:
        prepared = attack._prepare(model, xt, yt)
        adversarial = attack._run_many(*prepared, [epsilon])[0]

        def call(a: Any = attack, e: float = epsilon) -> Any:
            return np.asarray(a(model, xt, yt, epsilons=e)[1])

        def prepare_only(a: Any = attack) -> Any:
            return a._prepare(model, xt, yt)

        def loop_only(a: Any = attack, p: Any = prepared, e: float = epsilon) -> Any:
            return np.asarray(a._run_many(*p, [e])[0])

        def success_only(a: Any = attack, p: Any = prepared, adv: Any = adversarial) -> Any:
            return np.asarray(a._success(p[0], p[2], adv))

        full, prepare = median_ms(call), median_ms(prepare_only)
        loop, success = median_ms(loop_only), median_ms(success_only)
        lines.append(
            f"{name}, {len(x)} images: full call {full:.1f} ms = compiled attack loop"
            f" {loop:.1f} ms + success check (one more forward pass, compiled) {success:.1f} ms +"
            f" validation and 1-image probe forward {prepare:.1f} ms (+ epsilon clipping)"
        )
    plain = attacks.LinfBasicIterativeAttack(steps=10, step_size=0.08)
    xla = attacks.LinfBasicIterativeAttack(steps=10, step_size=0.08, jit_compile=True)
    t_plain = median_ms(lambda: np.asarray(plain(model, xt, yt, epsilons=0.3)[1]))
    t_xla = median_ms(lambda: np.asarray(xla(model, xt, yt, epsilons=0.3)[1]))
    lines.append(
        f"I-FGSM with jit_compile=True (XLA): {t_xla:.1f} ms vs {t_plain:.1f} ms without"
        f" ({t_plain / t_xla:.2f}x)"
    )
    return lines


# -- report -------------------------------------------------------------------------------------
def _fmt(value: Any, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def render(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        "# Attacks: tfsmooth vs foolbox / ART / CleverHans",
        "",
        f"Machine: {machine['device']}, {machine['cpus']} CPUs, TensorFlow {machine['tensorflow']},"
        f" Keras {machine['keras']}; foolbox {machine.get('foolbox')}, ART {machine.get('art')},"
        f" CleverHans {machine.get('cleverhans')}; {result['date']},"
        f" 1-min load average {machine['load_average']:.1f} at start.",
        "",
        f"Model: C4 with the shipped 'mnist' weights. Images: the first {result['n_images']}"
        " correctly classified digits of the shipped MNIST test sample, one batch of all of them"
        " per call. Times: median of"
        f" {result['reps']} calls after a first full-batch call (the *first call* column, which"
        " includes tf.function tracing); calls of the libraries interleaved. *ratio*: the fastest"
        " peer's median time / ours (> 1: ours is faster).",
        "",
        "| attack | library | Psuc | mean L2 | time (s) | first call (s) | ratio | run | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    runs = result.get("merged_runs") or [result["date"]]
    if len(runs) > 1:
        legend = ", ".join(f"{i + 1}: finished {run}" for i, run in enumerate(runs))
        lines[-2:-2] = [
            f"Rows come from {len(runs)} runs on the same machine (column *run*; {legend});"
            " ratios compare rows of the same run.",
            "",
        ]

    def run_of(record: dict[str, Any]) -> int:
        run = record.get("run", runs[0])
        return runs.index(run) + 1 if run in runs else 1

    goal_by_attack = {g["attack"]: g for g in result["goals"]}
    for r in result["records"]:
        if r["status"] != "ok":
            error = r["error"].replace("|", "\\|")
            lines.append(
                f"| {r['attack']} | {r['library']} | - | - | - | - | - | {run_of(r)} |"
                f" failed: {error} |"
            )
            continue
        ratio = ""
        if r["library"] == "tfsmooth" and r["attack"] in goal_by_attack:
            speedup = goal_by_attack[r["attack"]].get("speedup")
            ratio = _fmt(speedup, "{:.2f}x")
        note = r["note"]
        if r["library"].startswith("cleverhans") and r["attack"] == "PGD2":
            note = (note + "; " if note else "") + CLEVERHANS_L2_NOTE
        if r.get("time_from") == "first call":
            note = (note + "; " if note else "") + "time = first call (too slow to repeat)"
        if r.get("outside_epsilon"):
            note = (note + "; " if note else "") + f"{r['outside_epsilon']} outside epsilon"
        lines.append(
            f"| {r['attack']} | {r['library']} | {r['psuc']:.3f} | {_fmt(r['mean_l2'])} |"
            f" {_fmt(r.get('time_s'))} | {r['first_call_s']:.3f} | {ratio} | {run_of(r)} |"
            f" {note} |"
        )
    lines += [
        "",
        f"Goal (computed): ours at least {GOAL_SPEEDUP:g}x faster than the fastest peer that runs"
        f" the attack, Psuc not lower by more than {PSUC_TOLERANCE:g}, mean L2 at most"
        f" {GOAL_L2_FACTOR:g}x the peer's.",
        "",
    ]
    for g in result["goals"]:
        if "speedup" not in g:
            lines.append(f"- {g['attack']}: NOT met ({g['reason']})")
            continue
        lines.append(
            f"- {g['attack']}: vs {g['fastest_peer']}: {g['speedup']:.2f}x"
            f" ({'met' if g['speed_met'] else 'NOT met'}), Psuc {g['psuc_ours']:.3f} vs"
            f" {g['psuc_peer']:.3f} ({'not lower' if g['psuc_same'] else 'lower'}), mean L2 ratio"
            f" {_fmt(g['l2_ratio'])} ({'met' if g['l2_met'] else 'NOT met'}) -> "
            f"{'met' if g['met'] else 'NOT met'}"
        )
    if result.get("profile"):
        lines += ["", "Profile:", ""] + [f"- {line}" for line in result["profile"]]
    return "\n".join(lines) + "\n"


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001
        return None


def machine_info() -> dict[str, Any]:
    import keras

    gpus = tf.config.list_physical_devices("GPU")
    return {
        "device": f"GPU ({gpus[0].name})" if gpus else "CPU only",
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "foolbox": _version("foolbox"),
        "art": _version("adversarial-robustness-toolbox"),
        "cleverhans": _version("cleverhans"),
        "load_average": os.getloadavg()[0],
    }


def load_data(net: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` correctly classified digits of the shipped test sample."""
    from tfsmooth.data.mnist import load_mnist

    data = load_mnist("test", source="package")
    predictions = np.argmax(np.asarray(net.predict(data.images, batch_size=500, verbose=0)), 1)
    correct = np.flatnonzero(predictions == data.labels)[:n]
    return data.images[correct], data.labels[correct]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 images, 1 repetition")
    parser.add_argument("--images", type=int, default=None, help="number of images (200)")
    parser.add_argument("--reps", type=int, default=None, help="timed calls per library (3)")
    parser.add_argument(
        "--attacks", default=None, help="comma-separated subset of: " + ", ".join(SETTINGS)
    )
    parser.add_argument(
        "--max-first-call",
        type=float,
        default=300.0,
        help="a peer whose first call takes longer is not repeated (its first call is its time)",
    )
    parser.add_argument(
        "--libraries", default=None, help="comma-separated subset of libraries (default: all)"
    )
    parser.add_argument(
        "--merge-into",
        default=None,
        help="replace the measured (attack, library) records in this JSON (same images), keep"
        " the others, recompute the goals and re-render",
    )
    parser.add_argument("--out", default=None, help="JSON output (default results/peers.json)")
    parser.add_argument("--render-only", default=None, help="re-render the table from a JSON")
    parser.add_argument(
        "--profile-into", default=None, help="only profile ours; add it to this JSON, re-render"
    )
    args = parser.parse_args(argv)

    if args.render_only:
        result = json.loads(pathlib.Path(args.render_only).read_text())
        pathlib.Path(args.render_only).with_suffix(".md").write_text(render(result))
        return 0

    from tfsmooth.models.zoo import mnist_c4

    if args.profile_into:
        path = pathlib.Path(args.profile_into)
        result = json.loads(path.read_text())
        net = mnist_c4("mnist")
        x, y = load_data(net, result["n_images"])
        result["profile"] = profile(net, x, y)
        path.write_text(json.dumps(result, indent=2) + "\n")
        path.with_suffix(".md").write_text(render(result))
        print(render(result))
        return 0

    n = args.images or (20 if args.quick else 200)
    reps = args.reps or (1 if args.quick else 3)
    out = pathlib.Path(args.out or RESULTS / ("peers_quick.json" if args.quick else "peers.json"))
    out.parent.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(message, flush=True)

    net = mnist_c4("mnist")
    x, y = load_data(net, n)
    log(f"{len(x)} images, {reps} repetitions")
    machine = machine_info()
    wanted = set(args.attacks.split(",")) if args.attacks else None
    libraries = set(args.libraries.split(",")) if args.libraries else None
    all_entries = entries(net, len(x))
    records: list[dict[str, Any]] = []
    groups: dict[str, list[Entry]] = {}  # extra rows are timed interleaved with their attack
    for entry in all_entries:
        key = base_attack(entry.attack)
        if (wanted is None or key in wanted) and (libraries is None or entry.library in libraries):
            groups.setdefault(key, []).append(entry)
    for key, group in groups.items():
        log(f"{key}:")
        measure(group, net, x, y, reps, log, args.max_first_call)
        records += [entry.record for entry in group]
    order = {(e.attack, e.library): i for i, e in enumerate(all_entries)}
    records.sort(key=lambda r: order[(r["attack"], r["library"])])
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "n_images": int(len(x)),
        "reps": reps,
        "settings": SETTINGS,
        "smoother": SMOOTHER,
        "records": records,
    }
    if args.merge_into:
        merged = json.loads(pathlib.Path(args.merge_into).read_text())
        if merged["n_images"] != result["n_images"]:
            raise ValueError(
                f"--merge-into: expected {result['n_images']} images, got {merged['n_images']}"
            )
        done = {(r["attack"], r["library"]) for r in records}
        kept = [r for r in merged["records"] if (r["attack"], r["library"]) not in done]
        for r in records:
            r["run"] = result["date"]
        for r in kept:
            r.setdefault("run", merged["date"])
        records = sorted(kept + records, key=lambda r: order[(r["attack"], r["library"])])
        runs = [run for run in merged.get("merged_runs", [merged["date"]]) if run]
        runs = [run for run in runs if any(r["run"] == run for r in kept)] + [result["date"]]
        result = {**merged, "records": records, "merged_runs": runs}
        out = pathlib.Path(args.merge_into)
    result["goals"] = goals(records)
    if not args.quick and wanted is None and libraries is None:
        result["profile"] = profile(net, x, y)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(result))
    log(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
