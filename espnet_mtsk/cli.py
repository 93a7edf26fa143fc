"""What the command-line tools share."""

import logging
from typing import Callable, Dict, Optional


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


def model_source(args) -> Dict[str, Optional[str]]:
    """``from_pretrained``'s model and device arguments from the parsed
    ``--model_tag`` (zip or zoo name), ``--asr_train_config``,
    ``--asr_model_file`` and ``--ngpu``, as every decoding command takes them."""
    return dict(
        model_tag=args.model_tag,
        asr_train_config=args.asr_train_config,
        asr_model_file=args.asr_model_file,
        device="cuda" if args.ngpu > 0 else "cpu",
    )
