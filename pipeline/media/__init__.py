"""Media: where a video's bytes come from (``opening``), probing (``probe``), cutting a segment's
span of packets (``spans``) and decoding frames at model resolution (``decode``)."""
