"""``convsight samples``: the sample photos as JPEG files, for the examples of the docs.

    convsight samples -o .                      # chelsea.jpg (a cat), coffee.jpg, astronaut.jpg, ...
    convsight samples -o photos --crops 300     # + 300 random crops of them, a folder to mine
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("samples", help="write the sample photos (scikit-image's, offline) as JPEGs",
                       description="Write the real photos shipped with scikit-image (chelsea: a "
                                   "cat, coffee, astronaut, rocket, motorcycle) as NAME.jpg, the "
                                   "files the docs' examples name.")
    p.add_argument("-o", "--out", default=".", help="folder to write into (default: .)")
    p.add_argument("--crops", type=int, default=0, metavar="N",
                   help="also write N random crops of the photos into the folder, a dataset for "
                        "`convsight mine` (default 0: none)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import ConvsightError
    from ..images import sample_images
    from ..mining import photo_folder

    if args.crops < 0:
        raise ConvsightError(f"--crops must be 0 or more, got {args.crops}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for name, image in sample_images().items():
        image.save(out / f"{name}.jpg", quality=95)
        names.append(f"{name}.jpg")
    print(f"wrote {', '.join(names)} in {out.resolve()}")
    if args.crops:
        photo_folder(out, n=args.crops)
        print(f"wrote {args.crops} photo crops in {out.resolve()}")
    return 0
