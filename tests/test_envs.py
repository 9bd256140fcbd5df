"""Static checks of the conda environments `snakemake --sdm conda` builds from envs/*.yaml: every
rule's env provides what its code imports (the model of rules, imports and envs: rule_envs.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rule_envs import (
    CHANNELS,
    CONDA_FORGE_NAMES,
    CONDA_PREFIX,
    OPTIONAL,
    PACKAGE,
    PIP_ONLY,
    PYTHON,
    ROOT,
    ROOT_SETTING,
    ROOT_VARIABLE,
    UNPINNED,
    Env,
    RuleCheck,
    RuleMapError,
    check_rules,
    env_files,
    env_name_for,
    load_env,
    module_distribution,
    parse_rules,
    pyproject_dependencies,
    rel,
    requirement_pins,
    rule_entries,
    rule_env,
    rule_env_problems,
    scan_file,
    trace,
)


@pytest.fixture(scope="module")
def checks() -> list[RuleCheck]:
    try:
        return check_rules()
    except RuleMapError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def envs() -> dict[Path, Env]:
    return {path.resolve(): load_env(path) for path in env_files()}


def test_every_rule_with_code_maps_to_an_env_file(checks):
    assert checks, "no rule with code found in Snakefile and rules/*.smk"
    problems = [f"rule {c.rule.name} ({c.rule.where}) has no `conda:` env" for c in checks if c.env is None]
    problems += [
        f"rule {c.rule.name} ({c.rule.where}): {rel(c.env)} does not exist"
        for c in checks
        if c.env is not None and not c.env.is_file()
    ]
    assert not problems, "\n".join(problems)


def test_rule_envs_provide_what_their_code_imports():
    try:
        problems = rule_env_problems()
    except RuleMapError as error:
        pytest.fail(str(error))
    assert not problems, "\n".join(problems)


def test_envs_read_and_use_conda_forge_with_python_311(envs):
    assert envs, "no envs/*.yaml"
    problems = []
    for env in envs.values():
        problems += env.problems
        if env.channels != CHANNELS:
            problems.append(f"{env.name}: channels are {env.channels}, not {CHANNELS}")
        if env.conda.get("python") != PYTHON:
            problems.append(f"{env.name}: python is {env.conda.get('python')!r}, not python={PYTHON}")
        if (env.pip or env.local) and "pip" not in env.conda:
            problems.append(f"{env.name}: has pip entries but does not list pip")
    assert not problems, "\n".join(problems)


def test_envs_pin_requirements_versions(envs):
    pins = requirement_pins()
    problems = []
    for env in envs.values():
        listed = [(name, env.distribution(name), version) for name, version in env.conda.items()]
        listed += [(name, name, version) for name, version in (env.pip | env.post_deploy).items()]
        for name, dist, version in listed:
            if name in UNPINNED:
                continue
            if dist not in pins:
                problems.append(f"{env.name}: {name} is not pinned in requirements.txt")
            elif version != pins[dist]:
                problems.append(f"{env.name}: {name} is {version or 'unpinned'}, requirements.txt pins {pins[dist]}")
    assert not problems, "\n".join(problems)


def test_pip_only_for_what_conda_forge_lacks(envs):
    problems = []
    for env in envs.values():
        for dist in env.pip.keys() | env.post_deploy.keys():
            if dist not in PIP_ONLY:
                problems.append(
                    f"{env.name}: pip installs {dist}, which conda-forge has as "
                    f"{CONDA_FORGE_NAMES.get(dist, dist)}; list it as a conda dependency"
                )
        for name in env.conda:
            if env.distribution(name) in PIP_ONLY:
                problems.append(f"{env.name}: {name} is listed for conda: {PIP_ONLY[env.distribution(name)]}")
            if env.distribution(name) in env.pip.keys() | env.post_deploy.keys():
                problems.append(f"{env.name}: {name} is listed for both conda and pip")
        for dist in env.pip.keys() & env.post_deploy.keys():
            problems.append(
                f"{env.name}: {dist} is installed by both the file's pip entries and its post-deploy "
                "script (the pip entry installs the dependencies a --no-deps install leaves out)"
            )
    assert not problems, "\n".join(problems)


def test_envs_install_the_package_editable_from_the_workflow_root(envs):
    problems = []
    for env in envs.values():
        for install in env.local:
            if install.path is not None:
                problems.append(
                    f"{env.name}: {install.spec!r} is a path; as Snakemake creates the env it is "
                    f"{install.path} (from the copy in {CONDA_PREFIX}/ of the working directory) and "
                    f"elsewhere with --directory .test, a module use or --conda-prefix: install "
                    f'-e "${{{ROOT_VARIABLE}}}" instead'
                )
            elif not install.editable:
                problems.append(
                    f"{env.name}: {install.spec!r} is not editable: Snakemake keeps an env while its "
                    "file is unchanged, so a copy of src/ would go stale"
                )
    assert not problems, "\n".join(problems)


def test_the_workflow_sets_the_root_the_envs_install_the_package_from(envs):
    """pip expands ${ARENAPREF_ROOT} from the environment of the snakemake process that creates the envs."""
    users = [env.name for env in envs.values() if any(install.path is None for install in env.local)]
    if not users:
        pytest.skip(f"no env installs the package from ${{{ROOT_VARIABLE}}}")
    setting = re.compile(
        rf"""os\.environ(\[\s*["']{ROOT_VARIABLE}["']\s*\]\s*=(?!=)|"""
        rf"""\.setdefault\(\s*["']{ROOT_VARIABLE}["']|\.update\(\s*{ROOT_VARIABLE}\s*=)"""
    )
    files = [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]
    assert any(setting.search(path.read_text()) for path in files if path.is_file()), (
        f"{', '.join(users)} install the package from ${{{ROOT_VARIABLE}}}, which neither the Snakefile nor "
        f"rules/*.smk sets, so `snakemake --sdm conda` cannot create them: add `{ROOT_SETTING}` "
        "(and `import os`) to rules/common.smk"
    )


def test_envs_provide_the_package_dependencies(envs):
    """pip resolves the package's dependencies as it installs it: any the env lacks comes from PyPI, unpinned."""
    declared = pyproject_dependencies()
    problems = [
        f"{env.name}: pip would fetch {dist} unpinned from PyPI to install the package: list "
        f"{env_name_for(dist)} at requirements.txt's pin"
        for env in envs.values()
        if env.pulls_package_dependencies()
        for dist in sorted(declared - env.provides())
    ]
    assert not problems, "\n".join(problems)


def test_envs_list_only_what_their_rules_need(checks, envs):
    needed: dict[Path, set[str]] = {path: set() for path in envs}
    users: dict[Path, list[str]] = {path: [] for path in envs}
    for check in checks:
        if check.env in needed:
            needed[check.env] |= set(check.trace.needs)
            users[check.env].append(check.rule.name)
    declared = pyproject_dependencies()
    problems = [f"{env.name}: no rule uses it" for path, env in envs.items() if not users[path]]
    for path, env in envs.items():
        allowed = needed[path] | UNPINNED | (declared if env.pulls_package_dependencies() else set())
        listed = [(name, env.distribution(name)) for name in env.conda]
        listed += [(name, name) for name in env.pip.keys() | env.post_deploy.keys()]
        problems += [
            f"{env.name}: lists {name}, which none of its rules ({', '.join(users[path])}) needs"
            for name, dist in listed
            if dist not in allowed and users[path]
        ]
    assert not problems, "\n".join(problems)


def test_pyproject_dependencies_cover_what_the_package_imports():
    declared = pyproject_dependencies()
    problems: dict[str, str] = {}  # the first import of each missing distribution
    for path in sorted((ROOT / "src" / PACKAGE).rglob("*.py")):
        scan = scan_file(path)
        for item in scan.found:
            if item.kind != "module" or item.optional or (scan.module, item.name) in OPTIONAL:
                continue
            dist = module_distribution(item.name)
            if item.what.startswith(("import ", "from ")) and dist not in declared:
                problems.setdefault(
                    dist or item.name,
                    f"pyproject.toml [project] dependencies lacks "
                    f"{dist or item.name}: {item.what} at {rel(path)}:{item.line}",
                )
    assert not problems, "\n".join(problems.values())


def test_the_check_flags_an_env_that_lacks_an_import(checks):
    """The check itself: report_figures' env without matplotlib-base (envs/data.yaml before the fix) must fail."""
    [report] = [check for check in checks if check.rule.name == "report_figures"] or [None]
    if report is None or report.env is None or not report.env.is_file():
        pytest.skip("no rule report_figures with an env file")
    broken = load_env(report.env)
    broken.conda.pop("matplotlib-base", None)
    problems = rule_env_problems(envs={report.env: broken})
    assert any(
        p.startswith("rule report_figures") and "lacks matplotlib" in p and "arenapref/evaluate/report.py" in p
        for p in problems
    ), problems


WORKFLOW = """
rule by_script:
    conda:
        "../envs/a.yaml"
    params:
        script=script("job.py"),
    shell:
        "python {params.script} --out {output} > {log} 2>&1"


use rule by_script as by_script_again with:
    params:
        script=script("job.py"),


rule by_command:
    conda: "../envs/a.yaml"
    shell:
        "arenapref-job --in {input:q}"
        " > {log} 2>&1"


rule by_module:
    conda:
        "../envs/a.yaml"
    shell:
        "python -m arenapref.job"


rule all:
    input:
        "x",
"""


@pytest.fixture
def tiny_workflow(tmp_path) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "envs").mkdir()
    (tmp_path / "scripts").mkdir()
    (tmp_path / "src" / PACKAGE).mkdir(parents=True)
    (tmp_path / "rules" / "a.smk").write_text(WORKFLOW)
    (tmp_path / "scripts" / "job.py").write_text("from arenapref import job\n")
    (tmp_path / "src" / PACKAGE / "__init__.py").write_text("")
    (tmp_path / "src" / PACKAGE / "job.py").write_text("import json\n\n\ndef main():\n    import numpy\n")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "arenapref"\n\n[project.scripts]\narenapref-job = "arenapref.job:main"\n'
    )
    (tmp_path / "envs" / "a.yaml").write_text("channels: [conda-forge, nodefaults]\ndependencies: [python=3.11]\n")
    return tmp_path


