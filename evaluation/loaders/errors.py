class DatasetError(ValueError):
    """A routing data file that cannot be read; the message names file, row and field."""
