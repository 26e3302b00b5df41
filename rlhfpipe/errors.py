"""One exception type that every stage turns into a single readable line and exit code 2."""


class PipelineError(Exception):
    """A user-facing error: bad params, bad input file, impossible request.

    The message must name what to fix: the params key (``ppo.cliprange``) or the file and line
    (``data/x.jsonl:12``). Stages print ``error: <message>`` and exit 2; no traceback.
    """


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when empty): enough to say what failed."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
