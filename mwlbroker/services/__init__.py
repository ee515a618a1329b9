"""Use cases, one transaction each: ingest, reprocess, and later orders, worklist and progress."""
