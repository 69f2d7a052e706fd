"""docs/faults.md: every row names a test, and every test it names exists (file and function)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "docs" / "faults.md"
# `tests/x/test_y.py::test_z`, `python/tests/test_y.py`, or fleet `test_y.py::test_z` (tests/fleet/).
NAMED = re.compile(r"(fleet )?`((?:python/)?(?:tests/(?:\w+/)*)?test_\w+\.py)(?:::(\w+))?`")


def rows() -> list[str]:
    lines = TABLE.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.startswith("| ") and not line.startswith(("| fault", "|---"))]


def test_every_row_names_a_test_that_exists() -> None:
    assert len(rows()) >= 20
    for row in rows():
        named = NAMED.findall(row)
        assert named, f"a row of docs/faults.md names no test: {row}"
        for fleet, path, function in named:
            file = REPO / "tests" / "fleet" / path if fleet else REPO / path
            assert file.is_file(), f"{row}: {file} does not exist"
            if function:
                assert re.search(rf"^def {function}\(", file.read_text(encoding="utf-8"), re.MULTILINE), (
                    f"{file} has no test {function}"
                )
