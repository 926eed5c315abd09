"""The Batch API: JSONL files of requests run in the background by the online routes' services."""
