"""``python -m groupd``: the ``groupd`` command."""

from groupd.cli import main

main()
