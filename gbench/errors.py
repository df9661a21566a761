"""The one exception type that means "the user asked for something wrong".

The CLI turns it into a single line on stderr and exit code 2; anything else is a bug.
"""


class GbenchError(Exception):
    """Bad input: a missing or malformed suite, an unknown name, a wrong-shaped file..."""
