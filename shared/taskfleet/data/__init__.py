"""Domain data and jobs that several services share: documents, memories, blobs, tool specs."""
