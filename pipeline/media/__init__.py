"""Media: probing containers, cutting spans and decoding frames at model resolution."""
