"""The error hierarchy: one root, each error says what is wrong and how to fix it."""

from __future__ import annotations


class EvoforgeError(Exception):
    """Root of every error evoforge raises on purpose."""


class ConfigError(EvoforgeError):
    """A configuration file, key, value or override is wrong."""


class ProblemError(EvoforgeError):
    """A problem directory is missing something or is malformed."""


class EditError(EvoforgeError):
    """An edit (diff or rewrite) could not be applied to a program."""


class ProgramFilesError(EditError):
    """A program of several files breaks a rule: a path outside its directory, a symbolic link,
    a malformed packed tree, a size cap (see evoforge.program_files)."""


class StorageError(EvoforgeError):
    """The run's storage is missing, corrupt, or from an incompatible version."""


class LLMError(EvoforgeError):
    """An LLM request failed for good (after retries, or not retryable).

    ``retryable`` tells whether the failure was transient (rate limit, 5xx, timeout) or
    permanent (authentication, unknown model, bad request); ``kind`` says which permanent one.
    """

    #: what a permanent failure means for the run: ``auth``, ``model`` and ``fatal`` (the
    #: default) stop it (nothing will work until the config changes); ``too_long`` asks for a
    #: shorter prompt; ``rejected`` (another 4xx) concerns this request only
    FATAL_KINDS = ("auth", "model", "fatal")

    def __init__(self, message: str, *, retryable: bool = True, attempts: int = 1,
                 prompt_tokens: int = 0, completion_tokens: int = 0, cost: float = 0.0,
                 kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = "transient" if retryable else (kind or "fatal")
        self.retryable = retryable
        self.attempts = attempts
        # what the failed attempts were billed (empty or unusable replies still cost tokens)
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.cost = cost
