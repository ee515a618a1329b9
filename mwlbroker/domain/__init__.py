"""The broker's vocabulary in plain Python: no I/O, no frameworks."""
