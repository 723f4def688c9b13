"""The package's shape: no import cycles, no private names across modules, a public API.

The layers contract (``[tool.importlinter]`` in pyproject.toml, run by ``make test``) keeps the
folders importing downward; these checks cover what it does not: cycles between modules of one
folder and private names imported from another module.
"""

import ast
from pathlib import Path

import grimp

import choral

PACKAGE = Path(choral.__file__).parent


def test_no_module_imports_itself_through_a_cycle():
    graph = grimp.build_graph("choral")
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.find_modules_directly_imported_by(module)):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph.modules):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("choral"):
            found += [f"{path.relative_to(PACKAGE.parent)}: {node.module}.{a.name}"
                      for a in node.names if a.name.startswith("_")]
    return found


def test_no_private_name_is_imported_from_another_module():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _private_imports(path)]
    assert not found, "private names imported across modules: " + ", ".join(found)


def test_the_public_api_is_exported_at_the_top():
    for name in ("Surrogate", "Config", "Predictive", "GaussianMixture", "QuantilePredictive",
                 "Recalibrated", "ConformalPredictive", "Members", "ChoralError", "DataError",
                 "ConfigError", "ModelFileError"):
        assert name in choral.__all__ and hasattr(choral, name)
    assert all(hasattr(choral, name) for name in choral.__all__)


def test_every_allowed_value_list_has_one_owner():
    """The config's choices are the owners' own objects, not copies."""
    from choral.acquisition import KINDS
    from choral.campaign.config import CampaignConfig
    from choral.config import Config
    from choral.ensembles.registry import METHODS
    from choral.networks.heads import HEADS
    from choral.networks.members import BACKENDS
    from choral.networks.unet import NORMS

    fields = Config.model_fields
    model, unet = fields["model"].annotation.model_fields, None
    unet = model["unet"].annotation.model_fields
    assert model["head"].annotation.__args__ == tuple(HEADS)
    assert unet["norm"].annotation.__args__ == NORMS
    train = fields["train"].annotation.model_fields
    assert train["backend"].annotation.__args__ == ("auto", *BACKENDS)
    acquisitions = CampaignConfig.model_fields["acquisition"].annotation.__args__
    assert acquisitions == (*KINDS, "posterior")  # the campaign's own kind added to the scores
    for method in METHODS:  # every registered method is a valid train.ensemble
        assert Config().updated(**{"train.ensemble": method}).train.ensemble == method
