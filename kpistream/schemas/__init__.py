"""The event contract: versioned JSON Schema documents and the decoders that enforce them."""
