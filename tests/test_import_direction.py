"""Apps import in one direction (docs/architecture.md, "Modules and the direction of imports"):
`workers -> notifications -> ledger -> catalog -> core`, each app only the apps below it, and no deployed
module imports the benchmark, the tests or the development launcher. Read from the source with
`ast`: every import counts, those inside functions too."""

import ast
from pathlib import Path

from django.apps import apps

ROOT = Path(__file__).resolve().parent.parent

# The apps of this project, lowest first: each may import only those before it. The catalog sits
# under the ledger (a charge sells a product at a price); the notifications above it: the ledger
# never imports them and tells the notifications (and the workers) about its events through
# `ledger.events` and the subscribers the settings name. Any app may import a package of the
# project that is not an app (`providers`, the adapters).
LAYERS = ["core", "catalog", "ledger", "notifications", "workers", "ops", "devstack"]
MAY_IMPORT = {app: set(LAYERS[:index]) for index, app in enumerate(LAYERS)}
# What deployed code never imports: the benchmark, the tests and the development launcher.
NOT_DEPLOYED = {"bench", "tests", "conftest", "devstack"}


def _first_party() -> set[str]:
    """The project's top-level packages, script folders and modules."""
    folders = {path.name for path in ROOT.iterdir() if path.is_dir() and path.name[0] not in "._"}
    return {name for name in folders if any((ROOT / name).rglob("*.py"))} | {path.stem for path in ROOT.glob("*.py")}


def _imports(package: str) -> list[tuple[str, str]]:
    """(module file, top-level name imported) for every absolute import in the package's code
    (migrations left out: they name other apps' migrations by design)."""
    files = [ROOT / f"{package}.py"] if (ROOT / f"{package}.py").exists() else (ROOT / package).rglob("*.py")
    found = []
    for path in files:
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found.extend((str(path.relative_to(ROOT)), name.split(".")[0]) for name in names)
    return found


def test_every_app_of_the_project_has_its_place_in_the_direction():
    project_apps = {config.name for config in apps.get_app_configs() if config.name in _first_party()}
    assert project_apps <= set(MAY_IMPORT), "give the app its place in LAYERS (and docs/architecture.md)"


def test_apps_import_only_the_apps_below_them():
    wrong = [
        f"{path} imports {name}"
        for app, allowed in MAY_IMPORT.items()
        for path, name in _imports(app)
        if name in MAY_IMPORT and name != app and name not in allowed
    ]
    assert wrong == []


def test_no_deployed_module_imports_the_benchmark_the_tests_or_the_launcher():
    deployed = _first_party() - NOT_DEPLOYED
    wrong = [
        f"{path} imports {name}" for package in deployed for path, name in _imports(package) if name in NOT_DEPLOYED
    ]
    assert wrong == []
