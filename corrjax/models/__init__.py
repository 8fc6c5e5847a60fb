"""Models: ResNet trunks, projection heads and method networks."""