def test_the_rule_parser_reads_each_way_a_rule_runs_code(tiny_workflow):
    found = {rule.name: rule for rule in parse_rules(tiny_workflow)}
    assert set(found) == {"by_script", "by_script_again", "by_command", "by_module", "all"}
    assert rule_entries(found["all"], tiny_workflow) == []
    for name, needs_package in [
        ("by_script", False),
        ("by_script_again", False),
        ("by_command", True),
        ("by_module", True),
    ]:
        [entry] = rule_entries(found[name], tiny_workflow)
        assert entry.needs_package is needs_package
        assert rule_env(found[name]) == (tiny_workflow / "envs" / "a.yaml").resolve()
        assert set(trace(entry.files, tiny_workflow).needs) == {"numpy"}, name  # json is stdlib
    problems = rule_env_problems(tiny_workflow)
    assert len([p for p in problems if "lacks numpy" in p and "arenapref/job.py:5" in p]) == 4, problems
    assert len([p for p in problems if f"lacks {PACKAGE}" in p]) == 2, problems


@pytest.mark.parametrize(
    "shell",
    [
        '"kaggle competitions download"',
        '"python {params.other}"',
        '"arenapref-missing --x"',
        '"python -m somewhere.else"',
    ],
)
def test_the_rule_parser_fails_loudly_on_code_it_cannot_map(tmp_path, shell):
    (tmp_path / "rules").mkdir()
    rule = f"rule odd:\n    params:\n        other=1,\n    shell:\n        {shell}\n"
    (tmp_path / "rules" / "a.smk").write_text(rule)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "arenapref"\n')
    [rule] = parse_rules(tmp_path)
    with pytest.raises(RuleMapError, match="rule odd"):
        rule_entries(rule, tmp_path)
