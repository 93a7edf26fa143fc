"""The library's layering: command lines on top, decoding and reporting
over the model's pieces, the data layer under all of them."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set:
    """The absolute module names a Python file imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def importers_of(prefix: str, places) -> list:
    """The Python files in ``places`` (files or folders under the root)
    that import ``prefix`` or a module under it."""
    paths = [p for place in places for p in ([ROOT / place] if (ROOT / place).is_file() else (ROOT / place).rglob("*.py"))]
    return sorted(
        str(path.relative_to(ROOT))
        for path in paths
        if any(name == prefix or name.startswith(prefix + ".") for name in imported_modules(path))
    )


def test_only_command_lines_import_command_lines():
    library = [p.relative_to(ROOT) for p in (ROOT / "espnet_mtsk").iterdir() if p.name != "bin"]
    assert importers_of("espnet_mtsk.bin", ["espnet_mtsk/cli.py"]) == []
    assert "espnet_mtsk/bin/transcribe.py" in importers_of("espnet_mtsk.decoding", ["espnet_mtsk/bin"])  # it sees imports
    assert importers_of("espnet_mtsk.bin", [p for p in library if p.suffix == ".py" or p.is_dir()] + ["local", "bench"]) == []


def test_the_data_layer_imports_neither_decoding_nor_reporting():
    for layer in ("espnet_mtsk.decoding", "espnet_mtsk.reporting"):
        assert importers_of(layer, ["espnet_mtsk/data", "espnet_mtsk/encoders", "espnet_mtsk/llm"]) == []


def test_the_top_level_is_small():
    modules = sorted(p.name for p in (ROOT / "espnet_mtsk").glob("*.py"))
    assert len(modules) <= 10, modules


def test_the_espnet_idiom_imports_the_decoder():
    from espnet_mtsk.bin.avsr_inference import AVSR2Text as from_cli
    from espnet_mtsk.decoding.avsr2text import AVSR2Text

    assert from_cli is AVSR2Text
