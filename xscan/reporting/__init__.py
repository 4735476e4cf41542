"""Reading results against ground truth: labels, the report, its views, plots, galleries and review page."""
