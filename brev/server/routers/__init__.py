"""HTTP routes. Each handler parses, calls one service function, and returns its result."""
