"""course_utils: reference implementations, training helpers and widgets for the course."""

__version__ = "0.1.0"
