"""Clip files of an index's shots or scenes: which to cut (select), how (cut), on Ray (run)."""
