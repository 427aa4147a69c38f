"""Errors raised by Finetune Studio that carry a message meant for the user."""


class FinetuneStudioError(Exception):
    """Base class for errors whose message is shown to the user as is."""


class ConfigError(FinetuneStudioError):
    """The configuration is invalid; the message names the field and the allowed values."""


PROBLEMS_SHOWN = 50
"""Problems and skipped records named one by one on the console and in the studio (the report lists more)."""


class DataValidationError(FinetuneStudioError):
    """Input data is invalid.

    Attributes:
        problems: Every problem found, each formatted as ``file:line: field: problem``.
        note: A closing line (counts per reason, where the full list was written), if any.
    """

    def __init__(self, problems: list[str], note: str | None = None) -> None:
        self.problems = list(problems)
        self.note = note
        shown = "\n".join(self.problems[:PROBLEMS_SHOWN])
        hidden = len(self.problems) - PROBLEMS_SHOWN
        more = f"\n... and {hidden} more" if hidden > 0 else ""
        summary = f"\n{note}" if note else ""
        super().__init__(f"{len(self.problems)} problem(s) in the input data:\n{shown}{more}{summary}")


class ModelNotAvailableError(FinetuneStudioError):
    """A model could not be found locally and cannot be downloaded (offline or unknown id)."""


class CheckpointError(FinetuneStudioError):
    """A checkpoint is missing, corrupted, or incompatible with the current configuration."""


class UnsupportedOperationError(FinetuneStudioError):
    """The requested operation is not supported for this technique or model (e.g. merging a prefix)."""


class OutputExistsError(FinetuneStudioError):
    """An output path holds files this command did not create; it is replaced only with an explicit flag."""
