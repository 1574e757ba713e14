"""Errors that reach the user as one line, without a traceback."""


class DuoError(Exception):
    """A user-facing error: bad config, bad input data, a service that refused, a missing artifact."""


class ConfigError(DuoError):
    """The task config is invalid. ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        if len(problems) == 1:
            message = problems[0]
        else:
            message = f"{len(problems)} problems in config:\n" + "\n".join(problems)
        super().__init__(message)


class ArtifactMissing(DuoError):
    """A stage needs an artifact that no earlier stage has completed."""


def report(exc: DuoError) -> int:
    """Print a user error as ``error: ...`` lines on stderr (one per config problem); the exit code, 1."""
    import sys

    for line in exc.problems if isinstance(exc, ConfigError) else [str(exc)]:
        print(f"error: {line}", file=sys.stderr)
    return 1
