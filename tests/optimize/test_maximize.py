"""convsight.maximize: objectives rise for every target kind and preset, exact steps on linear
models, determinism, batching, frames, errors, and the command line."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

import convsight
from convsight.cli import main
from convsight.optimize import PRESETS, settings_for

from ..untouched import untouched

KINDS = ["class:130", "prob:130", "blocks.10:5", "blocks.10:5@1,1", "class:130 + 0.5*blocks.5:3"]


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_objective_rises_within_a_few_steps_for_every_target_kind(lite0, preset):
    # 15 steps at 48 px; lucid without its upsampling to 224 px, to keep the test fast
    steps, size = 15, 48
    extra = dict(upsample=False) if preset == "lucid" else {}
    with untouched(lite0.module):
        out = convsight.maximize(lite0, KINDS, preset=preset, steps=steps, size=size,
                                 progress=False, **extra)
    assert out.images.shape == (len(KINDS), 3, size, size)
    assert out.trace.shape == (steps, len(KINDS))
    assert 0 <= float(out.images.min()) and float(out.images.max()) <= 1
    # regularizers and random transforms make single steps noisy: compare first and last 3 steps
    first, last = out.trace[:3].mean(0), out.trace[-3:].mean(0)
    for kind, a, b in zip(KINDS, first, last):
        if preset == "yosinski-4" and kind.startswith("prob:"):
            # KNOWN LIMITATION (docs/maximize.md): lr = 0.03 / ||d p / d x||^2 is far beyond the
            # first-order range while p ~ 1e-3, and 90 % of pixels are zeroed each step: p jumps
            # around instead of rising. Checked separately below on the logit (class:130).
            continue
        assert b > a, f"{preset}: {kind} went from {float(a):.4g} to {float(b):.4g}"


class Linear(nn.Module):
    """objective = <w, x>: the exact gradient is w, the exact gain of a step is lr * ||w||^2."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 8 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _linear_net() -> convsight.Network:
    return convsight.Network(Linear(), mean=(0.5,) * 3, std=(0.25,) * 3, input_size=8)


def test_constant_step_on_a_linear_model_gains_lr_times_squared_gradient():
    net = _linear_net()
    w = net.module.fc.weight[1].detach().view(3, 8, 8)
    grad = w / (255 * 0.25)   # d logit / d pixel, pixels in 0..255 units around the mean
    out = convsight.maximize(net, "class:1", preset="none", steps=3, lr=5000.0, clip=False, progress=False)
    gains = out.trace[1:, 0] - out.trace[:-1, 0]
    expected = 5000.0 * float((grad ** 2).sum())
    assert torch.allclose(gains, torch.full_like(gains, expected), rtol=1e-4)


def test_progress_rule_gains_exactly_the_requested_progress_on_a_linear_model():
    for kw, gain in ((dict(preset="yosinski-1"), 2.0), (dict(preset="none", lr_rule="progress",
                                                              desired_progress=0.75), 0.75)):
        out = convsight.maximize(_linear_net(), "class:1", steps=4, lr=1e9, n_pct=0, blur_radius=0,
                                 clip=False, progress=False, **kw)
        gains = out.trace[1:, 0] - out.trace[:-1, 0]
        assert torch.allclose(gains, torch.full_like(gains, gain), rtol=1e-4)


def test_simonyan_starts_from_the_mean_image_and_l2_pulls_back():
    net = _linear_net()
    one = convsight.maximize(net, "class:1", preset="simonyan", steps=1, progress=False)
    assert torch.equal(one.images, torch.full((1, 3, 8, 8), 0.5))
    # with a huge penalty the fixed point x = grad / (2 * l2) is reached in one step of lr 1/(2 l2)
    l2 = 10.0
    w = net.module.fc.weight[1].detach().view(1, 3, 8, 8) / (255 * 0.25)
    out = convsight.maximize(net, "class:1", preset="simonyan", steps=3, lr=1 / (2 * l2), l2=l2,
                             clip=False, progress=False)
    assert torch.allclose(out.images, 0.5 + w / (2 * l2) / 255, atol=1e-6)


