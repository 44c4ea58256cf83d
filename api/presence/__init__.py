"""A device's presence over time: online and offline intervals from the recorded changes (migration 0017)."""
