"""Vector stores and file search: stores, their files and batches; parsing, chunking, the index."""