def test_same_seed_same_images_other_seed_other_images(lite0):
    kw = dict(steps=3, size=48, progress=False)
    for preset in ("yosinski-1", "lucid"):
        a = convsight.maximize(lite0, "blocks.6:1", preset=preset, seed=3, **kw)
        b = convsight.maximize(lite0, "blocks.6:1", preset=preset, seed=3, **kw)
        c = convsight.maximize(lite0, "blocks.6:1", preset=preset, seed=4, **kw)
        assert torch.equal(a.images, b.images) and torch.equal(a.trace, b.trace)
        assert not torch.equal(a.images, c.images)


def test_a_batch_of_targets_matches_optimising_each_alone(lite0):
    kw = dict(preset="yosinski-1", steps=4, size=48, progress=False)
    both = convsight.maximize(lite0, ["blocks.6:1", "class:2"], **kw)
    alone = convsight.maximize(lite0, "blocks.6:1", **kw)
    assert torch.allclose(both.images[0], alone.images[0], atol=1e-3)
    assert torch.allclose(both.trace[:, 0], alone.trace[:, 0], rtol=1e-3, atol=1e-4)
    assert [str(t) for t in both.targets] == ["blocks.6:1", "class:2"]


def test_parameters_keep_requires_grad_and_get_no_grad(lite0):
    module = lite0.module
    assert all(p.requires_grad and p.grad is None for p in module.parameters())
    with untouched(module):
        convsight.maximize(module, "class:1", steps=2, size=32, progress=False)
    assert all(p.grad is None for p in module.parameters())


def test_frames_every_k_steps_and_the_end(lite0):
    out = convsight.maximize(lite0, ["class:1", "class:2"], steps=5, size=32, every=2, progress=False)
    assert len(out.frames) == 3 and out.frame_steps == [0, 2, 4]  # step 4 is the result
    assert all(f.shape == (2, 3, 32, 32) for f in out.frames)
    assert torch.equal(out.frames[-1], out.images)
    six = convsight.maximize(lite0, "class:1", steps=6, size=32, every=2, progress=False)
    assert six.frame_steps == [0, 2, 4, 5] and torch.equal(six.frames[-1], six.images)
    assert not torch.equal(six.frames[0], six.frames[1])
    assert convsight.maximize(lite0, "class:1", steps=2, size=32, progress=False).frames is None


def test_knobs_override_presets_one_at_a_time():
    s = settings_for("yosinski-3", blur_radius=0.5)
    assert (s.blur_radius, s.blur_every, s.decay, s.steps, s.lr) == (0.5, 4, 0.0001, 1000, 100.0)
    table = {"yosinski-1": (0, 0.5, 4, 50, 0, 500, "progress", 100.0),
             "yosinski-2": (0.3, 0, 0, 20, 0, 750, "constant", 100.0),
             "yosinski-3": (0.0001, 1.0, 4, 0, 0, 1000, "constant", 100.0),
             "yosinski-4": (0, 0.5, 4, 0, 90, 1000, "progress", 1e8)}
    for name, row in table.items():
        p = PRESETS[name]
        assert (p.decay, p.blur_radius, p.blur_every, p.n_pct, p.c_pct, p.steps, p.lr_rule, p.lr) == row
        assert p.init == "noise" and p.init_sd == 10.0 and p.optimizer == "sgd"
    lucid = PRESETS["lucid"]
    assert (lucid.parameterization, lucid.optimizer, lucid.lr, lucid.steps, lucid.size) == \
        ("fourier", "adam", 0.05, 512, 128)


@pytest.mark.parametrize("kwargs, match", [
    (dict(preset="yosinsky-3"), "yosinski-3"),
    (dict(blur_radios=1.0), "blur_radius"),
    (dict(steps=0), "steps"),
    (dict(n_pct=100), "n_pct"),
    (dict(preset="lucid", blur_radius=1.0), "pixel"),
    (dict(every=0), "every"),
    (dict(optimizer="lbfgs"), "sgd, adam"),
])
def test_bad_settings_name_the_problem(lite0, kwargs, match):
    with pytest.raises(convsight.ConvsightError, match=match):
        convsight.maximize(lite0, "class:1", size=32, progress=False, **kwargs)


