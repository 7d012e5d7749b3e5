"""The package's layers: every module imports only from its own layer or the layers below it,
and no two modules import each other, directly or round a loop.

Read from the source with ``ast`` (imports inside functions and ``TYPE_CHECKING`` blocks
included: a lazy import is still a dependency), so nothing is imported to check it. The
layers are drawn in docs/architecture.md.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"

#: Lowest first. A module belongs to the first layer naming its subpackage or itself (the
#: longest name wins: ``models.spec`` is a foundation module in the ``models`` package).
LAYERS: list[tuple[str, frozenset[str]]] = [
    # Settings, errors and constants that everything shares; none of them imports a layer above.
    ("foundation", frozenset({"errors", "redaction", "retry", "cache", "config", "config_docs", "models.spec"})),
    # The pure core (numpy in, numpy out) and the clip generator (numpy and PyAV only).
    ("core", frozenset({"algorithms", "synthetic"})),
    ("sources", frozenset({"sources"})),
    ("media", frozenset({"media"})),
    ("models", frozenset({"models"})),
    ("index", frozenset({"index", "digests"})),
    ("execution", frozenset({"execution"})),
    ("clips", frozenset({"clips"})),
    ("cli", frozenset({"cli", ""})),
]


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package: dotted name -> its file."""
    return {_module_name(path, package): path for path in sorted(package.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports(known: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in its code. ``import pipeline``
    (the root package, whose names load lazily) is left out: every import of a submodule runs
    it anyway."""
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                module = _resolve(name, path.name == "__init__.py", node)
                for alias in node.names:
                    submodule = f"{module}.{alias.name}"
                    targets.add(submodule if submodule in known else module)
        graph[name] = {target for target in targets if target in known and target not in (name, "pipeline")}
    return graph


def _member(module: str) -> tuple[str, int]:
    """The name in :data:`LAYERS` that ``pipeline.X.Y`` belongs to, and its layer's index."""
    relative = module.removeprefix("pipeline").removeprefix(".")
    best: tuple[str, int] | None = None
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if relative == member or (member and relative.startswith(f"{member}.")):
                if best is None or len(member) > len(best[0]):
                    best = (member, index)
    if best is None:
        raise LookupError(f"{module} is in no layer: add it to LAYERS (and docs/architecture.md)")
    return best


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of ``pipeline.X.Y``'s layer."""
    return _member(module)[1]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{importer} ({LAYERS[layer_of(importer)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for importer, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(importer)
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def subpackage_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same imports between the parts :data:`LAYERS` names (``media``, ``models``,
    ``models.spec``, ``digests``)."""

    def part(module: str) -> str:
        return _member(module)[0] or "pipeline"

    folded: dict[str, set[str]] = {}
    for importer, targets in graph.items():
        folded.setdefault(part(importer), set()).update(part(t) for t in targets if part(t) != part(importer))
    return folded


def _graph(edges: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    return graph


def test_every_module_is_in_a_layer() -> None:
    assert [layer_of(module) for module in modules()]  # raises LookupError naming a module without one


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    assert upward_imports(imports(modules())) == []


def test_no_two_modules_import_each_other_round_a_loop() -> None:
    assert cycles(imports(modules())) == []


def test_no_two_subpackages_import_each_other() -> None:
    """Within one layer too (``index`` and ``digests``, ``algorithms`` and ``synthetic``)."""
    assert cycles(subpackage_graph(imports(modules()))) == []


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    """An upward import, a lazy one inside a function, a relative one and a loop are each found."""
    package = tmp_path / "pipeline"
    for folder in ("media", "models", "algorithms"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "media" / "decode.py").write_text("from pipeline.models.transnetv2 import INPUT_HEIGHT\n")
    (package / "models" / "transnetv2.py").write_text("def f():\n    from ..media import decode\n")
    (package / "models" / "quantized.py").write_text("import pipeline.models.table\n")
    (package / "models" / "table.py").write_text("from pipeline.models import quantized\n")
    (package / "algorithms" / "shots.py").write_text("import numpy\nfrom pipeline.algorithms import shots\n")
    graph = imports(modules(package))
    assert graph["pipeline.media.decode"] == {"pipeline.models.transnetv2"}
    assert graph["pipeline.models.transnetv2"] == {"pipeline.media.decode"}
    assert graph["pipeline.algorithms.shots"] == set()  # itself and third-party names are not edges
    assert upward_imports(graph) == ["pipeline.media.decode (media) imports pipeline.models.transnetv2 (models)"]
    assert cycles(graph) == [
        ["pipeline.media.decode", "pipeline.models.transnetv2"],
        ["pipeline.models.quantized", "pipeline.models.table"],
    ]
    assert cycles(subpackage_graph(graph)) == [["media", "models"]]
    assert cycles(_graph([("a", "b"), ("b", "c")])) == []


def test_layer_of_takes_the_most_specific_name() -> None:
    assert LAYERS[layer_of("pipeline.models.spec")][0] == "foundation"
    assert LAYERS[layer_of("pipeline.models.quantized")][0] == "models"
    assert LAYERS[layer_of("pipeline")][0] == "cli"
    with pytest.raises(LookupError, match="pipeline.newthing is in no layer"):
        layer_of("pipeline.newthing")
