"""What goes into the Lambda code asset and the dependency layer, and when the layer is rebuilt."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from infra_testkit import SETTINGS_CASES, Synthesized, new_app

from app import build_app
from infra.functions import SHIPPED_MODULES, SHIPPED_PACKAGES, WheelhouseLayerBundler, layer_asset_hash
from infra.settings import (
    LAMBDA_REQUIREMENTS,
    LAMBDAS_DIR,
    REPORT_REQUIREMENTS,
    WHEELHOUSE_DIR,
    GtsegSettings,
    LambdaPlatform,
    read_lambda_platform,
)
from infra.stack import GtsegStack

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024  # function code + all layers, unzipped
ELF_MACHINE_AARCH64 = 183


def asset_dirs(assembly_dir: Path, stack_name: str) -> dict[str, Path]:
    """Asset object key (``<hash>.zip``) -> staged directory, from the assembly's asset manifest."""
    manifest = json.loads((assembly_dir / f"{stack_name}.assets.json").read_text())
    out = {}
    for entry in manifest["files"].values():
        (destination,) = entry["destinations"].values()
        out[destination["objectKey"]] = assembly_dir / entry["source"]["path"]
    return out


def code_dir(synth: Synthesized, construct, assembly_dir: Path) -> Path:  # type: ignore[no-untyped-def]
    props = synth.json["Resources"][synth.logical_id(construct)]["Properties"]
    key = props["Code"]["S3Key"] if "Code" in props else props["Content"]["S3Key"]
    return asset_dirs(assembly_dir, synth.stack.stack_name)[key]


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def function_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    outdir = tmp_path_factory.mktemp("cdk.out")
    app, stack = build_app(new_app(SETTINGS_CASES["default"], outdir=str(outdir)))
    app.synth()
    from aws_cdk.assertions import Template

    synth = Synthesized(
        "default", app, stack, Template.from_stack(stack), Template.from_stack(stack).to_json()
    )
    directories = {code_dir(synth, fn, outdir) for fn in stack.functions.all}
    assert len(directories) == 1  # one code asset shared by the three functions
    return directories.pop()


def test_function_code_is_the_allow_list_of_shipped_packages(function_code: Path) -> None:
    files = files_under(function_code)
    for needed in (
        "gtseg/__init__.py",
        "gtseg/handlers/pre_annotation.py",
        "gtseg/handlers/consolidation.py",
        "gtseg/handlers/launcher.py",
        "gtseg/handlers/finalize.py",
        # the finalize function runs gtseg report: its template ships with the tools
        "gtseg/tools/templates/report.html.liquid",
    ):
        assert needed in files
    top = {path.split("/")[1] for path in files}
    assert top == set(SHIPPED_PACKAGES) | set(SHIPPED_MODULES)
    # every shipped package is shipped whole: what the repo has, the asset has
    for package in SHIPPED_PACKAGES:
        in_repo = {
            p.relative_to(LAMBDAS_DIR).as_posix()
            for p in (LAMBDAS_DIR / "gtseg" / package).rglob("*.py")
            if "__pycache__" not in p.parts
        }
        assert in_repo and in_repo <= files, package
    for path in files:
        assert not path.startswith(("gtseg/local/", "gtseg/cli/", "gtseg/templates/")), path
        assert "__pycache__" not in path and ".egg-info" not in path and not path.endswith(".pyc"), path


def test_the_allow_list_is_the_import_linter_contract() -> None:
    """The shipped packages are what the forbidden-imports contract checks: one list, two uses."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (shipped,) = [c for c in contracts if c["id"] == "shipped-code"]
    listed = {m.removeprefix("gtseg.") for m in shipped["source_modules"]}
    assert listed == set(SHIPPED_PACKAGES) | {
        m.removesuffix(".py") for m in SHIPPED_MODULES if m.endswith(".py")
    } - {"__init__"}


def _third_party_imports(root: Path) -> dict[str, set[str]]:
    """Top-level module name -> the shipped files that import it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "gtseg":
                    found.setdefault(top, set()).add(path.relative_to(root).as_posix())
    return found


