"""The `xscan` command line: one module per command, each parsing options, calling the library and printing.

Nothing here computes: every command calls one library function and formats what it returns;
`app.exit_codes` is the one place an error becomes an exit code.
"""

from xscan.cli import audit, calibrate, drift, explain, info, listen, report, score, sr, studies, train
from xscan.cli.app import app
from xscan.cli.options import debug_option

# The order of `xscan --help`.
for command in (
    score.score,
    report.report,
    explain.explain,
    calibrate.calibrate,
    drift.drift,
    audit.audit,
    info.info,
    train.train,
    studies.studies,
    sr.sr,
    listen.listen,
):
    app.command()(debug_option(command))  # --debug on every command, one decorator

__all__ = ["app"]
