"""What the command-line tools share."""

import logging
from typing import Callable


def run_logged(work: Callable[[], object]) -> int:
    """Runs a command's work: 0 when it succeeds; 1, with the error logged as
    one line instead of a traceback, when it stops on bad input (these
    errors name the file or utterance at fault)."""
    try:
        work()
    except (ValueError, FileNotFoundError, KeyError) as e:
        logging.error(str(e))
        return 1
    return 0
