"""Where a video's bytes come from: listing a corpus and naming its videos (``listing``), reading
an object's bytes with retries (``reading``), storage settings (``storage``)."""
