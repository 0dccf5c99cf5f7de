"""The import rule, checked on the source: packages import only downward (in LAYERS order), the
modules of deploy/ only downward in DEPLOY_LAYERS (its backends never import one another), there is
no import cycle, and no function imports `mobilenets.*` (function-level imports are for optional
third-party packages only)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "mobilenets"

# Lowest first: a unit may import from units before it, never from units after it. The package's
# __init__ (the public API) and __main__ sit on top of all of them.
LAYERS = (
    "config",
    "files",
    "figures",
    "layers",
    "zoo",
    "fuse",
    "models",
    "kernels",
    "checkpoint",
    "costs",
    "data",
    "pretrained",
    "factory",
    "deploy",
    "training",
    "cli",
)
TOP = ("mobilenets", "mobilenets.__main__")

# Inside deploy/, lowest first: a module imports only from modules of the layers before its own, so
# the backends (one file format each) share the layer below and never import one another.
DEPLOY_LAYERS = (
    ("base", "cpu", "sidecar", "timing"),  # what every backend and measurement shares
    ("export", "openvino", "executorch", "tflite", "web"),  # the backends: ONNX, OpenVINO, ...
    ("runtimes", "gates"),  # the registry of runtimes; the accuracy gates of their paths
    ("bench",),  # times every backend
    ("profile", "choose"),  # per-layer time; the configuration for a latency budget
)
# The one import between backends: OpenVINO's IR is converted from the ONNX export.
DEPLOY_BACKEND_IMPORTS = {("mobilenets.deploy.openvino", "mobilenets.deploy.export")}


def module_name(path: Path) -> str:
    parts = ("mobilenets",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_sources() -> dict[str, tuple[bool, ast.Module]]:
    """module name → (is a package __init__, its syntax tree)"""
    return {
        module_name(path): (path.name == "__init__.py", ast.parse(path.read_text(encoding="utf-8")))
        for path in sorted(ROOT.rglob("*.py"))
    }


SOURCES = read_sources()


def imported_modules(sources: dict, module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package's own modules that `node` (in `module`) imports."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module
        if node.level:
            package = module.split(".") if sources[module][0] else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([node.module] if node.module else []))
        # `from PACKAGE import SUBMODULE` imports the submodule; `from MODULE import NAME`, the module.
        submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in sources]
        names = submodules or [base]
    return [name for name in names if name in sources and name != module]


def unit(module: str) -> str:
    """The layer of a module: its top-level module or subpackage under mobilenets."""
    return module.split(".")[1] if module not in TOP else module


def import_edges(sources: dict) -> dict[str, set[str]]:
    edges = {module: set() for module in sources}
    for module, (_, tree) in sources.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges[module].update(imported_modules(sources, module, node))
    return edges


def upward_imports(sources: dict) -> list[str]:
    found = []
    for module, targets in import_edges(sources).items():
        if module in TOP:
            continue
        for target in sorted(targets):
            if target in TOP:
                found.append(f"{module} imports {target} (import the module that defines the name)")
            elif LAYERS.index(unit(target)) > LAYERS.index(unit(module)):
                found.append(f"{module} imports {target}, which is above it")
    return found


def deploy_layer(module: str) -> int | None:
    name = module.removeprefix("mobilenets.deploy.")
    return next((i for i, layer in enumerate(DEPLOY_LAYERS) if name in layer), None)


def deploy_sideways_imports(sources: dict) -> list[str]:
    """Imports inside deploy/ of a module in the same DEPLOY_LAYERS layer or a higher one."""
    found = []
    for module, targets in import_edges(sources).items():
        if deploy_layer(module) is None:
            continue
        for target in sorted(targets):
            layer = deploy_layer(target)
            if (
                layer is not None
                and layer >= deploy_layer(module)
                and (module, target) not in DEPLOY_BACKEND_IMPORTS
            ):
                found.append(f"{module} imports {target}, which is not below it in DEPLOY_LAYERS")
    return found


def import_cycles(sources: dict) -> list[str]:
    edges = import_edges(sources)
    state, cycles = {}, []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(edges[module]):
            if target.startswith(module + "."):  # a package's __init__ exporting its submodules' names
                continue
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target) :] + [target]))
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [])
    return cycles


def function_level_imports(sources: dict) -> list[str]:
    found = []
    for module, (_, tree) in sources.items():
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found += [
                    f"{module}:{node.lineno}"
                    for node in ast.walk(function)
                    if isinstance(node, (ast.Import, ast.ImportFrom))
                    and imported_modules(sources, module, node)
                ]
    return found


def private_imports(sources: dict) -> list[str]:
    """`from OTHER_MODULE import _name`: a private name used outside the module that defines it."""
    return [
        f"{module}:{node.lineno} imports {alias.name}"
        for module, (_, tree) in sources.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and imported_modules(sources, module, node)
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]


def test_every_unit_is_in_a_layer():
    assert {unit(module) for module in SOURCES} - set(TOP) == set(LAYERS)


def test_packages_import_only_downward():
    assert upward_imports(SOURCES) == []


def test_every_deploy_module_is_in_a_deploy_layer():
    modules = {module for module in SOURCES if module.startswith("mobilenets.deploy.")}
    assert {f"mobilenets.deploy.{name}" for layer in DEPLOY_LAYERS for name in layer} == modules


def test_deploy_modules_import_only_downward():
    assert deploy_sideways_imports(SOURCES) == []


def test_no_import_cycles():
    assert import_cycles(SOURCES) == []


def test_no_function_level_imports_of_the_package():
    assert function_level_imports(SOURCES) == []


def test_no_private_names_imported_across_modules():
    assert private_imports(SOURCES) == []


def planted(**modules: str) -> dict:
    return {**SOURCES, **{name: (False, ast.parse(text)) for name, text in modules.items()}}


def test_the_checks_catch_what_they_forbid():
    assert upward_imports(planted(**{"mobilenets.costs.planted": "from ..cli.app import main\n"})) == [
        "mobilenets.costs.planted imports mobilenets.cli.app, which is above it"
    ]
    assert deploy_sideways_imports(planted(**{"mobilenets.deploy.web": "from .tflite import x\n"})) == [
        "mobilenets.deploy.web imports mobilenets.deploy.tflite, which is not below it in DEPLOY_LAYERS"
    ]
    assert deploy_sideways_imports(planted(**{"mobilenets.deploy.base": "from .runtimes import x\n"})) == [
        "mobilenets.deploy.base imports mobilenets.deploy.runtimes, which is not below it in DEPLOY_LAYERS"
    ]
    assert upward_imports(planted(**{"mobilenets.zoo": "from . import create_model\n"})) == [
        "mobilenets.zoo imports mobilenets (import the module that defines the name)"
    ]
    assert function_level_imports(
        planted(**{"mobilenets.costs.planted": "def f():\n    import mobilenets.zoo\n"})
    ) == ["mobilenets.costs.planted:2"]
    assert import_cycles(
        planted(**{"mobilenets.costs.a": "from . import b\n", "mobilenets.costs.b": "from .a import x\n"})
    ) == ["mobilenets.costs.a -> mobilenets.costs.b -> mobilenets.costs.a"]
    assert private_imports(planted(**{"mobilenets.deploy.planted": "from .bench import _hidden\n"})) == [
        "mobilenets.deploy.planted:1 imports _hidden"
    ]