def _requirements(path: Path) -> list[str]:
    return [
        line.split("==")[0].strip().lower().replace("_", "-")
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_shipped_code_imports_only_the_layer_and_the_runtime(function_code: Path) -> None:
    """Nothing in the function code may import moto, awslambdaric, rich or any package that neither
    the layers (lambdas/requirements.txt; requirements-report.txt, the finalize function's) nor the
    Lambda runtime (boto3) provides; python-liquid only in the report, which only finalize runs."""
    requirements = _requirements(LAMBDA_REQUIREMENTS) + _requirements(REPORT_REQUIREMENTS)
    provided = {"boto3", "botocore"}  # in every Lambda Python runtime
    distributions = importlib.metadata.packages_distributions()
    for module, dists in distributions.items():
        if {d.lower().replace("_", "-") for d in dists} & set(requirements):
            provided.add(module)
    provided |= {"typing_extensions", "pydantic_core"}  # pydantic's own dependencies, in the layer
    imports = _third_party_imports(function_code)
    for forbidden in ("moto", "awslambdaric", "rich"):
        assert forbidden not in imports, imports.get(forbidden)
    # the report layer is the finalize function's alone: nothing else may need it
    assert imports.get("liquid", set()) <= {"gtseg/tools/report.py"}, imports.get("liquid")
    unexpected = {name: sorted(files) for name, files in imports.items() if name not in provided}
    assert not unexpected, unexpected
    assert {"numpy", "PIL", "pydantic", "aws_lambda_powertools"} <= set(imports)  # the check sees imports


def test_handlers_import_from_the_function_code_alone(function_code: Path) -> None:
    """The excludes must not remove anything the handlers import (dependencies from the venv)."""
    probe = (
        "import importlib, sys\n"
        f"sys.path.insert(0, {str(function_code)!r})\n"
        "for name in ('pre_annotation', 'consolidation', 'launcher', 'finalize'):\n"
        "    module = importlib.import_module('gtseg.handlers.' + name)\n"
        "    assert callable(module.handler)\n"
        "import gtseg\n"
        "print(gtseg.__file__)\n"
    )
    env = {**os.environ, "POWERTOOLS_METRICS_NAMESPACE": "gtseg", "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, env=env, cwd=function_code
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(function_code))  # not the editable install


def test_the_launcher_loads_neither_numpy_nor_pillow(function_code: Path) -> None:
    """The launcher never decodes an image: its cold start must not pay for numpy and Pillow."""
    probe = (
        "import sys\n"
        f"sys.path.insert(0, {str(function_code)!r})\n"
        "import gtseg.handlers.launcher\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'PIL', 'liquid', 'moto'}))\n"
    )
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_layer_asset_changes_with_requirements_platform_and_wheels(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy==2.5.5\n")
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    platform = LambdaPlatform("3.14", ("manylinux_2_28_aarch64", "manylinux2014_aarch64"))
    base = layer_asset_hash(requirements, platform, wheelhouse)
    assert layer_asset_hash(requirements, platform, wheelhouse) == base  # deterministic

    assert layer_asset_hash(requirements, LambdaPlatform("3.13", platform.pip_platforms), wheelhouse) != base
    assert (
        layer_asset_hash(requirements, LambdaPlatform("3.14", ("manylinux2014_aarch64",)), wheelhouse) != base
    )
    (wheelhouse / "numpy-2.5.5-cp314-cp314-manylinux_2_28_aarch64.whl").write_bytes(b"")
    with_wheel = layer_asset_hash(requirements, platform, wheelhouse)
    assert with_wheel != base
    requirements.write_text("numpy==2.5.6\n")
    assert layer_asset_hash(requirements, platform, wheelhouse) != with_wheel


def test_changing_the_python_version_changes_runtime_and_layer_asset(
    default: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAMBDA_PYTHON_VERSION", "3.13")
    from aws_cdk.assertions import Template

    # Without build_app's cdk-nag: an older runtime is (rightly) an AwsSolutions-L1 finding.
    stack = GtsegStack(
        new_app(SETTINGS_CASES["default"]), "Older", settings=GtsegSettings(), platform=read_lambda_platform()
    )

    other = Template.from_stack(stack).to_json()

    def layer_key(template: dict) -> str:
        (layer,) = [
            r
            for lid, r in template["Resources"].items()
            if r["Type"] == "AWS::Lambda::LayerVersion" and "FunctionsDependencyLayer" in lid
        ]
        return layer["Properties"]["Content"]["S3Key"]

    assert layer_key(other) != layer_key(default.json)
    runtimes = {r["Properties"]["Runtime"] for lid, r in other["Resources"].items() if lid.startswith("Functions")
                and r["Type"] == "AWS::Lambda::Function"}  # fmt: skip
    assert runtimes == {"python3.13"}


def test_bundler_without_wheels_says_to_run_make_setup(tmp_path: Path) -> None:
    bundler = WheelhouseLayerBundler(
        requirements=LAMBDA_REQUIREMENTS, wheelhouse=tmp_path / "empty", platform=read_lambda_platform()
    )
    with pytest.raises(RuntimeError, match="make setup"):
        bundler.try_bundle(str(tmp_path / "out"))


def test_pip_command_targets_the_lambda_platform_offline(tmp_path: Path) -> None:
    platform = LambdaPlatform("3.14", ("manylinux_2_28_aarch64", "manylinux2014_aarch64"))
    command = WheelhouseLayerBundler(
        requirements=LAMBDA_REQUIREMENTS, wheelhouse=tmp_path, platform=platform
    ).pip_command(tmp_path / "python")
    joined = " ".join(command)
    assert "--no-index" in command and "--only-binary=:all:" in command
    assert "--python-version 3.14" in joined
    assert "--platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64" in joined
    assert f"--target {tmp_path / 'python'}" in joined


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return int.from_bytes(header[18:20], "little")


@pytest.mark.slow
def test_real_bundling_builds_an_aarch64_layer_for_the_target_python(tmp_path: Path) -> None:
    platform = read_lambda_platform()
    wheelhouse_ok = any(WHEELHOUSE_DIR.glob(f"numpy-*-cp{platform.python_version.replace('.', '')}-*"))
    if not wheelhouse_ok:
        pytest.fail("build/wheelhouse has no wheels for the Lambda Python: run `make setup`")
    app, stack = build_app(new_app(SETTINGS_CASES["default"], bundling=True, outdir=str(tmp_path)))
    app.synth()
    from aws_cdk.assertions import Template

    template = Template.from_stack(stack).to_json()
    synth = Synthesized("bundled", app, stack, Template.from_stack(stack), template)
    layer = code_dir(synth, stack.functions.layer, tmp_path)
    code = code_dir(synth, stack.functions.consolidation, tmp_path)
    site = layer / "python"
    abi = platform.abi_tag  # e.g. cpython-314-aarch64-linux-gnu
    for extension in (
        f"numpy/_core/_multiarray_umath.{abi}.so",
        f"PIL/_imaging.{abi}.so",
        f"pydantic_core/_pydantic_core.{abi}.so",
    ):
        assert (site / extension).is_file(), extension
        assert elf_machine(site / extension) == ELF_MACHINE_AARCH64, extension
    compiled = [p.name for p in site.rglob("*.so") if ".cpython-" in p.name]
    assert compiled and all(abi in name for name in compiled), "extensions for another Python/arch"
    assert (site / "aws_lambda_powertools").is_dir() and (site / "pydantic").is_dir()
    assert not (site / "bin").exists()
    assert not list(site.rglob("__pycache__"))
    size = sum(p.stat().st_size for root in (layer, code) for p in root.rglob("*") if p.is_file())
    assert size < LAMBDA_UNZIPPED_LIMIT, f"{size / 2**20:.0f} MB unzipped"
    print(f"layer + code unzipped: {size / 2**20:.1f} MB")
