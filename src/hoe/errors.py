"""User-facing errors: one clear line, no traceback from deep inside torch."""


class HoEError(Exception):
    """A problem with what the user asked for (bad input, missing file, mismatched shapes).

    The CLI prints ``str(error)`` alone and exits with status 2.
    """
