"""Tutorial notebooks, executed in CI so they never rot."""
