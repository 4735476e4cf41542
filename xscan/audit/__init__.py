"""`xscan audit`: results checked against radiologists' reads as they arrive, period by period, against a promise."""
