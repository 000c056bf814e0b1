"""Side-by-side speed and memory of zoo methods and lightly's equivalent composed models (``python -m benchmarks.run``)."""
