"""The README's maps are claims a reader relies on to find code in two steps: every path the
"Where things are" table names exists, and every rule in "Where the rules are" is defined last
in the file the table names."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MIGRATIONS = REPO / "supabase" / "migrations"


def section(title: str) -> str:
    readme = (REPO / "README.md").read_text()
    start = (
        readme.index(f"### {title}\n")
        if f"### {title}\n" in readme
        else readme.index(f"## {title}\n")
    )
    end = readme.find("\n#", start + 1)
    return readme[start:end]


def last_definition(function: str) -> str:
    pattern = re.compile(rf"function\s+(public|private|analytics)\.{function}\s*\(", re.IGNORECASE)
    files = sorted(
        path.name for path in MIGRATIONS.glob("*.sql") if pattern.search(path.read_text())
    )
    assert files, f"{function} is defined nowhere"
    return files[-1]


def test_every_rule_is_defined_last_where_the_readme_says() -> None:
    rows = [line for line in section("Where the rules are").splitlines() if line.startswith("| ")]
    checked = 0
    for row in rows[1:]:
        _, functions, files = (cell.strip() for cell in row.strip("|").split("|"))
        named = set(re.findall(r"`([^`]+\.sql)`", files))
        for function in re.findall(r"`([a-z_]+)`", functions):
            assert last_definition(function) in named, f"{function}: README names {named}"
            checked += 1
    assert checked >= 15


def test_every_path_in_the_layout_table_exists() -> None:
    rows = [line for line in section("Where things are").splitlines() if line.startswith("| ")]
    for row in rows[2:]:
        edge, migrations, tests = (cell for cell in row.strip("|").split("|")[1:4])
        folder = re.search(r"`([a-z_]+)/", edge)
        if folder:
            package = REPO / "api" / folder.group(1)
            assert package.is_dir(), row
            for module in re.findall(r"`([a-z_/]+\.py)`", edge):
                if "/" not in module:
                    assert (package / module).is_file() or any(package.rglob(module)), module
        for name in re.findall(r"`\*_([a-z_]+)\.sql`", migrations):
            assert list(MIGRATIONS.glob(f"*_{name}.sql")), name
        for folder_name in re.findall(r"`([a-z_]+)/`", tests):
            assert (REPO / "tests" / folder_name).is_dir(), folder_name
