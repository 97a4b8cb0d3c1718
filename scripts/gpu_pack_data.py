"""Copy part of a labeled folder (index.json format) for a GPU machine that cannot read
../shared/data, within the device tool's 64 MiB per call: the pictures a run uses, their
annotations, the ROI mask, and an index.json listing only them. Research-only data: the copy
goes to a git-excluded folder and never into the repository.

    python scripts/gpu_pack_data.py ../shared/data/mall .gpu/data/mall --keep 1-269,451-800:5 --keep 280-440:4

`--keep FRAMES:EVERY` keeps every EVERY-th picture of the frame ranges (as the recipes and
benchmarks thin them); several are unioned; none keeps every picture.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from crowdwatch.evaluation.labeled import ROI_MASK, open_folder, parse_ranges


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--keep", action="append", default=[], metavar="FRAMES:EVERY")
    args = p.parse_args()
    folder = open_folder(args.src)
    if args.keep:
        names: set[str] = set()
        for spec in args.keep:
            frames, _, every = spec.rpartition(":")
            if not frames or not every.isdigit() or int(every) < 1:
                raise SystemExit(f"--keep {spec!r}: use FRAMES:EVERY, e.g. 1-269,451-800:5")
            names |= {it.name for it in folder.select(parse_ranges(frames))[:: int(every)]}
    else:
        names = {it.name for it in folder.items}
    index = json.loads((args.src / "index.json").read_text())
    kept = [e for e in index["items"] if Path(e["image"]).stem in names]
    if args.dst.exists():
        shutil.rmtree(args.dst)
    for entry in kept:
        for key in ("image", "annotation"):
            target = args.dst / entry[key]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(args.src / entry[key], target)
    if (args.src / ROI_MASK).is_file():
        shutil.copyfile(args.src / ROI_MASK, args.dst / ROI_MASK)
    index["items"] = kept
    (args.dst / "index.json").write_text(json.dumps(index))
    print(f"{len(kept)} of {len(folder.items)} pictures -> {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
