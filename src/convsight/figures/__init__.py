"""Figures: pictures that need a model or an atlas, drawn with ``convsight.pictures``.

- ``attribution_figure``: rows of "image | gradient | guided backprop | deconvnet" per target
- ``layer_grid``, ``unit_figure``, ``PatchCutter``: an atlas's top patches (``Atlas.layer_grid``
  and ``Atlas.unit_figure`` call these); ``with_synthesis``: a unit's synthesis left of its
  patches; ``synthesis_facets``: a unit's stored synthesis copies side by side
- ``filter_grid``: a layer's weights as one picture

>>> img = convsight.figures.attribution_figure(net, "cat.jpg", ["class:281", "blocks.10:5"])
"""

from .atlas import (PatchCutter, atlas_html, default_tile, layer_grid, synthesis_facets,
                    unit_figure, with_synthesis)
from .attribution import attribution_figure
from .filters import filter_grid

__all__ = ["PatchCutter", "atlas_html", "attribution_figure", "default_tile", "filter_grid",
           "layer_grid", "synthesis_facets", "unit_figure", "with_synthesis"]
