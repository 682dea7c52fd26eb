"""Mining dataset examples: the top-k images of every unit of some layers, in one streaming pass.

>>> import convsight
>>> from convsight.mining import photo_folder
>>> photo_folder("photos", n=300)
>>> atlas = convsight.mine(convsight.load_model(), "photos", ["blocks.3", "blocks.10"], out="atlas")
>>> atlas.top("blocks.3", 0)[:2]

Modules: ``run`` (``mine``: checks its arguments and joins the pieces), ``data`` (image sources
and loader), ``checkpoint`` (atomic checkpoints and where a run starts: afresh, resumed or
finished), ``stream`` (the pass over the batches), ``reduce`` (per-channel maxima inside forward
hooks), ``topk`` (streaming top-k per channel), ``distributed`` (torchrun sharding and exact
merge), ``merge`` (the processes' results into an ``Atlas``), ``photos`` (a folder of real photos
for demos and tests). Pictures of an atlas are drawn by ``convsight.figures``.
"""

from .photos import photo_folder
from .run import mine
from .topk import TopK, channel_maxima

__all__ = ["mine", "photo_folder", "TopK", "channel_maxima"]
