"""The errors a run or a study raises for its user, in a module that imports nothing heavy, so the
command line can catch them without loading the model (its start is then a fraction of a second).
:mod:`weishang.model.recorder` re-exports them where they were first defined."""

from __future__ import annotations


class RunInterrupted(BaseException):
    """SIGTERM arrived during a run (a batch scheduler's cancel or time limit).

    A BaseException, as KeyboardInterrupt is: the signal handler raises it wherever the main
    thread happens to be, and a library's ``except Exception`` around an optional import or a
    fallback must not swallow it."""


class RunDirectoryError(ValueError):
    """The run directory cannot be created; the message is one line for the user."""
