"""Scoring a folder: the streaming pipeline, score_folder, the results CSV, resume, journal, lock and Ray."""
