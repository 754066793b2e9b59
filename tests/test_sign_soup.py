"""benchmarks/sign_soup.py: the majority of two equal nets against a third is those two, exactly."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from bcnn.engine.fast import run_fast
from bcnn.errors import BcnnError
from bcnn.randnet import random_images, random_net
from benchmark_scripts import load

sign_soup = load("sign_soup")


def test_the_majority_of_a_soup_wins_every_weight_and_threshold() -> None:
    rng = np.random.default_rng(7)
    a = random_net(rng)
    b = copy.deepcopy(a)
    for layer in b.layers:  # another net of the same line: some signs flipped, every threshold moved
        layer.weights = layer.weights ^ (rng.random(layer.weights.shape) < 0.2)
        if layer.thresholds is not None:
            layer.thresholds = layer.thresholds + rng.integers(1, 4, layer.thresholds.shape)
    b.output_bias = b.output_bias + 1.0
    images = random_images(rng, a, 50)
    for nets, winner in (([a, b, a], a), ([b, a, b], b)):
        soup = sign_soup.sign_soup(nets)
        for got, want in zip(soup.layers, winner.layers, strict=True):
            assert np.array_equal(got.weights, want.weights)
            assert want.thresholds is None or np.array_equal(got.thresholds, want.thresholds)
        assert np.array_equal(soup.output_bias, winner.output_bias)
        assert np.array_equal(run_fast(soup, images), run_fast(winner, images))
    assert not np.array_equal(run_fast(a, images), run_fast(b, images))  # the two differ: the test can fail


def test_a_soup_refuses_ties_and_opposite_thresholds() -> None:
    a = random_net(np.random.default_rng(8))
    with pytest.raises(BcnnError, match="odd number"):
        sign_soup.sign_soup([a, a])
    flipped = copy.deepcopy(a)
    flipped.layers[0].ge = ~flipped.layers[0].ge
    with pytest.raises(BcnnError, match="direction"):
        sign_soup.sign_soup([a, a, flipped])
