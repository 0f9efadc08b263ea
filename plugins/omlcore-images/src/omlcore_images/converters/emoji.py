"""Emoji across vendors, from the npm packages ``emoji-datasource-<vendor>``.

A class is one emoji (base emoji only, no skin-tone variants); its samples are the vendors' drawings of
it. Fetch and unpack the packages (each unpacks into ``package/``)::

    npm pack emoji-datasource-google emoji-datasource-twitter
    mkdir -p emoji/google emoji/twitter
    tar xzf emoji-datasource-google-*.tgz -C emoji/google
    tar xzf emoji-datasource-twitter-*.tgz -C emoji/twitter

``src`` may hold ``package/`` itself (packages unpacked over each other) or one folder per package.
Images are ``package/img/<vendor>/64/<image>``; the class list is ``package/emoji.json``. Classes with an
image from the query vendor and from at least one other vendor are sorted by code point, shuffled with
``seed`` and split in halves: the first half trains (every vendor's image is a sample), the second
validates, with the query vendor's image as the query and the other vendors' images as its gallery.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from omlcore_images.converters._common import ConversionResult, finish, relative_to
from omlcore_images.errors import ConversionError

__all__ = ["convert_emoji", "find_vendors"]

SIZE = "64"


def _packages(src: Path) -> list[Path]:
    candidates = [src / "package", src, *sorted(d / "package" for d in src.iterdir() if d.is_dir())]
    return [p for p in candidates if (p / "emoji.json").is_file() and (p / "img").is_dir()]


def find_vendors(src: Path) -> tuple[dict[str, Path], Path]:
    """``({vendor: image folder}, emoji.json)`` found under ``src``."""
    if not src.is_dir():
        raise ConversionError(f"the source folder {src} does not exist")
    packages = _packages(src)
    if not packages:
        raise ConversionError(
            f"no unpacked emoji-datasource package under {src}: expected package/emoji.json and "
            f"package/img/<vendor>/{SIZE}/ (fetch with `npm pack emoji-datasource-google emoji-datasource-twitter` "
            f"and unpack the .tgz files)"
        )
    vendors: dict[str, Path] = {}
    for pkg in packages:
        for vdir in sorted((pkg / "img").iterdir()):
            if (vdir / SIZE).is_dir():
                vendors.setdefault(vdir.name, vdir / SIZE)
    return vendors, packages[0] / "emoji.json"


def convert_emoji(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    seed: int = 0,
    query_vendor: str = "twitter",
    csv_name: str = "df.csv",
) -> ConversionResult:
    """Write ``dst/csv_name`` for the emoji packages unpacked in ``src`` (see the module docs)."""
    source, out = Path(src), Path(dst)
    vendors, index = find_vendors(source)
    if query_vendor not in vendors:
        raise ConversionError(
            f"no images of the query vendor {query_vendor!r} under {source}; found: {', '.join(vendors) or 'none'}"
        )
    if len(vendors) < 2:
        raise ConversionError(
            f"only the vendor {query_vendor!r} is present under {source}: the gallery needs another vendor"
        )
    try:
        entries = json.loads(index.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{index} is not valid JSON: {exc}") from exc
    others = [v for v in vendors if v != query_vendor]
    classes: list[tuple[str, str, dict[str, Path]]] = []
    for entry in entries:
        images = {v: vendors[v] / entry["image"] for v in vendors if (vendors[v] / entry["image"]).is_file()}
        if query_vendor in images and any(v in images for v in others):
            classes.append((entry["unified"], entry.get("category") or "Other", images))
    if len(classes) < 2:
        raise ConversionError(f"fewer than 2 emoji have images from {query_vendor!r} and another vendor under {source}")
    classes.sort(key=lambda c: c[0])
    order = list(range(len(classes)))
    random.Random(seed).shuffle(order)
    n_train = len(classes) // 2
    train_ids = set(order[:n_train])
    rows: list[dict[str, Any]] = []
    for label, (unified, category, images) in enumerate(classes):
        for vendor in sorted(images):
            row: dict[str, Any] = {"label": label, "path": relative_to(out, images[vendor])}
            if label in train_ids:
                row |= {"split": "train", "is_query": None, "is_gallery": None}
            else:
                query = vendor == query_vendor
                row |= {"split": "validation", "is_query": query, "is_gallery": not query}
            row |= {"category": category, "unified": unified, "vendor": vendor}
            rows.append(row)
    notes = (
        f"vendors: {', '.join(sorted(vendors))}; queries from {query_vendor}; seed {seed}; {len(classes)} classes",
    )
    return finish("emoji", rows, out, csv_name, notes)
