"""What the tests share: the real data set and how to skip without it, files they build, the stand-in scorer.

Test modules import from here (`from support.data import real_scans`), never from one another or
from conftest.py, which holds only fixtures.
"""
