"""Adversarial attacks (foolbox-3 shape) and their smooth versions (Zhang et al. 2019).

Distortion targeting: :class:`LinfFastGradientAttack` (FGSM), :class:`L2FastGradientAttack`,
:class:`LinfBasicIterativeAttack` (I-FGSM), :class:`L2ProjectedGradientDescentAttack` (PGD2) and
:class:`SmoothL2PGD` (sPGD2). Optimality targeting: :class:`L2CarliniWagnerAttack` (C&W) and
:class:`SmoothCarliniWagnerL2` (sC&W). Every gradient attack accepts ``smoother=``.
"""

from tfsmooth.attacks.base import (
    Attack,
    AttackResult,
    FixedEpsilonAttack,
    MinimizationAttack,
    as_model,
)
from tfsmooth.attacks.carlini_wagner import (
    PARAMETRIZATIONS,
    CarliniWagnerInfo,
    L2CarliniWagnerAttack,
    SmoothCarliniWagnerL2,
)
from tfsmooth.attacks.criteria import (
    Criterion,
    Misclassification,
    TargetedMisclassification,
    as_criterion,
)
from tfsmooth.attacks.distances import Distance, L2Distance, LinfDistance, l2, linf
from tfsmooth.attacks.gradient import (
    L2FastGradientAttack,
    L2ProjectedGradientDescentAttack,
    LinfBasicIterativeAttack,
    LinfFastGradientAttack,
    SmoothL2PGD,
)
from tfsmooth.attacks.losses import attack_objective, margin_loss

__all__ = [
    "PARAMETRIZATIONS",
    "Attack",
    "AttackResult",
    "CarliniWagnerInfo",
    "Criterion",
    "Distance",
    "FixedEpsilonAttack",
    "L2CarliniWagnerAttack",
    "L2Distance",
    "L2FastGradientAttack",
    "L2ProjectedGradientDescentAttack",
    "LinfBasicIterativeAttack",
    "LinfDistance",
    "LinfFastGradientAttack",
    "MinimizationAttack",
    "Misclassification",
    "SmoothCarliniWagnerL2",
    "SmoothL2PGD",
    "TargetedMisclassification",
    "as_criterion",
    "as_model",
    "attack_objective",
    "l2",
    "linf",
    "margin_loss",
]
