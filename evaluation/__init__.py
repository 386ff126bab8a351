"""Dataset loaders, metrics, benchmark suites and reports."""
