"""Generate src/flaxnets/assets/imagenet_classes.txt: the 1000 ImageNet-1k class names.

Source: the timm wheel (pytorch-image-models, Apache-2.0, by Ross Wightman and contributors),
files timm/data/_info/imagenet_synsets.txt (the 1000 synsets in class-id order, i.e. sorted)
and timm/data/_info/imagenet_synset_to_lemma.txt (WordNet lemmas). Only the wheel is read;
timm is neither installed nor imported.

    pip download timm==1.0.31 --no-deps -d /tmp/timm-wheel
    python tools/make_imagenet_classes.py /tmp/timm-wheel/timm-1.0.31-py3-none-any.whl

Output: one line per class id 0..999, "<synset>\t<lemmas>", e.g. "n01440764\ttench, Tinca tinca".
"""

from __future__ import annotations

import argparse
import pathlib
import zipfile

_OUT = pathlib.Path(__file__).resolve().parents[1] / "src/flaxnets/assets/imagenet_classes.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", help="path to a downloaded timm wheel")
    parser.add_argument("--out", default=str(_OUT))
    args = parser.parse_args()
    with zipfile.ZipFile(args.wheel) as wheel:
        synsets = wheel.read("timm/data/_info/imagenet_synsets.txt").decode().split()
        lemma_lines = wheel.read("timm/data/_info/imagenet_synset_to_lemma.txt").decode()
    lemmas = dict(line.split("\t", 1) for line in lemma_lines.splitlines() if line.strip())
    # Class ids are the positions in the sorted synset list (the ImageNet-1k convention).
    if len(synsets) != 1000 or synsets != sorted(synsets):
        raise SystemExit(f"expected 1000 sorted synsets, got {len(synsets)}")
    lines = [f"{s}\t{lemmas[s].strip()}" for s in synsets]
    pathlib.Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} classes to {args.out}")


if __name__ == "__main__":
    main()
