"""Shared fixtures: the default network (loaded once) and small models."""

from __future__ import annotations

import pytest
import torch

import convsight


@pytest.fixture(scope="session")
def lite0() -> convsight.Network:
    """The default ImageNet EfficientNet-Lite0 (treat as read-only: tests must not modify it)."""
    return convsight.load_model()


@pytest.fixture(scope="session")
def photos():
    return convsight.sample_images()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """Small forward passes run faster on one thread, above all on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
