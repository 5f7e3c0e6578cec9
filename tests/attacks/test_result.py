"""AttackResult: a 3-tuple (raw, clipped, success) carrying the predictions on the adversarials."""

import numpy as np
import tensorflow as tf

from tests.attacks.toy import blob_images, tiny_net
from tfsmooth.attacks import AttackResult, L2CarliniWagnerAttack, LinfFastGradientAttack


def test_predicted_are_the_models_labels_on_clipped():
    net = tiny_net()
    images = tf.constant(blob_images())
    labels = tf.argmax(net(images), axis=1)
    cases = [
        (LinfFastGradientAttack(), [0.01, 0.1]),
        (LinfFastGradientAttack(), 0.1),
        (L2CarliniWagnerAttack(binary_search_steps=1, steps=5), [None, 0.5]),
    ]
    for attack, eps in cases:
        result = attack(net, images, labels, epsilons=eps)
        raw, clipped, success = result  # unpacks as a 3-tuple
        assert len(result) == 3 and isinstance(result, tuple)
        clipped = clipped if isinstance(clipped, list) else [clipped]
        expected = np.stack([np.argmax(net(c), axis=1) for c in clipped])
        assert result.predicted.dtype == tf.int64
        np.testing.assert_array_equal(result.predicted.numpy(), expected)
        np.testing.assert_array_equal(success.numpy(), expected != labels.numpy()[None])
    plain = AttackResult(images, images, tf.zeros([1, 8], bool))
    assert plain.predicted is None and plain._replace(raw=None).predicted is None
