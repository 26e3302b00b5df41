"""``python -m rlhfpipe``: the ``rlhfpipe`` command."""

from rlhfpipe.command import main

main()
