"""Input data: readers, synthetic videos and pipelines."""
