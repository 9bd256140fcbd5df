"""Shared command-line plumbing for the scripts: logging and clear one-line errors."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable

from arenapref.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DeviceError,
    KaggleError,
    SubmissionError,
)

# Errors a user can fix; they get one clear line instead of a traceback.
USER_ERRORS = (DataError, ConfigError, CheckpointError, DeviceError, SubmissionError, KaggleError, FileNotFoundError)


def fold_arg(text: str) -> int | None:
    """A script's --fold: a fold number, or `full` (None) for the adapter trained on every row."""
    if text == "full":
        return None
    try:
        return int(text)
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(f"{text!r} is neither a fold number nor full") from None


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def stay_offline() -> None:
    """Offline by design: never let a library reach for a model hub (checkpoints are local folders)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def command(main: Callable[[], int | None]) -> Callable[[], None]:
    """A program's `main` as its console entry point (`arenapref-<name>`): logging, one clear line
    for errors a user can fix, the exit code."""

    @functools.wraps(main)
    def entry() -> None:
        run_main(main)

    return entry


def run_main(main: Callable[[], int | None]) -> None:
    setup_logging()
    stay_offline()
    try:
        code = main()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        code = 2
    sys.exit(code or 0)