@pytest.mark.parametrize("target, error", [
    ("blocks.99:1", convsight.UnknownLayerError),
    ("blocks.3:999", convsight.UnitError),
    ("class:5000", convsight.UnitError),
    ([], convsight.UnitError),
])
def test_bad_targets_raise_clear_errors_and_leave_no_hooks(lite0, target, error):
    with untouched(lite0.module):
        with pytest.raises(error):
            convsight.maximize(lite0, target, steps=2, size=32, progress=False)


def test_cli_writes_image_frames_and_gif(tmp_path, capsys):
    out = tmp_path / "flamingo.png"
    rc = main(["maximize", "--target", "class:130", "--preset", "yosinski-3", "--steps", "3",
               "--size", "40", "--every", "1", "--set", "blur_radius=0.5", "-o", str(out)])
    assert rc == 0
    assert Image.open(out).size == (40, 40)
    assert len(list((tmp_path / "flamingo_frames").glob("step_*.png"))) == 3
    gif = Image.open(tmp_path / "flamingo.gif")
    assert gif.n_frames == 3
    assert "class:130" in capsys.readouterr().out


def test_cli_bad_knob_is_one_line_error(tmp_path, capsys):
    rc = main(["maximize", "--target", "class:1", "--set", "blur=2", "-o", str(tmp_path / "x.png")])
    assert rc == 2
    assert "blur_radius" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_section_quick_writes_its_pictures(lite0, tmp_path):
    from convsight.demo.synthesis import section as syntheses

    with untouched(lite0.module):
        fragment = syntheses(lite0, tmp_path, quick=True)
    assert 'src="maximize_classes.png"' in fragment and "maximize_presets.png" not in fragment
    assert "contrast-stretched" in fragment and "40 steps at 80 px" in fragment
    assert "smoother in their own way" not in fragment
    classes = Image.open(tmp_path / "maximize_classes.png")
    assert classes.width > 5 * 80


def test_demo_plain_ascent_beside_the_default_preset(lite0, tmp_path):
    from convsight.demo.synthesis import PIXEL_PRESETS, _compare, _plain_note

    images, probs = _compare(lite0, 130, steps=2, size=32, progress=False)
    assert len(images) == len(probs) == len(PIXEL_PRESETS) and images[0].shape == (3, 32, 32)
    assert all(0 <= p <= 1 for p in probs)
    # the note says what the run measured: a sure network, or a low p after few steps
    assert "gives it p=0.97, yet it is high-frequency noise" in _plain_note("flamingo", 0.97)
    assert "reached p=0.03 in these few steps" in _plain_note("flamingo", 0.03)
    assert "Nguyen" in _plain_note("flamingo", 0.5)


def test_progress_rules_by_hand():
    from convsight.optimize.ascent import _progress_lr

    g = torch.zeros(3, 3, 2, 2)
    g[:, 0, 0, 0] = 2.0                        # ||g||^2 = 4 for each image
    g[2] = 0                                   # no gradient: the cap is used
    values = torch.tensor([5.0, 0.9, 0.5])
    is_prob = torch.tensor([False, True, False]).view(-1, 1, 1, 1)
    s = settings_for("yosinski-4")             # progress 2.0, cap 1e8, softmax rule progress01
    lr = _progress_lr(g, values, is_prob, s).flatten()
    # image 0: 2 / 4; image 1 (a probability at 0.9): min(0.03, 0.1 * 0.1) / 4; image 2: the cap
    assert torch.allclose(lr, torch.tensor([0.5, 0.0025, 1e8], dtype=lr.dtype))
    lr = _progress_lr(g, values, is_prob, s.replace(softmax_rule="progress")).flatten()
    assert torch.allclose(lr[:2], torch.tensor([0.5, 0.5], dtype=lr.dtype))
    lr = _progress_lr(g, values, is_prob, settings_for("yosinski-1")).flatten()
    assert float(lr[0]) == 0.5 and float(lr[2]) == 100.0
