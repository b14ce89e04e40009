"""The README's tick plan and column tables, and docs/outputs.md, are generated from the code."""

from weishang.model.apps import docs
from weishang.model.columns import REGISTRY
from weishang.model.commerce import TICK_PLAN


def test_generated_docs_are_up_to_date():
    assert docs.main(["--check"]) == 0, "run: python -m weishang.model.apps.docs"


def test_readme_lists_every_step_and_outputs_doc_every_column():
    readme = (docs.ROOT / "README.md").read_text(encoding="utf-8")
    for mechanism in TICK_PLAN:
        assert f"| `{mechanism.name}` | {mechanism.engine} |" in readme
    reference = (docs.ROOT / "docs" / "outputs.md").read_text(encoding="utf-8")
    for table, columns in REGISTRY.items():
        for column in columns:
            prefix = column.name if not column.family else column.family.split("{x}")[0]
            assert f"`{prefix}" in reference, (table, column.name)


def test_readme_is_a_guide_whose_links_stay_in_the_repository():
    import re

    readme = (docs.ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) < 28_000  # a guide; the history lives in docs/
    for document in [docs.ROOT / "README.md", *sorted((docs.ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)", document.read_text(encoding="utf-8")):
            if target.startswith("http"):
                continue
            assert (document.parent / target).resolve().is_relative_to(docs.ROOT.resolve()), (document, target)
            assert (document.parent / target).exists(), (document, target)
