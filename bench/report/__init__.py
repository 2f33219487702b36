"""The report: summaries and ratios, targets, the printed tables, docs/performance.md and the JSON results."""
