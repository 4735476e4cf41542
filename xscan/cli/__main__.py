"""`python -m xscan.cli`: the command line, as the `xscan` script runs it."""

from xscan.cli import app

app()
