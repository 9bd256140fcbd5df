"""The command-line programs behind the workflow's rules, installed as `arenapref-<name>`
(pyproject.toml, [project.scripts]); each module's `entry` runs its `main` with one-line errors."""
