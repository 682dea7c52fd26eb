"""Pictures: arrays, tensors and PIL images in, pictures out. Nothing here runs a model.

- ``canvas``: value scaling, grids of tiles, captions, colour maps, PNG/JPEG encoding
- ``attribution``: attribution maps drawn as signed, saliency, RGB or heat-map pictures
- ``patches``: boxes cut from images, square tiles, a unit's montage of top patches
- ``maps``: a layer's activation maps as one picture
- ``display``: anything image-like as a ``Picture`` (a NumPy array that notebooks display), ``show``
- ``charts``: line charts (deletion and insertion curves), tables of scores as pictures

Pictures that need a model or an atlas (a layer's grid of top patches, the attribution figure,
filter grids) live one floor up, in ``convsight.figures``.

>>> from convsight.pictures import grid, label, save_png
>>> save_png(grid([label(a, "a"), label(b, "b")], ncols=2), "ab.png")
"""

from .attribution import KINDS, render_attribution
from .canvas import (Picture, as_float, as_pil, diverging, grid, jpeg_bytes, label, minmax_scale,
                     png_bytes, save_png, symmetric_scale, to_numpy_image, to_uint8, upscale)
from .display import as_picture, image_grid, show
from .charts import line_chart, table_picture
from .maps import MapGrid, activation_montage, montage_columns
from .patches import crop, draw_box, fit_square, patch_montage

__all__ = ["KINDS", "render_attribution", "Picture", "as_float", "as_pil", "diverging", "grid",
           "jpeg_bytes", "label", "minmax_scale", "png_bytes", "save_png", "symmetric_scale",
           "to_numpy_image", "to_uint8", "upscale", "as_picture", "image_grid", "show", "MapGrid",
           "activation_montage", "montage_columns", "crop", "draw_box", "fit_square", "patch_montage",
           "line_chart", "table_picture"]
