"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""


class JobError(Exception):
    """A problem the user can fix (bad data, bad config, missing file): message says how."""


class DataError(JobError):
    """The dataset on disk is not what the job expects."""


class ConfigError(JobError):
    """A configuration value is invalid."""
