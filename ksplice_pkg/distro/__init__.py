"""Getting the target kernel's artifacts (image, headers, source) from a distribution."""
