"""What the command-line tools share."""

import contextlib
import dis
import logging
import os
import sys
from typing import Callable, Dict, Iterator, Optional

from espnet2.utils.types import str2bool


def run_logged(work: Callable[[], object]) -> int:
    """Runs a command's work: 0 when it succeeds; 1 when it stops on a
    ValueError, FileNotFoundError or KeyError, logged as one line when it is
    one of this project's input checks (these name the file or utterance at
    fault), with its traceback otherwise (a bug, here or in a library).

    An input check is an error that a ``raise`` statement of this project
    (the packages espnet_mtsk and local, known by module name, as ``python
    -m`` runs them, wherever they are installed) raised. Both are read where
    the error began, in the innermost frame of its traceback: its module,
    and the bytecode instruction it stopped at. That is RAISE_VARARGS for a
    ``raise`` statement however many lines it spans, ``raise ... from e``
    included (the project's message names the input), and the subscript or
    call for an error raised within one: a dict lookup, ``int("x")``, a
    library's code, the raise's own message failing to build. A library's
    error re-raised (bare ``raise``, ``raise e``) keeps the library's frame
    innermost, so it keeps its traceback too.
    """
    try:
        work()
    except (ValueError, FileNotFoundError, KeyError) as e:
        tb = e.__traceback__
        while tb.tb_next is not None:
            tb = tb.tb_next
        scope = tb.tb_frame.f_globals
        module = scope["__spec__"].name if scope.get("__spec__") else scope.get("__name__", "")
        raised = tb.tb_frame.f_code.co_code[tb.tb_lasti] == dis.opmap["RAISE_VARARGS"]
        if raised and module.split(".")[0] in ("espnet_mtsk", "local"):
            logging.error(str(e))
        else:
            logging.exception(str(e))
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


def key_value(text: str) -> tuple[str, str]:
    """``OPTION=VALUE`` of a command line (argparse ``type``)."""
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise ValueError(f"expected OPTION=VALUE, got {text!r}")
    return key, value


def add_pretrained_arguments(parser) -> None:
    """``--pretrained_dir`` and ``--accept_pretrained_changes``, as every
    decoding command takes them."""
    parser.add_argument(
        "--pretrained_dir", type=key_value, action="append", default=[], metavar="OPTION=PATH",
        help="where a pretrained folder or file of the model's config is on this "
        "machine, e.g. llm_conf.model_dir=/data/Llama-3.2-1B (a packed model "
        "checks it holds the weights it was trained with)",
    )
    parser.add_argument(
        "--accept_pretrained_changes", type=str2bool, default=False,
        help="decode although the weights of a pretrained folder or file differ from "
        "those the training started from (recorded in pretrained_fingerprints.json "
        "beside --asr_model_file)",
    )


@contextlib.contextmanager
def native_stderr_silenced(silence: bool = True) -> Iterator[None]:
    """Within the block, what native code writes to file descriptor 2 is
    dropped, while Python's ``sys.stderr`` (logging, progress bars,
    tracebacks) still reaches the terminal through a copy of it.

    MediaPipe's graph (glog, TFLite) prints ``W0000 ...`` and ``INFO:``
    lines there from its own threads, before absl's logging is set up, so
    neither GLOG_minloglevel nor absl's verbosity reaches them. Set logging
    up inside the block: a handler keeps the stream it was made with.
    """
    if not silence:
        yield
        return
    sys.stderr.flush()
    saved_fd = os.dup(2)
    saved_stream = sys.stderr
    sys.stderr = os.fdopen(os.dup(saved_fd), "w", buffering=1, encoding=saved_stream.encoding, errors="backslashreplace")
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        sys.stderr.close()
        sys.stderr = saved_stream
