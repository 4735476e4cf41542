"""The textbook statistics every stage shares: metrics at a threshold, intervals, threshold rules, calibration."""
