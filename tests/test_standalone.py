"""The repository stands alone: the test suite reads nothing outside it (CI runs it in a
fresh clone with nothing beside it, see ``.ci/run``)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"\.\./shared|/\s*\"shared\"|parents\[[1-9]\]\.parent|/work/")


def test_no_test_reads_outside_the_repository():
    offenders = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in sorted((ROOT / "tests").rglob("*.py"))
        if p.name != Path(__file__).name
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not offenders, "tests reach outside the repository:\n" + "\n".join(offenders)


def test_the_official_reference_material_is_in_the_repository():
    ref = ROOT / "tests" / "data" / "reference"
    assert (ref / "vectors" / "A" / "generator.pth").is_file()
    assert (ref / "vectors" / "A" / "README.md").is_file()
    assert (ref / "LICENSE-idinvert.txt").read_text().startswith("Copyright (c) 2020")
    assert len(list((ref / "boundaries").glob("*/*.npy"))) == 14
