"""Errors a user can act on. The scripts print them as one line (no traceback) and exit 2."""


class DataError(ValueError):
    """Bad input data; the message names the file, the line or the row, and the field."""

    def __init__(self, file, message: str, row: object = None, field: str | None = None, line: int | None = None):
        where = [str(file)]
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"row id={row}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}")
        self.file, self.row, self.field, self.line = str(file), row, field, line


class ConfigError(ValueError):
    """The configuration does not match config/config.schema.yaml."""


class CheckpointError(RuntimeError):
    """A model checkpoint or adapter is missing or unusable."""


class SubmissionError(ValueError):
    """The submission would not be accepted by Kaggle."""


class KaggleError(RuntimeError):
    """Kaggle credentials, the kaggle CLI or one of its commands is missing or failed."""


class DeviceError(RuntimeError):
    """The configured device cannot be used on this machine."""
