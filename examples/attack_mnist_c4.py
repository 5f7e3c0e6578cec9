"""The paper's MNIST attacks (Table 1 settings) on a few digits with the bundled C4 network.

Uses the MNIST sample shipped with tfsmooth and the trained C4 weights
(:mod:`tfsmooth.models.zoo`). Budgets are cut down (16 digits, few C&W steps) so that it runs
in well under a minute on a laptop CPU; ``tfsmooth reproduce mnist`` runs the full protocol.

    python examples/attack_mnist_c4.py [--adversarially-trained]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfsmooth.attacks import (  # noqa: E402
    L2CarliniWagnerAttack,
    L2ProjectedGradientDescentAttack,
    LinfBasicIterativeAttack,
    LinfFastGradientAttack,
    SmoothCarliniWagnerL2,
    SmoothL2PGD,
    l2,
)
from tfsmooth.data.mnist import load_mnist  # noqa: E402
from tfsmooth.models.zoo import mnist_c4_model  # noqa: E402
from tfsmooth.smoothing import Smoother  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adversarially-trained", action="store_true")
    parser.add_argument("--count", type=int, default=16)
    args = parser.parse_args()

    model = mnist_c4_model("mnist-adv" if args.adversarially_trained else "mnist")
    data = load_mnist("test", limit=4 * args.count)
    images, labels = tf.constant(data.images), tf.constant(data.labels)
    correct = model.predict(images).numpy() == data.labels
    images = tf.boolean_mask(images, correct)[: args.count]
    labels = tf.boolean_mask(labels, correct)[: args.count]
    print(f"{model.name}: {int(images.shape[0])} correctly classified digits ({data.source})")

    smoother = Smoother(0.95, solver="exact")  # the paper's MNIST smoothing
    distortions = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # PGD2 / sPGD2 target distortions
    cw = {"binary_search_steps": 2, "steps": 100, "confidence": 1.0, "initial_const": 15.0}
    attacks = {
        "FGSM": (LinfFastGradientAttack(), 0.3),
        "I-FGSM": (LinfBasicIterativeAttack(steps=10, step_size=0.08), 0.3),
        "PGD2": (L2ProjectedGradientDescentAttack(steps=20, rel_stepsize=0.1), distortions),
        "C&W": (L2CarliniWagnerAttack(learning_rate=0.1, **cw), None),
        "sPGD2": (SmoothL2PGD(steps=20, rel_stepsize=0.1, smoother=smoother), distortions),
        "sC&W": (SmoothCarliniWagnerL2(smoother=smoother, **cw), None),
    }
    print(f"{'attack':7s} {'Psuc':>5s} {'D':>6s} {'time':>6s}")
    for name, (attack, epsilons) in attacks.items():
        start = time.perf_counter()
        _, clipped, success = attack(model, images, labels, epsilons=epsilons)
        elapsed = time.perf_counter() - start
        clipped = clipped if isinstance(clipped, list) else [clipped]
        # paper §5.1: success if any run succeeds; D = the smallest successful distortion
        dist = np.stack([l2(images, c).numpy() for c in clipped])
        dist = np.where(success.numpy(), dist, np.inf).min(axis=0)
        ok = np.isfinite(dist)
        mean_d = dist[ok].mean() if ok.any() else float("nan")
        print(f"{name:7s} {ok.mean():5.2f} {mean_d:6.2f} {elapsed:5.1f}s")


if __name__ == "__main__":
    main()
