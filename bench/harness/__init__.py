"""The harness: cluster and data, cold starts, timing and resource sampling, alternating rounds."""
