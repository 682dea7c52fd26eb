"""maximize(copies=K, diversity=w): K images per target, target-major, pushed apart at a layer
(Olah et al. 2017): the copies' Gram matrices are less alike than without the penalty."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import convsight
from convsight.capture import capture
from convsight.optimize.diversity import gram_similarity

from ..tinynets import tiny_net
from ..untouched import untouched

KW = dict(preset="lucid", steps=40, size=32, upsample=False, progress=False, seed=3)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny passes: 1 thread is far faster

def _net() -> convsight.Network:
    return convsight.Network(tiny_net(), input_size=(32, 32))


def _gram_cosines(net, images: torch.Tensor, layer: str, copies: int) -> np.ndarray:
    """Independent oracle (NumPy): per target, the mean cosine of its copies' Gram matrices."""
    with capture(net.module, [layer]) as acts, torch.no_grad():
        net.module(net.normalize(images))
    a = acts[layer].double().numpy()
    out = []
    for t in range(a.shape[0] // copies):
        grams = []
        for k in range(copies):
            f = a[t * copies + k].reshape(a.shape[1], -1)
            g = (f @ f.T).ravel()
            grams.append(g / np.linalg.norm(g))
        pairs = [grams[i] @ grams[j] for i in range(copies) for j in range(copies) if i != j]
        out.append(np.mean(pairs))
    return np.array(out)


def test_copies_are_target_major_and_differ():
    net = _net()
    with untouched(net.module):
        out = convsight.maximize(net, ["conv3:1", "class:2"], copies=3, **KW)
    assert out.images.shape == (6, 3, 32, 32) and out.trace.shape == (40, 6) and out.copies == 3
    assert [str(t) for t in out.targets] == ["conv3:1"] * 3 + ["class:2"] * 3
    assert not torch.equal(out.images[0], out.images[1])
    # without diversity (and without random transforms, whose draws follow the batch's start)
    # copies are independent runs: the first copy is the image a single-copy run gives
    pixel = dict(preset="yosinski-1", steps=5, size=32, progress=False)
    three = convsight.maximize(net, "conv3:1", copies=3, **pixel)
    alone = convsight.maximize(net, "conv3:1", **pixel)
    assert torch.allclose(three.images[0], alone.images[0], atol=1e-5)


def test_diversity_reduces_the_copies_similarity_at_the_layer():
    net = _net()
    targets = ["conv3:1", "conv3:7"]
    with untouched(net.module):
        plain = convsight.maximize(net, targets, copies=3, diversity=0.0, **KW)
        diverse = convsight.maximize(net, targets, copies=3, diversity=5.0, diversity_layer="conv2",
                                     **KW)
    before = _gram_cosines(net, plain.images, "conv2", 3)
    after = _gram_cosines(net, diverse.images, "conv2", 3)
    assert np.all(after < before - 0.02), (before, after)
    # the penalty's own measure agrees with the oracle (sum over ordered pairs / K)
    with capture(net.module, ["conv2"]) as acts, torch.no_grad():
        net.module(net.normalize(diverse.images))
    assert np.allclose(gram_similarity(acts["conv2"].double(), 3).numpy() / 2, after, atol=1e-6)


def test_diversity_defaults_to_the_targets_layer_and_needs_one_for_classes():
    net = _net()
    plain = convsight.maximize(net, "conv3:4", copies=2, **KW)
    diverse = convsight.maximize(net, "conv3:4", copies=2, diversity=5.0, **KW)
    assert _gram_cosines(net, diverse.images, "conv3", 2) < _gram_cosines(net, plain.images, "conv3", 2)
    with pytest.raises(convsight.ConvsightError, match="diversity_layer"):
        convsight.maximize(net, "class:1", copies=2, diversity=1.0, **KW)
    for bad in (dict(copies=0), dict(copies=2.5), dict(diversity=-1.0)):
        with pytest.raises(convsight.ConvsightError, match="is not valid"):
            convsight.maximize(net, "conv3:4", **{**KW, **bad})
    with pytest.raises(convsight.UnknownLayerError):
        convsight.maximize(net, "conv3:4", copies=2, diversity=1.0, diversity_layer="conv9", **KW)
