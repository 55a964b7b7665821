"""Every table and value name of report.md and README.md can be found by
grep: it is spelled out in cifar_lib's source (issue 13, part 2)."""
from pathlib import Path

import pytest

from cifar_lib import report
from cifar_lib.profiles import get_profile
from cifar_lib.registry import TABLES
from cifar_lib.report import BLOCK, TEMPLATE
from cifar_lib.studies import classification

REPO = Path(__file__).resolve().parent.parent
SOURCE = "\n".join(p.read_text() for p in sorted((REPO / "cifar_lib").rglob("*.py")))


def block_names(path: Path) -> set[tuple[str, str]]:
    return {(m.group(1), m.group(2).split("@")[0]) for m in BLOCK.finditer(path.read_text())
            if m.group(1) in ("table", "value")}


@pytest.mark.parametrize("doc", [TEMPLATE, REPO / "README.md"])
def test_every_block_name_is_literal_in_the_code(doc):
    names = block_names(doc)
    assert names, doc
    missing = sorted(f"{kind}:{name}" for kind, name in names
                     if f'"{name}"' not in SOURCE and f"'{name}'" not in SOURCE)
    assert not missing, f"{doc} uses names the code only builds: {missing}"


@pytest.mark.parametrize("doc", [TEMPLATE, REPO / "README.md"])
def test_every_block_name_is_registered(doc, tmp_path):
    # a profile without results: every study still names all its values
    known = set(report.values(get_profile("smoke").with_(root=tmp_path)))
    for kind, name in block_names(doc):
        assert name in (TABLES if kind == "table" else known), f"{kind}:{name}"


def test_ablation_names_follow_the_ablations():
    assert list(classification.ABLATION_EXPERIMENTS) == [*classification.ABLATIONS, "stem"]
    assert all(v == f"ablation_{k}" for k, v in classification.ABLATION_EXPERIMENTS.items())
