"""Where a video's bytes come from: listing a corpus through fsspec, storage settings, retried reads."""
