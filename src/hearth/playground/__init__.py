"""The playground: a page at `/` that drives this server's public API from a browser."""
