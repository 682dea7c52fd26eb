"""Demo section: the cat, explained for its top class and a few units."""

from __future__ import annotations

import html
from pathlib import Path

import torch

from ..attribute import attribute
from ..attribute.registry import GRADCAM, GRADIENT, GUIDED, GUIDED_GRADCAM
from ..capture import capture, eval_mode
from ..figures import attribution_figure
from ..images import sample_images
from ..models import Network
from ..pictures import grid, label, render_attribution, save_png
from ..progress import ProgressArg
from ..targets import Target
from ..trust.similarity import absolute_map, spearman
from ..units import layer_names

STEP = "explaining the cat photo: gradient, guided backprop, Grad-CAM"


def _strong_units(net: Network, x: torch.Tensor, n_channels: int) -> list[Target]:
    """The most active channels of a middle and a late layer, and one neuron at its peak."""
    names = layer_names(net)
    blocks = [n for n in names if n.startswith("blocks.") and n.count(".") == 1]
    if not blocks:
        return []
    mid, late = blocks[len(blocks) // 3], blocks[(2 * len(blocks)) // 3]
    with capture(net.module, [mid, late]) as acts, torch.no_grad():
        net.module(x)
    units = []
    late_act = acts[late][0]
    for c in late_act.flatten(1).mean(1).topk(n_channels).indices.tolist():
        units.append(Target.unit(late, c))
    mid_act = acts[mid][0]
    c = int(mid_act.flatten(1).amax(1).argmax())
    y, xx = divmod(int(mid_act[c].argmax()), mid_act.shape[-1])
    units.append(Target.unit(mid, c, y, xx))
    return units


def _alike(net: Network, x: torch.Tensor, targets: list[Target | None], method: str) -> list[float]:
    """Rank correlation of the |map| of each target after the first with the first's map."""
    if len(targets) < 2:
        return []
    with torch.no_grad(), eval_mode(net.module):
        top = int(net.module(x).argmax(1)[0])
    named = [Target.class_score(top) if t is None else t for t in targets]
    maps = absolute_map(attribute(net, x.expand(len(named), *x.shape[1:]), named, method=method))
    flat = maps.flatten(1)
    return [float(spearman(flat[:1], flat[i:i + 1])[0]) for i in range(1, len(named))]


def _same_for_every_target(net: Network, x: torch.Tensor, targets: list[Target | None]) -> str:
    """The note under the figure: guided backprop draws the same picture for the class and for
    whole channels, with the correlations measured now (a neuron's map is local: left out)."""
    wide = [t for t in targets if t is None or not any(u.is_neuron for u in t.units)]
    guided, gradient = _alike(net, x, wide, GUIDED), _alike(net, x, wide, GRADIENT)
    if not guided:
        return ""
    pairs = ", ".join(f"{html.escape(str(t))} {g:.2f} (gradient {d:.2f})"
                      for t, g, d in zip(wide[1:], guided, gradient))
    alike = min(guided) >= 0.7
    head = ("Guided backprop draws nearly the same picture for the class and for each channel"
            if alike else "How alike guided backprop's pictures of the class and the channels are")
    why = (" This is a known property, not a bug: " if alike else " Expect them to be alike: ")
    return (f"<p class='note'><b>{head}</b> (rank correlation of its |map| with the top class's "
            f"map: {pairs}).{why}guided backprop (and deconvnet) mostly reconstruct the image's "
            "edges whatever the target (Nie, Zhang &amp; Patel 2018, <i>A Theoretical "
            "Explanation for Perplexing Behaviors of Backpropagation-based Visualizations</i>), "
            "and barely change when the network's top layers are replaced by random ones "
            "(Adebayo et al. 2018; see the next section). Read it as \"edges the network passes "
            "on\", not as the evidence for one class or unit. A single neuron's map (LAYER:C@Y,X) "
            "differs because it only covers the neuron's receptive field.</p>")


def _deconv_note(net: Network, x: torch.Tensor) -> str:
    """Why deconvnet is not drawn, with how alike its maps of two different photos are."""
    other = net.preprocess(sample_images()["coffee"]).to(net.device)
    maps = absolute_map(attribute(net, torch.cat([x, other]), method="deconv")).flatten(1)
    r = float(spearman(maps[:1], maps[1:])[0])
    return ("<p class='note'>Deconvnet (Zeiler &amp; Fergus 2014) is not shown: it ignores which "
            "rectifiers the forward pass switched off, so on a deep network its map of a class "
            "hardly depends on the photo (here the rank correlation of its |map| for the cat and "
            f"for the coffee photo, each for its top class, is {r:.2f}); <code>convsight "
            "attribute IMAGE --methods deconv</code> draws it.</p>")


def _more(net: Network, x: torch.Tensor, out: Path) -> str:
    """Grad-CAM over the photo and guided Grad-CAM (top class)."""
    cam = attribute(net, x, method=GRADCAM)[0]
    rgb01 = net.denormalize(x)[0].clamp(0, 1)
    tiles = [label(rgb01.permute(1, 2, 0).cpu().numpy(), "image"),
             label(render_attribution(cam, "heatmap", image=rgb01), "Grad-CAM"),
             label(render_attribution(attribute(net, x, method=GUIDED_GRADCAM)[0], "rgb"),
                   "guided Grad-CAM")]
    save_png(grid(tiles, ncols=len(tiles), pad=4), out / "attribution_cat_more.png")
    return ("<p class='note'>Top class again: Grad-CAM over the photo (which region the class "
            "score depends on, at the resolution of the last convolutional layer; Selvaraju et "
            "al. 2017), and guided Grad-CAM (guided backprop masked by it). Unlike guided "
            "backprop, Grad-CAM changes as soon as the classifier's weights do (next section). "
            "Saliency maps (|gradient|, with or without SmoothGrad) are left out: on the default "
            "model they are diffuse speckle (<code>convsight attribute IMAGE --methods "
            "smoothgrad</code> draws them).</p>"
            '<img src="attribution_cat_more.png" alt="Grad-CAM for the cat">')


def section(net: Network, out: Path, quick: bool, progress: ProgressArg = False) -> str:
    """Image | gradient | guided backprop for the cat's top class and a few units."""
    photo = sample_images()["chelsea"]
    x = net.preprocess(photo).to(net.device)
    targets = [None] + _strong_units(net, x, 1 if quick else 2)
    if quick:
        targets = targets[:2]
    fig = attribution_figure(net, x[0], targets, methods=[GRADIENT, GUIDED])
    save_png(fig, out / "attribution_cat.png")
    parts = ["<h2>What the network looks at: gradient and guided backprop</h2>",
             "<p class='note'>Each row explains one target on the cat photo: its top class, then "
             "units (LAYER:C is a channel's mean, LAYER:C@Y,X one neuron). Gradient: plain "
             "backpropagation; guided backprop also zeroes negative signals at every rectifier "
             "(Springenberg et al. 2015). Grey is zero; each picture is scaled on its own "
             "(99.5th percentile).</p>",
             '<img src="attribution_cat.png" alt="attribution figure for the cat">',
             _same_for_every_target(net, x, targets), _deconv_note(net, x)]
    if not quick:
        parts.append(_more(net, x, out))
    parts.append("<p class='note'>Targets: " + ", ".join(
        html.escape("top class" if t is None else str(t)) for t in targets) + "</p>")
    return "\n".join(parts)
