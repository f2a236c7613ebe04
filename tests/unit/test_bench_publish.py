"""A hand-run benchmark's section in bench/RESULTS.md: run again, it replaces itself."""

from __future__ import annotations

from bench.report import replace_section

RESULTS = "# Results\n\n## Fleet (issue 16)\n\nold table\n\nold notes\n\n## Plan cost (issue 14)\n\nkept\n"


def test_a_rerun_replaces_its_section_in_place_and_keeps_the_next() -> None:
    text = replace_section(RESULTS, "\n## Fleet (issue 16)\n\nnew table\n")
    assert text == "# Results\n\n## Fleet (issue 16)\n\nnew table\n\n## Plan cost (issue 14)\n\nkept\n"


def test_the_last_section_is_replaced_to_the_end() -> None:
    text = replace_section(RESULTS, "\n## Plan cost (issue 14)\n\nnew\n")
    assert text.endswith("old notes\n\n## Plan cost (issue 14)\n\nnew\n")
    assert text.count("## Plan cost") == 1


def test_a_new_heading_is_appended() -> None:
    assert replace_section(RESULTS, "\n## Startup\n\nnew\n") == RESULTS + "\n## Startup\n\nnew\n"
