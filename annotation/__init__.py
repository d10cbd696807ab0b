"""Annotation: weekly batches, dialogues written or imported, pairs of responses to compare, and
the labels annotators give them."""
