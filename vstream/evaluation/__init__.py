"""Built-in evaluation: datasets, metrics, reports and plots (``vstream eval``)."""
