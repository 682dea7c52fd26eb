"""Train a one-hidden-layer network on faces vs non-faces and save its hidden units as images.

    .venv/bin/python examples/faces.py face_units.png
"""

import sys

from convsight.faces import train_face_network
from convsight.figures import filter_grid
from convsight.pictures import save_png

result = train_face_network(hidden=16)
print(f"trained in {result.seconds:.1f} s: train accuracy {result.train_accuracy:.2f}, "
      f"test accuracy {result.test_accuracy:.2f}")
out = sys.argv[1] if len(sys.argv) > 1 else "face_units.png"
save_png(filter_grid(result.network, "hidden", scale=4), out)
print(f"hidden units written to {out}")
