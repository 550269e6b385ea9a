"""Per kind: read the world, call the pure logic, write the results."""
