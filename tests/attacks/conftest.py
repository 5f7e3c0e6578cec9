"""Fixtures of the attack tests."""

import pytest

from tests.attacks.toy import toy_setup


@pytest.fixture(scope="module")
def setup():
    """A tiny conv net, blob images and the net's own predictions as labels."""
    return toy_setup()
