"""Serving: HTTP server with dynamic batching, video/stream mode, Triton model repository export."""
