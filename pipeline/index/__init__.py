"""The index: Delta tables, commits and everything that reads them (query, similarity, status, report, maintenance)."""
