"""doc-worker: consumes document_processing: parse, chunk and index documents."""
